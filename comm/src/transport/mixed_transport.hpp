// A world in which some pairs of ranks can share memory and others cannot: two containers or
// network namespaces with one hostname (so every rank reports the same host) but each with its
// own /dev/shm, one of them running two ranks. The ranks of each group that proved it shares
// memory (plan_shared_memory) talk over shared-memory rings, every other pair over TCP, so a
// world is not put on TCP as a whole because one pair cannot share.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "transport/shm_transport.hpp"
#include "transport/tcp_mesh.hpp"
#include "transport/transport.hpp"

namespace ringfuse::transport {

class MixedTransport final : public Transport {
 public:
  /// Collective over the `size` ranks of `mesh`: `group` lists the positions (ascending, `rank`
  /// among them, at least two) this rank shares memory with. Sets up shared-memory rings over
  /// the group (`shm`: its ring size; its mesh options are derived here) and a TCP mesh over
  /// the whole world, whose connections between ranks of one group stay idle, so that every
  /// rank's TCP mesh is the same whatever its group.
  MixedTransport(int rank, int size, rendezvous::Store& store, const MeshOptions& mesh,
                 std::vector<int> group, std::size_t ring_bytes);
  ~MixedTransport() override;

  /// The mesh options of `group`'s shared-memory rings within `mesh`: its own store keys,
  /// its global ranks, failures reported where `mesh` reports them.
  static MeshOptions group_mesh(const MeshOptions& mesh, const std::vector<int>& group);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  /// When the two peers are reached by different transports, the send runs on a helper thread
  /// while this thread receives, so rings of mixed pairs progress in both directions at once.
  void send_recv(int send_peer, const void* send_buf, std::size_t send_bytes, int recv_peer,
                 void* recv_buf, std::size_t recv_bytes,
                 const RecvProgress& progress = {}) override;
  void send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes, int recv_peer,
                        void* dst, std::size_t recv_count, DataType type, ReduceOp op,
                        const Staging& staging) override;
  /// Runs on the transport that reaches `peer`, so both ends of a pair use the same protocol
  /// (TCP interleaves the two halves; a rank whose world has no shared memory runs TcpMesh's).
  void reduce_and_return(int peer, std::byte* give, std::size_t give_count, std::byte* keep,
                         std::size_t keep_count, DataType type, ReduceOp op,
                         const Staging& staging, const Finish& finish) override;
  bool wait_readable(int peer, std::chrono::microseconds timeout) override;
  void set_operation(std::string label) override;

 private:
  using Clock = std::chrono::steady_clock;

  /// Runs one send at a time on its own thread, from a copy of the caller's bytes, so that a
  /// caller whose step failed or ran out of time can return while the send is still under
  /// way (the transport bounds it by its no-progress timeout) without it reading freed memory.
  class Sender {
   public:
    Sender();
    /// Waits for a send still under way: at most the sending transport's no-progress timeout.
    ~Sender();
    /// Copies `bytes` of `data` and starts `send(copy, bytes)` on the helper thread; only when
    /// no send is under way (busy() is false).
    void start(const void* data, std::size_t bytes,
               std::function<void(const void*, std::size_t)> send);
    /// Waits until `deadline` for the send started last: what it threw (null when it
    /// succeeded), or nullopt when it is still under way then.
    std::optional<std::exception_ptr> finish(Clock::time_point deadline);
    bool busy();

   private:
    void loop();
    std::mutex mutex_;
    std::condition_variable changed_;
    std::function<void()> job_;
    bool busy_ = false;
    bool stop_ = false;
    std::exception_ptr error_;
    std::vector<std::byte> copy_;  // what the send under way reads
    std::thread thread_;
  };

  /// Throws the failure of an earlier step while that step's send is still under way on the
  /// helper thread (the transports are not to be used from two threads at once).
  void refuse_while_sending();
  bool shares_memory_with(int peer) const;
  /// The transport that reaches `peer` (kNoPeer: none) and `peer`'s position in it.
  Transport& via(int peer);
  int position_in(const Transport& transport, int peer) const;
  /// The one transport that reaches both sides of a step that has bytes (a side without bytes
  /// is left out, as its peer may be one the other transport reaches), or null when the send
  /// and the receive need different ones.
  Transport* one_transport_for(int send_peer, bool sends, int recv_peer, bool receives);
  /// `peer`'s position in `transport` for a side with bytes, else kNoPeer.
  int side_on(const Transport& transport, int peer, bool has_bytes) const;
  /// Sends on the helper thread through send_peer's transport while `receive` runs here, then
  /// rethrows the first failure: the receive's at once (the send goes on from its copy and
  /// later calls refuse until it ended), else the send's, else a timeout naming this rank,
  /// the peer and the operation when the send has not finished within the operation timeout
  /// after the receive did (a peer that stopped reading while it still made some progress).
  void split(int send_peer, const void* send_buf, std::size_t send_bytes,
             const std::function<void()>& receive);

  int rank_;
  int size_;
  GlobalRanks global_ranks_;               // of mesh's positions, for errors
  std::chrono::milliseconds op_timeout_;  // mesh's: also the helper-thread send's deadline
  std::string operation_;                  // the collective in progress, for errors
  std::exception_ptr failed_;              // the step that returned while its send went on
  std::vector<int> group_;             // positions sharing memory with this rank, ascending
  std::unique_ptr<TcpMesh> tcp_;       // the whole world
  std::unique_ptr<ShmTransport> shm_;  // group_ only
  Sender sender_;
};

}  // namespace ringfuse::transport
