// A full mesh of TCP connections between the ranks of one world, set up through the
// rendezvous store. Inspired by Gloo's Pair/Context split, reduced to what our algorithms need:
// blocking, deadline-bounded send/recv on non-blocking sockets driven by poll().
//
// Each pair of ranks may be joined by several connections (RINGFUSE_SOCKETS_PER_PEER), because
// cloud networks cap every TCP flow far below the link (EC2: 5-10 Gbit/s a flow on 100+ Gbit/s
// instances), as NCCL's socket transport does: a large message is cut into 256 KiB pieces,
// each handed with its offset to whichever connection has room (tcp_pieces.hpp), all progressed
// by one poll loop; a small one goes whole on the first connection, so latency does not change.
#pragma once

#include <algorithm>
#include <array>
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
#include "transport/tcp_peer_wait.hpp"
#include "transport/tcp_pieces.hpp"
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
  /// Connections to each peer (RINGFUSE_SOCKETS_PER_PEER), each made and authenticated as
  /// the first one is; 1..kMaxStreamsPerPeer.
  int streams = 1;
  /// TcpMesh: when a rank waiting for a peer on its own host checks before it sleeps
  /// (tcp_peer_wait.hpp).
  PeerWaitMode peer_wait = PeerWaitMode::when_cpus_spare;
  /// ShmTransport: large exchanges sleep at once instead of yielding first, leaving the core
  /// to compute threads (RINGFUSE_SHM_LARGE_WAIT=sleep; shm_transport.cpp).
  bool large_waits_sleep = false;
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

  /// Names the host of each peer (hosts[peer], "" when unknown) in errors about a peer on
  /// another host, beside its address; the places in MeshOptions::global_ranks name them
  /// from the start.
  void name_hosts(const std::vector<std::string>& hosts);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  /// When it both sends and receives, the sends stay at most one 256 KiB piece per connection
  /// ahead of the receives until everything has arrived, so bytes leave the socket while they
  /// are in cache: callers must be steps that every rank involved runs at once (ring,
  /// pairwise), as all collectives' are; a peer that sends only after receiving everything
  /// (in another call) would wait forever. One-sided calls have no such limit.
  void send_recv(int send_peer, const void* send_buf, std::size_t send_bytes, int recv_peer,
                 void* recv_buf, std::size_t recv_bytes,
                 const RecvProgress& progress = {}) override;
  /// Receives into a cache-sized piece of `staging` and reduces each piece into `dst` as soon
  /// as it lands, while it is still in cache: landing the whole message first sends it
  /// through DRAM twice at large sizes.
  void send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes,
                        int recv_peer, void* dst, std::size_t recv_count, DataType type,
                        ReduceOp op, const Staging& staging) override;
  /// Interleaves both halves on the one connection to `peer` (return_schedule.hpp):
  /// each piece of `keep` goes back as soon as it is reduced and finished, from cache, and
  /// the peer's finished pieces land straight in `give`. With several connections per peer it
  /// runs the halves one after the other, in pieces, as the base class does.
  void reduce_and_return(int peer, std::byte* give, std::size_t give_count, std::byte* keep,
                         std::size_t keep_count, DataType type, ReduceOp op,
                         const Staging& staging, const Finish& finish) override;
  /// poll() on the (first) connection to `peer`, where every message begins: no timeout error, so a quiet peer leaves the mesh
  /// healthy and its destructor still records an orderly close.
  bool wait_readable(int peer, std::chrono::microseconds timeout) override;
  void set_operation(std::string label) override { operation_ = std::move(label); }

  /// Debug statistics and tests: bytes sent to `peer` on its connection `stream` (0-based)
  /// since the mesh was made, headers included.
  std::uint64_t bytes_sent(int peer, int stream) const;
  /// For tests that slow one connection down (a tiny SO_SNDBUF): the descriptor of connection
  /// `stream` to `peer`, -1 when there is none.
  int connection_fd(int peer, int stream) const;

 private:
  /// Records the failure for every rank (first one wins), closes every connection so that
  /// neighbours notice at once, and throws the error this rank reports.
  [[noreturn]] void fail(int peer, std::string what, bool peer_closed);
  /// The one loop behind both entry points: sends `send_bytes` while receiving `recv_bytes`,
  /// each cut into pieces over the peer's connections (PieceLayout) when large enough.
  /// `place(lane, at)` is where the bytes connection `lane` receives next go, `at` bytes into
  /// the message (and how many may go there: never past the piece); `landed(lane, at, bytes)`
  /// is told after each receive of `bytes` into that place. A nonzero `window` keeps the bytes sent at most that far ahead
  /// of the bytes received until all have been received: only for steps in which the
  /// receive's sender is itself in such a step (every rank of a ring or a pair exchanging at
  /// once), or a sender waiting on this rank's bytes would never send the rest.
  template <class Place, class Landed>
  void exchange(int send_peer, const std::byte* send, std::size_t send_bytes, int recv_peer,
                std::size_t recv_bytes, std::size_t window, Place&& place, Landed&& landed);
  /// Waits for `fds` (nothing could progress) on behalf of `peer`, whose bytes or room are
  /// awaited: PeerWait's policy for a peer on this host, poll() otherwise. Throws the
  /// stalled-peer error once the deadline passes.
  void wait_for(std::span<pollfd> fds, int peer, PeerWait::Clock::time_point deadline);

  int rank_;
  int size_;
  MeshOptions options_;
  rendezvous::PrefixStore world_;    // the store under options_.key_prefix
  rendezvous::PrefixStore reports_;  // under options_.report_prefix (failure_report.hpp)
  std::shared_ptr<AbortState> abort_state_;
  /// Connection `stream` to `peer` is links_[stream][peer], from one connect_full_mesh()
  /// each; empty after a failure (every connection closed).
  std::vector<std::vector<Socket>> links_;
  /// By peer rank, then connection: bytes sent (bytes_sent()).
  std::vector<std::array<std::uint64_t, kMaxStreamsPerPeer>> sent_by_connection_;
  /// " (connection S of K)" in errors about connection S, when there are several.
  std::string connection_label(std::size_t stream) const;
  // By peer rank: the address of a peer whose connection ends at another address than ours
  // (another host), else empty.
  std::vector<std::string> peer_addresses_;
  // By peer rank: whether its connection ends at our own address (a rank on this host).
  std::vector<bool> local_;
  std::optional<PeerWait> waiter_;  // made once the mesh knows which peers are local
  // By peer rank: " (rank R is at ADDRESS on HOST)" for those peers, else empty; errors
  // append it.
  std::vector<std::string> elsewhere_;
  std::string operation_ = "set-up";
  std::optional<std::string> aborted_;
  bool stalled_ = false;  // an operation timed out: the store may be unreachable as well
};

}  // namespace ringfuse::transport
