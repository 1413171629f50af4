// The data plane between ranks of one host: a single-producer/single-consumer ring in POSIX
// shared memory for every ordered pair of ranks, set up once and reused by every collective.
// Shared memory says nothing when a peer dies, so one TCP connection per peer stays open
// beside the rings purely as a liveness channel (made, and authenticated with the job secret,
// by the same full-mesh connect as the TCP mesh: full_mesh.hpp): a waiting rank polls it and
// turns EOF or a reset into the same peer-naming error, published through the store, as the
// TCP mesh.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rendezvous/prefix_store.hpp"
#include "ringfuse/context.hpp"
#include "transport/shm_ring.hpp"
#include "transport/shm_segment.hpp"
#include "transport/socket.hpp"
#include "transport/tcp_mesh.hpp"
#include "transport/transport.hpp"

namespace ringfuse::transport {

/// This host and boot ("hostname/boot_id"): two ranks with the same identity can share memory
/// (the boot id tells apart containers or machines that happen to share a hostname).
std::string host_identity();

/// Which peers this rank shares memory with.
struct SharedMemoryPlan {
  /// Every pair of the group shares memory: the whole group runs over shared memory.
  bool everyone = false;
  /// Otherwise, the positions (ascending, this rank's among them) of the ranks this one shares
  /// memory with (shared_memory_groups()); just this rank when it shares with none.
  std::vector<int> group;
  /// The host name of every position, when the plan learnt them (not with TCP forced nor in
  /// a world of one): TCP errors name the host a lost peer was on, not only its address.
  std::vector<std::string> hosts;
};

/// Collective: every position's host name (gethostname), for errors that name where a peer
/// runs when nothing else gathered them (TCP forced).
std::vector<std::string> gather_host_names(rendezvous::Store& store, const MeshOptions& mesh,
                                           int rank, int size);

/// Collective: publishes host_identity() in the store and decides, identically on every rank,
/// which pairs of this world share memory. `automatic` picks it for every pair only when every
/// rank reports this host and every pair proves it can share memory (shared_memory_proof.hpp);
/// ranks on other hosts (another identity) get TCP for every pair (a hierarchy's host groups
/// give them shared memory); when every rank reports this host but some pairs cannot share
/// (same hostname, separate /dev/shm), the ranks that can are grouped and the other pairs get
/// TCP, logged by position 0 with the pairs and the groups; `shm` throws Error(invalid_config)
/// naming the ranks on other hosts or the pairs that cannot share; `tcp` never picks it and
/// exchanges nothing.
SharedMemoryPlan plan_shared_memory(TransportKind requested, rendezvous::Store& store,
                                    const MeshOptions& mesh, int rank, int size);

/// plan_shared_memory(...).everyone.
bool use_shared_memory(TransportKind requested, rendezvous::Store& store,
                       const MeshOptions& mesh, int rank, int size);

struct ShmOptions {
  MeshOptions mesh;                               // store namespace, timeouts, liveness address
  std::size_t ring_bytes = std::size_t{1} << 20;  // per ordered pair; a power of two
  /// A SharedWindow of up to this many bytes per rank (0: none). It is left out, for every
  /// rank alike, when /dev/shm has not room for every rank's window grown in full.
  std::size_t window_bytes = 0;
  /// Offer the peers' private memory (peer_memory()) for all-reduces of at least this many
  /// bytes, when every rank can reach every other's through the kernel (cross_memory.hpp);
  /// 0: never. Left out, for every rank alike, when one cannot; the ranks take the largest
  /// of their values (rank 0 warns when they differ), so every rank picks alike per size.
  std::size_t cross_memory_min_bytes = 0;
};

/// How an idle rank waits: `spins` pause-spins, then sched_yield()s between checks (at least
/// `yields` of them, and for at least `poll_for`), then it sleeps on its doorbell. An exchange
/// of at least `sleep_from_bytes` (sent or received) sleeps at once (shm_transport.cpp).
struct WaitPolicy {
  unsigned spins;
  unsigned yields;
  std::chrono::microseconds poll_for;
  std::size_t sleep_from_bytes;
};

class ShmTransport final : public Transport {
 public:
  /// Collective over all ranks, which must share this host: creates this rank's segment (the
  /// rings it receives on), maps every peer's, waits in the store until every rank has mapped
  /// every segment, then unlinks its own name. Until then a SIGTERM, SIGINT or SIGHUP left at
  /// its default action unlinks this rank's names before it kills the process
  /// (unlink_on_signal.hpp).
  ShmTransport(int rank, int size, rendezvous::Store& store, ShmOptions options);
  /// Like ~TcpMesh: records an orderly close in the store unless this transport failed.
  ~ShmTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void send_recv(int send_peer, const void* send_buf, std::size_t send_bytes, int recv_peer,
                 void* recv_buf, std::size_t recv_bytes,
                 const RecvProgress& progress = {}) override;
  void send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes,
                        int recv_peer, void* dst, std::size_t recv_count, DataType type,
                        ReduceOp op, const Staging& staging) override;
  /// Both halves interleaved on the one ring to `peer` (return_schedule.hpp), as over TCP:
  /// each reduced piece is copied back while it is still in cache.
  void reduce_and_return(int peer, std::byte* give, std::size_t give_count, std::byte* keep,
                         std::size_t keep_count, DataType type, ReduceOp op,
                         const Staging& staging, const Finish& finish) override;
  bool copies_pieces() const override { return true; }
  /// Copies each piece straight into the ring and what arrives straight into the pieces.
  void send_recv_pieces(int send_peer, Pieces send, int recv_peer, Pieces recv,
                        const Staging& staging) override;
  /// Copies each piece straight into the ring and reduces straight out of the ring into the
  /// pieces of `dst`: no packing on either side.
  void send_recv_reduce_pieces(int send_peer, Pieces send, int recv_peer, Pieces dst,
                               DataType type, ReduceOp op, const Staging& staging) override;
  /// Checks `peer`'s ring, then sleeps on this rank's doorbell until bytes come or `timeout`
  /// passes, polling the peer's liveness connection, so a crashed peer is reported (as a
  /// receive would) instead of waited for. No timeout error: a quiet peer leaves the
  /// transport healthy.
  bool wait_readable(int peer, std::chrono::microseconds timeout) override;
  void set_operation(std::string label) override { operation_ = std::move(label); }
  SharedWindow* shared_window() override;
  PeerMemory* peer_memory() override;

