// Point-to-point for the c10d process group "ringfuse": send, recv and recvAnysource (and so
// torch's isend/irecv and batch_isend_irecv, which torch 1.13 runs as isend/irecv on backends
// other than NCCL) over the Engine's send/recv.
//
// The engine posts each transfer and progresses them all together on its own thread, so the
// orders users write (irecv before isend on both sides of a pair, a pipeline stage talking to
// both neighbours) cannot deadlock, and transfers never wait behind the group's collectives.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <chrono>
#include <mutex>
#include <vector>

#include "ringfuse/context.hpp"

namespace ringfuse::python {

class PointToPoint {
 public:
  /// Over `context`'s engine, which the caller started (collective: every rank of the group at
  /// the same point, and on the thread that uses the group's store: a c10d TCPStore holds its
  /// lock through a blocking get, so two threads of one rank waiting on it can deadlock with
  /// the peers). `op_timeout` bounds a Work.wait() without a timeout of its own.
  PointToPoint(Context& context, Engine& engine, std::chrono::milliseconds op_timeout);
  ~PointToPoint();
  PointToPoint(const PointToPoint&) = delete;
  PointToPoint& operator=(const PointToPoint&) = delete;

  /// `tensor` goes to group rank `peer` under `tag`; the Work completes once it left.
  c10::intrusive_ptr<::c10d::Work> send(const at::Tensor& tensor, int peer, int tag);
  /// Fills `tensor` from group rank `peer` (kAnySource: any rank; Work::sourceRank() says
  /// which) under `tag`. A longer message fails the Work, naming both sizes.
  c10::intrusive_ptr<::c10d::Work> recv(const at::Tensor& tensor, int peer, int tag);

 private:
  void check(const char* call, const at::Tensor& tensor, int peer, int tag) const;
  c10::intrusive_ptr<::c10d::Work> track(c10::intrusive_ptr<::c10d::Work> work);

  Context& context_;
  Engine& engine_;
  std::chrono::milliseconds op_timeout_;
  std::mutex in_flight_mutex_;
  // Every transfer until it completed: the engine reads and writes the tensors they hold,
  // also when Python dropped the Work without waiting (isend and forget).
  std::vector<c10::intrusive_ptr<::c10d::Work>> in_flight_;
};

}  // namespace ringfuse::python
