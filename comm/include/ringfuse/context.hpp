// A Context is one rank's membership in one world: its identity, its connections and the
// blocking collectives over them. Several Contexts may live in one process (tests do this).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringfuse/engine.hpp"
#include "ringfuse/types.hpp"

namespace ringfuse {

namespace rendezvous {
class Store;  // comm/src/rendezvous/store.hpp: the key-value interface the rendezvous runs over
}

/// Which all-reduce algorithm to run; `automatic` picks by message size and world size.
enum class Algorithm : std::uint8_t { automatic, ring, tree, rhd };
std::string_view to_string(Algorithm algo);

/// How ranks exchange bytes: TCP, shared memory (every rank on this host), or `automatic`:
/// shared memory when the whole world is on one host, else TCP.
enum class TransportKind : std::uint8_t { automatic, tcp, shm };

/// Which data plane runs the Context's blocking collectives (RINGFUSE_BACKEND). `automatic`:
/// native for host memory (faster than MPI here), NCCL for CUDA device memory when built with
/// it. `mpi` needs a world started by plain mpirun (init() fails otherwise); `nccl` runs
/// device buffers on NCCL and host buffers on native.
enum class BackendKind : std::uint8_t { automatic, native, mpi, nccl };
std::string_view to_string(BackendKind backend);

/// Where this rank sits in the world, as read from the environment contract (DESIGN.md §3).
struct WorldSpec {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  int cross_rank = 0;
  int cross_size = 1;
  std::string store_host;         // empty for a world of one
  std::uint16_t store_port = 0;
  bool host_store = false;        // true when this rank (rank 0) must serve the store itself
  std::string job_id = "local";
  std::string job_secret;         // RINGFUSE_JOB_SECRET: every connection must prove it
  std::string source = "default"; // which variables described the world, for the start-up log
  bool mpi_bootstrap = false;     // started by plain mpirun: store address and secret travel
                                  // over MPI from rank 0 (needs a build with Open MPI)
  /// Started on another host by ringfuse-run through an rsh agent (RINGFUSE_WATCH_LAUNCHER=1):
  /// when the launcher's store goes away while the Context lives, the launcher was stopped or
  /// killed and the agent did not pass that on, so the rank stops itself (SIGTERM, SIGKILL).
  /// The launcher's store is at store_host:store_port, also for a world that meets at a store
  /// of the caller's (init() with a Store).
  bool watch_launcher = false;
  /// A group of a larger job that bootstraps over its own store (a torch.distributed
  /// new_group): global_ranks[r] is the job's rank of this world's rank r, and `label` names
  /// the group ("torch.distributed group 1 (global ranks 1,2)"). Errors then name global ranks
  /// and the label, as a child Context's do. Empty: this world is the whole job.
  std::vector<int> global_ranks;
  std::string label;
};

/// Two-level all-reduce over hosts (RINGFUSE_HIERARCHICAL): `automatic` uses it for all-reduces
/// of 64 KiB and more when the ranks span several hosts with the same number of ranks on each
/// (RINGFUSE_LOCAL_SIZE x RINGFUSE_CROSS_SIZE), `on` for every all-reduce, `off` never.
enum class Hierarchical : std::uint8_t { automatic, on, off };

/// What a dead rank does to the groups it was not in (RINGFUSE_GROUP_FAILURES). `job`: every
/// group of the job fails fast, as a world does; `contain`: a child Context or process set
/// whose ranks are all alive keeps working. Either way every group the dead rank belonged to
/// reports it by its global rank.
enum class GroupFailures : std::uint8_t { job, contain };

/// Tunables, validated once when the Context is built.
struct Options {
  Algorithm algorithm = Algorithm::automatic;
  std::chrono::milliseconds connect_timeout{60'000};  // rendezvous and mesh set-up
  std::chrono::milliseconds op_timeout{300'000};      // one blocking collective
  TransportKind transport = TransportKind::automatic;  // RINGFUSE_TRANSPORT
  BackendKind backend = BackendKind::automatic;        // RINGFUSE_BACKEND
  Hierarchical hierarchical = Hierarchical::automatic; // RINGFUSE_HIERARCHICAL
  /// RINGFUSE_HOST_ADDR: the IPv4 address this rank advertises to its peers, one of this
  /// host's; empty: the address it reaches the rendezvous store from.
  std::string host_addr;
  /// RINGFUSE_SOCKETS_PER_PEER: TCP connections between each pair of ranks (1..16); large
  /// messages are striped across them, for networks that cap each TCP flow below the link.
  int sockets_per_peer = 1;
  /// RINGFUSE_SHM_LARGE_WAIT=sleep: a rank waiting in a shared-memory exchange of 256 KiB or
  /// more sleeps at once instead of yielding first (for training, where a yield hands the
  /// core to compute threads for a time slice).
  bool shm_large_waits_sleep = false;
  /// RINGFUSE_CROSS_MEMORY_MIN: an all-reduce of at least this many bytes over shared memory
  /// reads and writes the peers' buffers in place (process_vm_readv / process_vm_writev),
  /// its pieces done by whichever ranks are running. kCrossMemoryAuto: 64 KiB times the
  /// square of the number of ranks (256 KiB for 2, 1 MiB for 4); kCrossMemoryOff: never.
  /// Where the kernel does not let the ranks reach each other's memory, never either.
  static constexpr std::size_t kCrossMemoryAuto = 0;
  static constexpr std::size_t kCrossMemoryOff = static_cast<std::size_t>(-1);
  std::size_t cross_memory_min = kCrossMemoryAuto;
  /// RINGFUSE_P2P_EAGER_BYTES: point-to-point messages of up to this many bytes are sent
  /// without waiting for their receive (while the receiver has room for them, below);
  /// larger ones wait for it, then go straight into its buffer.
  std::size_t p2p_eager_bytes = std::size_t{64} << 10;
  /// RINGFUSE_P2P_UNEXPECTED_BYTES: the most bytes of one sender's messages a rank keeps for
  /// receives not posted yet; beyond it, messages wait for their receive like large ones.
  std::size_t p2p_unexpected_bytes = std::size_t{4} << 20;
  /// RINGFUSE_LOG_LEVEL: spdlog level (trace, debug, info, warn, error, critical, off) set by
  /// init(); empty leaves the process's level as it is.
  std::string log_level;
  /// RINGFUSE_PROGRESS_FILE: the record ringfuse-run --health-port reads this rank's progress
  /// from; empty: none.
  std::string progress_file;
  GroupFailures group_failures = GroupFailures::job;   // RINGFUSE_GROUP_FAILURES
  EngineConfig engine;                                 // the asynchronous engine's tunables
};

inline constexpr int kUndefinedColor = -1;  // MPI_UNDEFINED: opt out of a split

/// Point-to-point (Context::send/recv/send_recv_group, Engine::send/recv): receive from any
/// rank, with any tag (MPI_ANY_SOURCE, MPI_ANY_TAG).
inline constexpr int kAnySource = -1;
inline constexpr int kAnyTag = -1;
/// What a receive got: the sender, the message's tag and its length in elements.
struct RecvStatus {
  int source = -1;
  int tag = 0;
  std::size_t count = 0;  // elements
};
/// One operation of Context::send_recv_group.
struct P2POp {
  enum class Kind : std::uint8_t { send, recv } kind;
  void* data;
  std::size_t count;
  DataType type;
  int peer;
  int tag = 0;
};

class Context {
 public:
  virtual ~Context() = default;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;
  virtual int local_size() const = 0;
  virtual const WorldSpec& world() const = 0;
  virtual const Options& options() const = 0;

  /// In place: every rank ends with op applied element-wise over all ranks' `data`.
  virtual void allreduce(void* data, std::size_t count, DataType type, ReduceOp op,
                         Algorithm algo = Algorithm::automatic) = 0;
  /// `data` on `root` is copied to every rank.
  virtual void broadcast(void* data, std::size_t count, DataType type, int root) = 0;
  /// Rank r's `count` elements land at recv[r * count]; recv holds size() * count elements.
  virtual void allgather(const void* send, void* recv, std::size_t count, DataType type) = 0;
  /// Rank r contributes counts[r] elements, stored contiguously in rank order in `recv`.
  virtual void allgatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                          DataType type) = 0;
  /// `send` holds size() * recv_count elements; rank r receives the reduced block r.
  virtual void reducescatter(const void* send, void* recv, std::size_t recv_count,
                             DataType type, ReduceOp op) = 0;
  /// Block j (count elements) of rank i's `send` lands as block i of rank j's `recv`.
  virtual void alltoall(const void* send, void* recv, std::size_t count, DataType type) = 0;
  /// send_counts[j] elements go to rank j (blocks contiguous in rank order); recv_counts[i]
  /// elements arrive from rank i, stored contiguously in rank order.
  virtual void alltoallv(const void* send, std::span<const std::size_t> send_counts, void* recv,
                         std::span<const std::size_t> recv_counts, DataType type) = 0;
  virtual void barrier() = 0;

  /// Tells the launcher which training step this rank has reached: ringfuse-run
  /// --health-port shows it as `ringfuse_step` on /metrics, beside the all-reduce bytes and
  /// bus bandwidth the library counts itself. One atomic store; a no-op outside ringfuse-run.
  virtual void report_step(std::uint64_t step) = 0;

  /// The asynchronous engine (ringfuse/engine.hpp), started on first use over its own
  /// connections. Collective: every rank must call it (the first time) before using it.
  virtual Engine& engine() = 0;

  // Sub-communicators and process sets. A child Context must be destroyed before the Context
  // it was made from: destroying the parent first is logged as an error, and the child's
  // later calls throw ringfuse::Error saying so. Errors in a child name global ranks and the
  // child's label().

  /// MPI_Comm_split: collective over this Context's ranks. Ranks with the same color form a new
  /// Context, ordered by key then by this Context's rank; a negative color returns nullptr.
  virtual std::unique_ptr<Context> split(int color, int key) = 0;
  /// The listed ranks of this Context, in that order (rank i of the child is ranks[i]);
  /// collective over ALL ranks of this Context (each passes the same list); nullptr on a rank
  /// not listed. Throws invalid_argument (on every rank alike) for duplicates/out of range.
  virtual std::unique_ptr<Context> subgroup(std::span<const int> ranks) = 0;
  /// The rank, in the world init() built, of this Context's rank `rank` (identity on a world).
  virtual int global_rank(int rank) const = 0;
  /// "world", or how this Context was made, e.g. "split 2 (color 1) of world", "process set 3";
  /// error messages name it.
  virtual const std::string& label() const = 0;

  /// Horovod process sets, over the world's engine: collective over every rank of THIS Context
  /// (also those not in the set), ranks are this Context's ranks; returns the set's id (>= 1;
  /// 0 is the global set = this Context). Registration starts the set's engine at once on its
  /// members. Every rank must register the same sets in the same order.
  virtual int add_process_set(std::span<const int> ranks) = 0;
  /// Collective over every rank of this Context; pending work on the set fails first.
  virtual void remove_process_set(int id) = 0;
  /// The ranks of set `id` (0: all); throws invalid_argument for an unknown id.
  virtual std::vector<int> process_set_ranks(int id) const = 0;
  /// The engine of set `id` (0: engine()); throws invalid_argument when this rank is not a
  /// member ("rank 3 is not in process set 2 (ranks 0,1)") or the id is unknown.
  virtual Engine& engine(int process_set) = 0;

  // Point-to-point. Messages between ranks travel on connections of their own (never read by
  // a collective), made on first use between the pair: shared memory when the pair shares a
  // host, TCP otherwise (RINGFUSE_BACKEND=mpi: MPI_Isend/MPI_Irecv). Tags are >= 0.
  using P2POp = ringfuse::P2POp;
  /// Blocking, bounded by Options::op_timeout; messages between one pair with one tag arrive
  /// in order (MPI's non-overtaking rule). Returns once the message is on its way (it may sit
  /// in the connection's buffers until the peer receives it).
  virtual void send(const void* data, std::size_t count, DataType type, int peer,
                    int tag = 0) = 0;
  /// `count` is the capacity; a longer message fails with invalid_argument naming both sizes
  /// (the message stays queued for a later, larger receive). peer may be kAnySource, tag
  /// kAnyTag.
  virtual RecvStatus recv(void* data, std::size_t count, DataType type, int peer,
                          int tag = 0) = 0;
  /// ncclGroupStart/End and torch's batch_isend_irecv: every op progresses together, so a
  /// pipeline stage can send to and receive from both neighbours without deadlock; returns
  /// when all are done (statuses of the receives, in order).
  virtual std::vector<RecvStatus> send_recv_group(std::span<const P2POp> ops) = 0;

 protected:
  Context() = default;
};

/// What a rank is about to run, for agree_on_collective(): `name` says which call
/// ("allreduce", "broadcast"), `signature` its arguments, in the words of the engine's mismatch
/// messages ("f32[1024] sum", "f32[10] broadcast root 0").
struct CollectiveCall {
  std::string_view name;
  std::string_view signature;
};

/// For a caller that runs a Context's blocking collectives on behalf of code that may call
/// different ones on different ranks (the torch.distributed process group): checks that every
/// rank of `context` is about to run the same `call`, at the cost of one all-reduce of 16 bytes
/// (a hash of the call). Returns when they all are. Otherwise every rank throws the same
/// ringfuse::Error (invalid_argument), after one allgather of each rank's call, naming which
/// ranks called what (by global rank): "rank 1: `where`: collective 'allreduce' does not match
/// across ranks: rank 0: f32[10] sum; rank 1: f32[11] sum; ...". Either way every rank ran the
/// same collectives, so the Context stays usable. Collective, under the blocking collectives'
/// rules (one thread at a time, bounded by Options::op_timeout). Names and signatures longer
/// than 60 and 180 bytes are compared in full but cut short in the message.
void agree_on_collective(Context& context, const CollectiveCall& call, std::string_view where);

/// A small all-reduce in host memory, in place, that agree_and_allreduce() may carry inside
/// its check.
struct SmallAllreduce {
  void* data = nullptr;
  std::size_t count = 0;  // elements
  DataType type = DataType::f32;
  ReduceOp op = ReduceOp::sum;
};

/// The most bytes of a SmallAllreduce that travel inside agree_and_allreduce()'s check.
inline constexpr std::size_t kCheckCarriesBytes = 4096;

/// agree_on_collective(), for a caller that checks every collective of `context` with this
/// function instead (the two exchange differently: never mix them on one Context). In a world
/// of two each check is one exchange of a frame of 16 + kCheckCarriesBytes bytes per rank (the
/// hash of the call, then room for a payload), in which `allreduce` travels too when it is
/// given and fits (at most kCheckCarriesBytes, an operator defined on its type): when every
/// rank agrees, each reduces the frames' payloads in rank order (the same bits on every rank)
/// and it returns true: the all-reduce is done, in one exchange instead of two. In a world of
/// one it returns true for any such all-reduce without exchanging anything. Otherwise (no
/// all-reduce, a larger one, or a larger world, where an allgather of frames takes more steps
/// than the check's all-reduce) it checks as agree_on_collective() does and returns false: the
/// caller runs the collective. A mismatch throws what agree_on_collective() throws, on every
/// rank, and leaves the caller's buffer as it was.
bool agree_and_allreduce(Context& context, const CollectiveCall& call, std::string_view where,
                         const SmallAllreduce* allreduce);

/// Reads the world from the environment (RINGFUSE_* first, then torchrun's RANK/WORLD_SIZE/
/// MASTER_ADDR/MASTER_PORT, else a world of one) and the tunables (every RINGFUSE_* variable
/// of the README's table: RINGFUSE_ALGO, RINGFUSE_TIMEOUT_S, RINGFUSE_HOST_ADDR, ...), then
/// connects to every peer.
/// Throws ringfuse::Error, and nothing else: naming the variable for an invalid value.
std::unique_ptr<Context> init();

/// Builds a Context for an explicit world (tests, embedding without environment variables);
/// reads no environment variable. Throws ringfuse::Error, and nothing else.
std::unique_ptr<Context> init(const WorldSpec& world, const Options& options = {});

/// Builds a Context whose rendezvous runs over `store`, a store the caller already shares with
/// every rank of the world (the torch.distributed process group hands over its c10d Store this
/// way), instead of the one at world.store_host:store_port, which is then ignored and never
/// served. The Context keeps `store` for its lifetime. Peers are reached at Options::host_addr
/// (empty: 127.0.0.1, enough when every rank is on this host). Throws ringfuse::Error only.
std::unique_ptr<Context> init(const WorldSpec& world, const Options& options,
                              std::shared_ptr<rendezvous::Store> store);

/// Parses the environment contract without connecting anything.
WorldSpec world_from_environment();
Options options_from_environment();

}  // namespace ringfuse
