// The Context behind init(): owns the rendezvous store (client, and the server when this rank
// hosts it), the transport and the backends, in that order of construction.
// Blocking collectives run on the first backend of a priority list whose enabled(op) accepts
// the operation (RINGFUSE_BACKEND picks the list; see pick()). They must be called from one
// thread at a time per Context; with RINGFUSE_BACKEND=mpi that thread is the only one that
// calls MPI (the engine keeps its own native channel).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "backend/backend.hpp"
#include "backend/native_backend.hpp"
#include "context/child_world.hpp"
#include "context/launcher_watch.hpp"
#include "context/mpi_bootstrap.hpp"
#include "core/progress_record.hpp"
#include "p2p/channel.hpp"
#include "p2p/messenger.hpp"
#include "transport/tcp_mesh.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/context.hpp"

namespace ringfuse::context {

class ContextImpl final : public Context {
 public:
  /// `external_store`: rendezvous over this store instead of connecting to (or serving) the
  /// one at world.store_host:store_port (init() over a caller's store).
  ContextImpl(const WorldSpec& world, const Options& options,
              std::shared_ptr<rendezvous::Store> external_store = nullptr);
  /// A child of another Context (split, subgroup, process set: child_world.hpp), over the
  /// store and connections settings its parent hands down.
  explicit ContextImpl(ChildWorld child);
  /// Logs an error when child Contexts made from this one still exist (they fail from then on).
  ~ContextImpl() override;

  int rank() const override { return world_.rank; }
  int size() const override { return world_.size; }
  int local_rank() const override { return world_.local_rank; }
  int local_size() const override { return world_.local_size; }
  const WorldSpec& world() const override { return world_; }
  const Options& options() const override { return options_; }

  void allreduce(void* data, std::size_t count, DataType type, ReduceOp op,
                 Algorithm algo) override;
  void broadcast(void* data, std::size_t count, DataType type, int root) override;
  void allgather(const void* send, void* recv, std::size_t count, DataType type) override;
  void allgatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                  DataType type) override;
  void reducescatter(const void* send, void* recv, std::size_t recv_count, DataType type,
                     ReduceOp op) override;
  void alltoall(const void* send, void* recv, std::size_t count, DataType type) override;
  void alltoallv(const void* send, std::span<const std::size_t> send_counts, void* recv,
                 std::span<const std::size_t> recv_counts, DataType type) override;
  void barrier() override;
  void report_step(std::uint64_t step) override;

  /// A second, independent set of connections between the same ranks (its own mesh over the
  /// same store), for a background thread such as the engine's, so its traffic never
  /// interleaves with the caller's blocking collectives. Collective: every rank must open the
  /// same channels in the same order.
  /// `window_bytes` > 0: a shared window of that many bytes per rank when the channel runs on
  /// shared memory (the engine's fusion buffer).
  std::unique_ptr<backend::NativeBackend> open_channel(const std::string& name,
                                                       std::size_t window_bytes = 0);

  /// The asynchronous engine, started on first call over channels "engine-control" (TCP, with
  /// a short no-progress timeout the engine uses as its polling tick) and "engine-data".
  Engine& engine() override;

  // Sub-communicators and process sets (child_world.cpp, process_sets.cpp).
  std::unique_ptr<Context> split(int color, int key) override;
  std::unique_ptr<Context> subgroup(std::span<const int> ranks) override;
  int global_rank(int rank) const override;
  const std::string& label() const override { return label_; }
  int add_process_set(std::span<const int> ranks) override;
  void remove_process_set(int id) override;
  std::vector<int> process_set_ranks(int id) const override;
  Engine& engine(int process_set) override;

  void send(const void* data, std::size_t count, DataType type, int peer, int tag) override;
  RecvStatus recv(void* data, std::size_t count, DataType type, int peer, int tag) override;
  std::vector<RecvStatus> send_recv_group(std::span<const P2POp> ops) override;

