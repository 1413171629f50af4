// A full mesh of TCP connections between the ranks of one world, set up through the
// rendezvous store. Inspired by Gloo's Pair/Context split, reduced to what our algorithms need:
// blocking, deadline-bounded send/recv on non-blocking sockets driven by poll().
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rendezvous/prefix_store.hpp"
#include "transport/abort_state.hpp"
#include "transport/global_ranks.hpp"
#include "transport/socket.hpp"
#include "transport/transport.hpp"

namespace ringfuse::transport {

struct MeshOptions {
  std::string advertise_host = "127.0.0.1";         // address peers connect to
  std::string job_id = "local";                     // connections from other jobs are refused
  std::string key_prefix = "ringfuse/";             // store namespace of this world
  std::string secret;                               // RINGFUSE_JOB_SECRET: proven by every peer
  std::chrono::milliseconds connect_timeout{60'000};
  std::chrono::milliseconds op_timeout{300'000};    // longest wait without any progress
  std::chrono::milliseconds user_timeout{10'000};   // TCP_USER_TIMEOUT on every connection
  /// For a transport over a group of the world (a hierarchy's): the global rank of each
  /// position, which errors name and the failure keys below are written under.
  GlobalRanks global_ranks;
  /// Where failures and orderly closes are reported (empty: key_prefix): a hierarchy's
  /// transports report where the world's flat transport of the same channel does, so every
  /// rank reads one first failure.
  std::string report_prefix;
  /// This rank's abort state, shared by all of its channels (null: this transport's own).
  std::shared_ptr<AbortState> abort_state;
};

class TcpMesh final : public Transport {
 public:
  /// Publishes this rank's listening address in `store` and connects to every other rank.
  /// `store` must outlive the mesh: it also carries the first failure's reason to every rank.
  TcpMesh(int rank, int size, rendezvous::Store& store, MeshOptions options);
  /// Tells the store this rank leaves in order (unless this mesh already failed), so peers
  /// still waiting on it report that rather than a crash; then closes every connection.
  ~TcpMesh() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void send_recv(int send_peer, const void* send_buf, std::size_t send_bytes, int recv_peer,
                 void* recv_buf, std::size_t recv_bytes,
                 const RecvProgress& progress = {}) override;
  /// Receives into a cache-sized piece of `staging` and reduces each piece into `dst` as soon
  /// as it lands, while it is still in cache: landing the whole message first sends it
  /// through DRAM twice at large sizes.
  void send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes,
                        int recv_peer, void* dst, std::size_t recv_count, DataType type,
                        ReduceOp op, const Staging& staging) override;
  /// poll() on the connection to `peer`: no timeout error, so a quiet peer leaves the mesh
  /// healthy and its destructor still records an orderly close.
  bool wait_readable(int peer, std::chrono::microseconds timeout) override;
  void set_operation(std::string label) override { operation_ = std::move(label); }

 private:
  /// Records the failure for every rank (first one wins), closes every connection so that
  /// neighbours notice at once, and throws the error this rank reports.
  [[noreturn]] void fail(int peer, std::string what, bool peer_closed);
  /// The one loop behind both entry points: sends `send_bytes` while receiving `recv_bytes`.
  /// `place(received)` is where the next received bytes go (and how many may go there);
  /// `landed(bytes)` is told after each receive of `bytes` into that place.
  template <class Place, class Landed>
  void exchange(int send_peer, const std::byte* send, std::size_t send_bytes, int recv_peer,
                std::size_t recv_bytes, Place&& place, Landed&& landed);

  int rank_;
  int size_;
  MeshOptions options_;
  rendezvous::PrefixStore world_;    // the store under options_.key_prefix
  rendezvous::PrefixStore reports_;  // under options_.report_prefix (failure_report.hpp)
  std::shared_ptr<AbortState> abort_state_;
  std::vector<Socket> peers_;  // by peer rank, from connect_full_mesh()
  // By peer rank: " (rank R is at ADDRESS)" for a peer whose connection ends at another
  // address than ours (another host), else empty; errors append it.
  std::vector<std::string> elsewhere_;
  std::string operation_ = "set-up";
  std::optional<std::string> aborted_;
  bool stalled_ = false;  // an operation timed out: the store may be unreachable as well
};

}  // namespace ringfuse::transport