 private:
  class Window;
  class CrossMemory;
  using Clock = std::chrono::steady_clock;
  /// How long this rank has been waiting without progress, for idle().
  struct Idle {
    unsigned rounds = 0;
    bool sleeping = false;              // past the spins and yields: sleeps on the doorbell
    bool sleep_at_once = false;         // no spins or yields (WaitPolicy::sleep_from_bytes)
    Clock::time_point since{};          // the first yield, then the first sleep
    Clock::time_point next_liveness{};  // the epoch: the first sleep polls at once
    /// Something moved: the next wait starts with spins again.
    void progressed() {
      rounds = 0;
      sleeping = false;
    }
  };

  void connect_liveness(Clock::time_point deadline);
  void map_segments(Clock::time_point deadline);
  /// Whether /dev/shm has room for every rank's window at full size (logged when not).
  bool window_fits() const;
  std::size_t slot_of(int sender, int receiver) const;
  shm::Doorbell& doorbell(int owner) const;
  /// How many window barriers `owner` has reached (in its ring segment's header).
  std::atomic<std::uint64_t>& window_arrivals(int owner) const;
  void window_barrier();
  /// The barrier behind window_barrier() and CrossMemory::open(): a large collective's
  /// (`sleep_at_once`) waits as its exchanges would (WaitPolicy::sleep_from_bytes).
  void arrive_and_wait(bool sleep_at_once);

  /// One round of waiting while nothing can progress: spin, yield, then sleep on this rank's
  /// doorbell until `ready()` (wait_), polling the liveness of the peers in `waiting_for`
  /// every millisecond; fails naming the first of them after the operation timeout.
  template <class Ready>
  void idle(Idle& state, std::span<const int> waiting_for, Ready&& ready);
  /// idle() for code outside shm_transport.cpp (CrossMemory).
  void idle(Idle& state, std::span<const int> waiting_for, const std::function<bool()>& ready);

  /// The one loop behind every entry point. `produce(writer, max)` writes the next at most
  /// `max` bytes to send into the ring and returns how many it wrote; `consume(piece, offset)`
  /// takes received bytes in place and returns how many it used (whole elements only);
  /// `granule` is the element size.
  template <class Produce, class Consume>
  void exchange(int send_peer, std::size_t send_bytes, Produce&& produce, int recv_peer,
                std::size_t recv_bytes, std::size_t granule, Consume&& consume);
  /// The same, when what is sent may wait for what is received: `can_produce()` says whether
  /// `produce` could write now, so that a rank with nothing to write waits instead of polling.
  template <class Produce, class Consume, class CanProduce>
  void exchange(int send_peer, std::size_t send_bytes, Produce&& produce, int recv_peer,
                std::size_t recv_bytes, std::size_t granule, Consume&& consume,
                CanProduce&& can_produce);
  /// Non-blocking: fails naming `peer` if its liveness connection reports EOF or an error.
  void check_alive(int peer);
  [[noreturn]] void fail(int peer, std::string what, bool peer_closed);
  [[noreturn]] void fail_timeout(int stalled);
  /// Collective: how idle ranks wait (spin only when the ranks on this host have a CPU each;
  /// shm_transport.cpp), and whether every rank reaches every other's memory (cross_memory_).
  void agree_on_host(Clock::time_point deadline);
  /// At the start of a wait: records this rank's CPU in its doorbell and, when `peer` last
  /// waited on the same CPU and this rank may run on others, moves this rank to another
  /// (shm_placement.hpp).
  void keep_apart_from(int peer);

  int rank_;
  int size_;
  ShmOptions options_;
  rendezvous::PrefixStore world_;    // the store under options_.mesh.key_prefix
  rendezvous::PrefixStore reports_;  // under options_.mesh.report_prefix (failure_report.hpp)
  std::shared_ptr<AbortState> abort_state_;
  WaitPolicy wait_;  // how an idle rank waits for its peers (shm_transport.cpp)
  bool may_move_ = false;              // unbound, with a CPU per rank: keep_apart_from() acts
  Clock::time_point next_move_{};      // keep_apart_from() moves this rank at most this often
  std::string operation_ = "set-up";
  std::optional<std::string> aborted_;
  bool stalled_ = false;                   // an operation timed out
  std::vector<Socket> liveness_;           // by peer rank; closed all at once on failure
  std::vector<shm::Segment> segments_;     // by owner rank: the rings that rank receives on
  std::vector<shm::RingWriter> writers_;   // by destination rank
  std::vector<shm::RingReader> readers_;   // by source rank
  std::unique_ptr<Window> window_;         // null unless options.window_bytes asked for one
  std::unique_ptr<CrossMemory> cross_memory_;  // null unless asked for and every rank can
  std::uint64_t window_epoch_ = 0;         // window barriers this rank has reached
  std::vector<int> window_waiting_;        // peers a window barrier still waits for
};

}  // namespace ringfuse::transport
