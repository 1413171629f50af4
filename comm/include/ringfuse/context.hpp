// A Context is one rank's membership in one world: its identity, its connections and the
// blocking collectives over them. Several Contexts may live in one process (tests do this).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

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
};

/// Two-level all-reduce over hosts (RINGFUSE_HIERARCHICAL): `automatic` uses it for all-reduces
/// of 64 KiB and more when the ranks span several hosts with the same number of ranks on each
/// (RINGFUSE_LOCAL_SIZE x RINGFUSE_CROSS_SIZE), `on` for every all-reduce, `off` never.
enum class Hierarchical : std::uint8_t { automatic, on, off };

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
  /// RINGFUSE_LOG_LEVEL: spdlog level (trace, debug, info, warn, error, critical, off) set by
  /// init(); empty leaves the process's level as it is.
  std::string log_level;
  /// RINGFUSE_PROGRESS_FILE: the record ringfuse-run --health-port reads this rank's progress
  /// from; empty: none.
  std::string progress_file;
  EngineConfig engine;                                 // the asynchronous engine's tunables
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

 protected:
  Context() = default;
};

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