 private:
  /// The part of construction worlds and children share: the connections and the backends.
  void start_backends();
  /// Collective over this Context: the child of the ranks with `color` (ordered by key, then
  /// rank), or null for a negative color. `listed`: subgroup()'s list, which every rank must
  /// have passed alike (checked here, so that every rank fails alike).
  std::unique_ptr<Context> make_child(int number, int color, int key, std::string label,
                                      const std::vector<int>* listed);
  /// Refuses (invalid_argument, before any communication, so on every rank alike) a group
  /// list with duplicates, ranks out of range, or no rank; `what` names the call.
  void check_group(std::span<const int> ranks, const std::string& what) const;
  /// Throws when this is a child whose parent was destroyed first.
  void check_parent() const;
  /// In a child: the Error `error` again, naming the global rank and this Context's label.
  Error in_this_group(const Error& error) const;
  /// This rank's host, as children compare hosts: where its peers reach it, and which host of
  /// the world (cross rank) it is on (test worlds fake hosts with the cross rank alone).
  std::string host_identity() const;
  /// The point-to-point messenger of `channel` (p2p/messenger.hpp): listens, and advertises
  /// its address in the store (one key); connects nothing until a send.
  std::unique_ptr<p2p::Messenger> open_p2p(const std::string& channel);
  /// Whether the group's buffers are in CUDA device memory (then it runs on NCCL); throws
  /// invalid_argument, before anything moves, for a mix or when NCCL is not in use.
  bool on_device(std::span<const P2POp> ops) const;
  /// Connection settings for the channel `channel` (its own store namespace).
  transport::MeshOptions mesh_options(const std::string& channel) const;
  std::unique_ptr<transport::Transport> make_transport(const std::string& channel,
                                                      std::size_t window_bytes);
  /// Collective over the `size` ranks of `mesh` (a world's channel, or a hierarchy's host
  /// group): shared memory for all of them when every pair proves it can share it, a
  /// MixedTransport when only some pairs can (rings within each group that can, TCP for the
  /// other pairs), else TCP (transport/shm_transport.hpp: plan_shared_memory).
  /// `window_bytes`: the shared window, when every rank shares memory.
  std::unique_ptr<transport::Transport> transport_over(const transport::MeshOptions& mesh,
                                                      int rank, int size,
                                                      std::size_t window_bytes);
  /// Collective over the channel's ranks: the ring size that fits in /dev/shm (up to `wanted`),
  /// or 0 for TCP; warns once per Context when a channel gets less (transport/shm_capacity).
  std::size_t shm_ring_bytes(const transport::MeshOptions& mesh, int rank, int size,
                             std::size_t wanted);
  /// The host-level and cross-host connections of a hierarchical all-reduce for `channel`,
  /// when RINGFUSE_HIERARCHICAL and the world's layout call for one (every rank agrees).
  std::optional<backend::NativeBackend::Hierarchy> make_hierarchy(const std::string& channel);
  /// How long a collective that timed out waits for the other ranks' timeouts, to tell which
  /// rank stopped it (stall_chain.hpp): they time out at about the same moment.
  static constexpr std::chrono::milliseconds kStallPatience{2000};
  /// Below this, a flat all-reduce's fewer steps win over the network bytes saved.
  static constexpr std::size_t kHierarchicalMinBytes = std::size_t{64} << 10;
  /// The first backend in priority order that accepts the operation on `buffer`'s memory.
  backend::Backend& pick(backend::OpKind kind, DataType type, ReduceOp op, const void* buffer);
  /// Runs `call(backend)` on the backend pick() chooses; an Error it throws leaves with the
  /// collective's number and the backend's name (Error::sequence(), Error::backend()).
  template <class Call>
  auto run(backend::OpKind kind, DataType type, ReduceOp op, const void* buffer, Call&& call);
  /// Throws Error(invalid_argument) before any communication when `op` has no meaning on
  /// `type` (the average of bools), so every rank fails alike, a world of one included.
  void refuse_undefined(std::string_view collective, DataType type, ReduceOp op) const;

  // A child's share of its ancestors' store, store server and MPI session: kept alive while the
  // child's connections may still report to them, even after a parent was destroyed first.
  std::vector<std::shared_ptr<void>> kept_alive_;
  std::shared_ptr<Lifeline> parent_;                                  // null on a world
  std::shared_ptr<Lifeline> lifeline_ = std::make_shared<Lifeline>();  // this one's, for children
  std::vector<int> global_ranks_;   // by rank; empty on a world (identity)
  /// A child, or a world that is a group of a larger job (WorldSpec::global_ranks): its
  /// errors name global ranks and label_.
  bool named_group() const { return parent_ || !global_ranks_.empty(); }
  std::string host_;                // host_identity() of this rank
  std::string label_ = "world";
  int children_made_ = 0;           // numbers each split/subgroup alike on every rank
  std::string key_prefix_;
  // Shared by every transport of this Context: after one channel failed, none of them
  // reports an orderly shutdown to its peers.
  std::shared_ptr<transport::AbortState> abort_state_ = std::make_shared<transport::AbortState>();
  WorldSpec world_;
  Options options_;
  std::unique_ptr<core::ProgressPublisher> progress_;  // RINGFUSE_PROGRESS_FILE, else null
  // Shared with children, which may outlive this Context (an error, but never a crash).
  std::shared_ptr<MpiSession> mpi_;  // before everything that may talk over it; finalised last
  std::shared_ptr<rendezvous::TcpStoreServer> store_server_;
  std::shared_ptr<rendezvous::TcpStoreClient> own_store_;  // unless a store was handed over
  std::unique_ptr<LauncherWatch> launcher_watch_;  // WorldSpec::watch_launcher, else null
  std::shared_ptr<rendezvous::Store> external_store_;     // init()'s caller's store, or null
  rendezvous::Store* store_ = nullptr;                    // whichever of the two is in use
  std::string advertise_host_;                            // where peers reach this rank
  std::unique_ptr<backend::Backend> mpi_backend_;   // RINGFUSE_BACKEND=mpi; before mpi_ goes
  std::unique_ptr<backend::Backend> nccl_backend_;  // when built with NCCL and a GPU is present
  std::unique_ptr<backend::NativeBackend> native_;
  // Device buffers staged onto mpi_backend_ or native_ (with a GPU); goes before either.
  std::unique_ptr<backend::Backend> staging_backend_;
  std::vector<backend::Backend*> backends_;         // priority order
  std::unique_ptr<p2p::Channel> p2p_;  // send/recv: native messenger, or MPI's (RINGFUSE_BACKEND=mpi)
  bool shm_shortfall_logged_ = false;  // the /dev/shm warning is given once
  // The rank's timeline (RINGFUSE_TIMELINE, Engine::start_timeline): made by a world, shared
  // by its engine and the engines of every child made from it (children get it handed down).
  std::shared_ptr<engine::Timeline> timeline_;
  std::mutex engine_mutex_;
  std::unique_ptr<Engine> engine_;  // stopped before the connections it uses
  ProcessSets process_sets_;        // first to go: their Contexts hold this one's lifeline
};

}  // namespace ringfuse::context
