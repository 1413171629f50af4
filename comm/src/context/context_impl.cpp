#include "context/context_impl.hpp"

#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "backend/cuda_staging_backend.hpp"
#include "memory/memory_space.hpp"
#include "backend/mpi_backend.hpp"
#include "backend/nccl_backend.hpp"
#include "context/only_ringfuse_errors.hpp"
#include "context/stall_chain.hpp"
#include "core/environment.hpp"
#include "core/errors.hpp"
#include "core/host_address.hpp"
#include "core/progress_record.hpp"
#include "core/tunables.hpp"
#include "core/undefined_reduction.hpp"
#include "engine/make_engine.hpp"
#include "p2p/messenger.hpp"
#include "rendezvous/prefix_store.hpp"
#include "ringfuse/error.hpp"
#include "transport/group_gather.hpp"
#include "transport/mixed_transport.hpp"
#include "transport/self_transport.hpp"
#include "transport/shm_capacity.hpp"
#include "transport/shm_transport.hpp"
#include "transport/tcp_mesh.hpp"

namespace ringfuse::context {
namespace {

// RINGFUSE_CROSS_MEMORY_MIN=auto: 64 KiB x N^2. Below it the rings were as fast or faster
// with nothing else running (a piece each for few ranks leaves the others idle, and each
// piece costs every rank a system call): N = 2 from 256 KiB, N = 4 from 1 MiB
// (perf/RESULTS.md, seventeenth session).
constexpr std::size_t kCrossMemoryUnitBytes = std::size_t{64} << 10;

/// ShmOptions::cross_memory_min_bytes for `option` (Options::cross_memory_min) among `size`
/// ranks: 0 for off.
std::size_t cross_memory_min_bytes(std::size_t option, int size) {
  if (option == Options::kCrossMemoryOff) return 0;
  if (option != Options::kCrossMemoryAuto) return option;
  const auto ranks = static_cast<std::size_t>(size);
  return kCrossMemoryUnitBytes * ranks * ranks;
}

/// MASTER_ADDR may be a name ("localhost", a pod's DNS name); the store and mesh speak IPv4.
std::string store_ipv4(const std::string& host, int rank) {
  const auto resolution = core::resolve_ipv4(host);
  if (resolution.addresses.empty()) {
    throw core::rank_error(ErrorKind::invalid_config, rank,
                           "cannot resolve the rendezvous store host '{}': {}", host,
                           resolution.problem);
  }
  return core::ipv4_text(resolution.addresses.front());
}

// Options::log_level was validated by the tunables' parser; a hand-built Options may still
// hold anything, hence the check.
void apply_log_level(const Options& options, int rank) {
  if (options.log_level.empty()) return;
  const auto parsed = spdlog::level::from_str(options.log_level);
  if (parsed == spdlog::level::off && options.log_level != "off") {
    throw core::rank_error(ErrorKind::invalid_config, rank,
                           "log level '{}' (Options::log_level, RINGFUSE_LOG_LEVEL) is invalid: "
                           "expected one of trace, debug, info, warn, error, critical, off",
                           options.log_level);
  }
  spdlog::set_level(parsed);
}

std::string this_hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "?";
  return name;
}

// How the ranks of one host reach each other, for the hierarchy's log line.
const char* host_transport_name(const transport::Transport& local) {
  if (dynamic_cast<const transport::ShmTransport*>(&local)) return "shared memory";
  if (dynamic_cast<const transport::MixedTransport*>(&local)) {
    return "shared memory where they proved they share it, tcp between the others";
  }
  return "tcp";
}

}  // namespace

ContextImpl::ContextImpl(const WorldSpec& world, const Options& options,
                         std::shared_ptr<rendezvous::Store> external_store)
    : world_(world), options_(options), external_store_(std::move(external_store)) {
  if (world_.size < 1 || world_.rank < 0 || world_.rank >= world_.size) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("invalid world: rank {} of size {}", world_.rank, world_.size));
  }
  if (!world_.global_ranks.empty()) {
    if (world_.global_ranks.size() != static_cast<std::size_t>(world_.size)) {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("invalid world: {} global ranks for a world of {}",
                              world_.global_ranks.size(), world_.size));
    }
    global_ranks_ = world_.global_ranks;
    label_ = world_.label.empty() ? "group" : world_.label;
  }
  progress_ = core::ProgressPublisher::open_if_set(options_.progress_file, world_.rank);
  // Files are named by the job's rank: a group's world (a torch.distributed new_group) would
  // otherwise write the file of the process whose global rank is its group rank.
  timeline_ = std::make_shared<engine::Timeline>(
      global_ranks_.empty() ? world_.rank : global_ranks_[static_cast<std::size_t>(world_.rank)]);
  if (world_.mpi_bootstrap) mpi_ = std::make_shared<MpiSession>(world_);
  if (world_.size > 1 && external_store_) {
    // The caller's store is already shared by the world: nothing to serve or connect to.
    store_ = external_store_.get();
    advertise_host_ = options_.host_addr.empty() ? "127.0.0.1" : options_.host_addr;
  } else if (world_.size > 1) {
    const std::string store_ip = store_ipv4(world_.store_host, world_.rank);
    if (world_.host_store) {
      // Listen where the world connects: a loopback MASTER_ADDR means every rank is on this
      // host, and nothing beyond it needs (or should reach) the store.
      store_server_ = std::make_shared<rendezvous::TcpStoreServer>(
          core::is_loopback_ipv4(store_ip) ? store_ip : "0.0.0.0", world_.store_port,
          world_.job_secret);
    }
    own_store_ = std::make_shared<rendezvous::TcpStoreClient>(
        store_ip, world_.store_port, options_.connect_timeout, world_.job_secret);
    store_ = own_store_.get();
    advertise_host_ =
        options_.host_addr.empty() ? own_store_->local_address() : options_.host_addr;
  }
  // Also for a world over a store of the caller's (a torch.distributed group), which names the
  // launcher's store only to be watched.
  if (world_.size > 1 && world_.watch_launcher && !world_.host_store &&
      !world_.store_host.empty()) {
    launcher_watch_ = std::make_unique<LauncherWatch>(
        store_ipv4(world_.store_host, world_.rank), world_.store_port, world_.job_secret,
        options_.connect_timeout, world_.rank);
  }
  if (world_.size > 1) {
    // Every init() of every rank arrives once, so arrivals / size numbers the world and keeps
    // a re-initialised world from reading the previous one's addresses.
    const std::int64_t arrival = store_->add(fmt::format("ringfuse/{}/arrivals", world_.job_id), 1);
    const std::int64_t generation = (arrival - 1) / world_.size;
    key_prefix_ = fmt::format("ringfuse/{}/{}/", world_.job_id, generation);
  }
  host_ = host_identity();
  if (options_.backend == BackendKind::mpi) {
    if (!mpi_) {
      throw core::rank_error(ErrorKind::invalid_config, global_rank(world_.rank),
                             "RINGFUSE_BACKEND=mpi needs a world started by plain "
                             "mpirun (this one came from {}); use RINGFUSE_BACKEND=auto or "
                             "native, or launch with mpirun",
                             world_.source);
    }
    mpi_backend_ = backend::make_mpi_backend(world_.rank, world_.size, options_.op_timeout);
  }
  start_backends();
}

void ContextImpl::start_backends() {
  native_ = open_channel("main");
  // A child's may come split from its parent's (child_world.cpp).
  if (options_.backend != BackendKind::native && options_.backend != BackendKind::mpi &&
      !nccl_backend_) {
    backend::NcclSetup setup{world_.rank, world_.size, world_.local_rank, store_,
                             key_prefix_ + "nccl/", options_.op_timeout};
    nccl_backend_ = backend::make_nccl_backend(setup);  // null without NCCL or a GPU
    if (options_.backend == BackendKind::nccl && !nccl_backend_ && world_.rank == 0 &&
        !parent_) {
      spdlog::warn("ringfuse: RINGFUSE_BACKEND=nccl but {}; every collective runs on native",
                   backend::nccl_unavailable_reason());
    }
  }
  // Device memory that NCCL does not take (none built, RINGFUSE_BACKEND=native|mpi) is staged
  // through pinned host memory onto the host backend. Null without a CUDA device.
  staging_backend_ = backend::make_cuda_staging_backend(
      mpi_backend_ ? static_cast<backend::Backend&>(*mpi_backend_) : *native_, world_.rank,
      world_.size);
  // Priority list: device memory -> NCCL, else staged; host memory -> MPI when asked for,
  // else native.
  // MPI's point-to-point runs on a duplicate of MPI_COMM_WORLD, so only a world uses it; a
  // child's messages travel on its own native connections, whatever the backend.
  p2p_ = mpi_backend_ && !parent_
             ? backend::make_mpi_point_to_point(world_.rank, world_.size, options_.op_timeout)
             : open_p2p("p2p");
  if (nccl_backend_) backends_.push_back(nccl_backend_.get());
  if (staging_backend_) backends_.push_back(staging_backend_.get());
  if (mpi_backend_) backends_.push_back(mpi_backend_.get());
  backends_.push_back(native_.get());
  if (world_.rank == 0 && !parent_) {
    std::string order;
    for (const auto* backend : backends_) {
      if (!order.empty()) order += ',';
      order += backend->name();
    }
    spdlog::info("ringfuse: rank 0 of {} ({}); algorithm {}, backends {}, collective timeout {} s; "
                 "{}",
                 world_.size, world_.source, to_string(options_.algorithm), order,
                 options_.op_timeout.count() / 1000,
                 core::describe_tunables(options_, core::process_environment(),
                                         core::TunableScope::context));
  }
}

ContextImpl::~ContextImpl() {
  process_sets_.sets.clear();  // their Contexts are children of this one
  lifeline_->alive = false;
  if (const auto children = lifeline_.use_count() - 1; children > 0) {
    spdlog::error("rank {}: {} destroyed while {} Context{} made from it (split, subgroup) still "
                  "exist{}; destroy children before their parent: their calls fail from now on",
                  global_rank(world_.rank), label_ == "world" ? "the world Context" : label_,
                  children, children == 1 ? "" : "s", children == 1 ? "s" : "");
  }
}

transport::MeshOptions ContextImpl::mesh_options(const std::string& channel) const {
  transport::MeshOptions mesh;
  mesh.advertise_host = advertise_host_;
  mesh.job_id = world_.job_id;
  mesh.secret = world_.job_secret;
  mesh.key_prefix = key_prefix_ + channel + "/";
  mesh.connect_timeout = options_.connect_timeout;
  mesh.op_timeout = options_.op_timeout;
  mesh.streams = options_.sockets_per_peer;
  mesh.large_waits_sleep = options_.shm_large_waits_sleep;
  mesh.abort_state = abort_state_;
  mesh.global_ranks = transport::GlobalRanks(global_ranks_);
  return mesh;
}

std::unique_ptr<transport::Transport> ContextImpl::make_transport(const std::string& channel,
                                                                  std::size_t window_bytes) {
  if (world_.size == 1) return std::make_unique<transport::SelfTransport>();
  return transport_over(mesh_options(channel), world_.rank, world_.size, window_bytes);
}

std::unique_ptr<transport::Transport> ContextImpl::transport_over(
    const transport::MeshOptions& mesh_in, int rank, int size, std::size_t window_bytes) {
  auto sharing = transport::plan_shared_memory(options_.transport, *store_, mesh_in, rank, size);
  // A flat world learns its ranks' host names here, so that TCP errors across hosts name the
  // host as well as the address (a hierarchy's groups already know both).
  transport::MeshOptions mesh = mesh_in;
  if (!mesh.global_ranks.knows_places() && !sharing.hosts.empty()) {
    mesh.global_ranks = mesh.global_ranks.placed(std::move(sharing.hosts));
  }
  if (sharing.everyone) {
    transport::ShmOptions shm{mesh};
    shm.window_bytes = window_bytes;
    shm.cross_memory_min_bytes = cross_memory_min_bytes(options_.cross_memory_min, size);
    shm.ring_bytes = shm_ring_bytes(mesh, rank, size, shm.ring_bytes);
    if (shm.ring_bytes > 0) {
      return std::make_unique<transport::ShmTransport>(rank, size, *store_, shm);
    }
  } else if (sharing.group.size() > 1) {
    // Some pairs share memory, others cannot (one hostname, separate /dev/shm): rings within
    // this rank's group, TCP for every other pair. No shared window: not every rank maps it.
    const auto& group = sharing.group;
    const int position =
        static_cast<int>(std::find(group.begin(), group.end(), rank) - group.begin());
    const std::size_t ring_bytes =
        shm_ring_bytes(transport::MixedTransport::group_mesh(mesh, group), position,
                       static_cast<int>(group.size()), transport::ShmOptions{mesh}.ring_bytes);
    if (ring_bytes > 0) {
      return std::make_unique<transport::MixedTransport>(rank, size, *store_, mesh, group,
                                                         ring_bytes);
    }
  }
  auto tcp = std::make_unique<transport::TcpMesh>(rank, size, *store_, mesh);
  // TCP forced: nothing above asked where the ranks run. Asked once the mesh is up, so that a
  // set-up error (a bad RINGFUSE_HOST_ADDR) is still the one reported.
  if (!mesh.global_ranks.knows_places()) {
    tcp->name_hosts(transport::gather_host_names(*store_, mesh, rank, size));
  }
  return tcp;
}

std::size_t ContextImpl::shm_ring_bytes(const transport::MeshOptions& mesh, int rank, int size,
                                        std::size_t wanted) {
  const auto plan =
      transport::plan_shm_rings(*store_, mesh, rank, size, wanted, options_.transport);
  // One warning per Context: the fix is the same for every channel.
  if (!plan.warning.empty() && !shm_shortfall_logged_) {
    spdlog::warn("{}", plan.warning);
    shm_shortfall_logged_ = true;
  }
  return plan.ring_bytes;
}

Engine& ContextImpl::engine() {
  check_parent();
  std::lock_guard lock(engine_mutex_);
  if (!engine_) {
    engine::EngineResources resources;
    resources.rank = world_.rank;
    resources.size = world_.size;
    resources.config = options_.engine;
    resources.progress = progress_.get();
    resources.global_ranks = global_ranks_;
    if (named_group()) resources.label = label_;
    resources.p2p = open_p2p("engine-p2p");
    resources.timeline = timeline_;
    if (parent_) {
      resources.timeline_process =
          fmt::format("{} (global ranks {})", label_, fmt::join(global_ranks_, ","));
    }
    // Shared memory when every rank is on this host (as for data), else TCP: the engine polls
    // it with wait_readable between its other duties, and the collective timeout bounds a
    // message once it started.
    resources.control = make_transport("engine-control", 0);
    const auto& engine_config = options_.engine;
    resources.data = open_channel(
        "engine-data", engine_config.fusion_shared_memory ? engine_config.fusion_threshold : 0);
    // CUDA tensors: the engine's own NCCL communicator when the Context would use NCCL, else
    // device buffers staged onto the engine's native channel (RINGFUSE_BACKEND=native|mpi).
    resources.device_space = memory::make_cuda_memory_space(
        world_.rank, world_.local_rank, options_.op_timeout, resources.device_unavailable);
    if (resources.device_space) {
      if (nccl_backend_) {
        resources.device_data = backend::make_nccl_backend(
            backend::NcclSetup{world_.rank, world_.size, world_.local_rank, store_,
                               key_prefix_ + "engine-nccl/", options_.op_timeout});
      } else {
        resources.device_data =
            backend::make_cuda_staging_backend(*resources.data, world_.rank, world_.size);
      }
      if (!resources.device_data) {
        resources.device_space.reset();
        resources.device_unavailable = backend::nccl_unavailable_reason();
      }
    }
    engine_ = engine::make_engine(std::move(resources));
  }
  return *engine_;
}

std::unique_ptr<p2p::Messenger> ContextImpl::open_p2p(const std::string& channel) {
  p2p::MessengerOptions options;
  options.rank = world_.rank;
  options.size = world_.size;
  options.advertise_host = advertise_host_.empty() ? "127.0.0.1" : advertise_host_;
  options.job_id = world_.job_id;
  options.secret = world_.job_secret;
  options.key_prefix = key_prefix_ + channel + "/";
  options.connect_timeout = options_.connect_timeout;
  options.op_timeout = options_.op_timeout;
  options.shared_memory = options_.transport != TransportKind::tcp;
  options.eager_bytes = options_.p2p_eager_bytes;
  options.unexpected_bytes = options_.p2p_unexpected_bytes;
  options.global_ranks = transport::GlobalRanks(global_ranks_);
  return std::make_unique<p2p::Messenger>(store_, options);  // no store in a world of one
}

bool ContextImpl::on_device(std::span<const P2POp> ops) const {
  // Only a build with a GPU can be handed device memory; ask CUDA where each buffer lives.
  if (!nccl_backend_ && !staging_backend_) return false;
  std::size_t device = 0;
  for (const auto& op : ops) {
    if (op.data != nullptr && backend::device_of(op.data) == Device::cuda) ++device;
  }
  if (device == 0) return false;
  if (device < ops.size() || !nccl_backend_) {
    throw core::rank_error(ErrorKind::invalid_argument, world_.rank,
                           "point-to-point: {}; copy the CUDA buffers to host memory",
                           nccl_backend_ ? "a group mixes host and CUDA device buffers"
                                         : "CUDA device buffers need the NCCL backend "
                                           "(RINGFUSE_BACKEND=auto or nccl)");
  }
  return true;
}

void ContextImpl::send(const void* data, std::size_t count, DataType type, int peer, int tag) {
  const P2POp op{P2POp::Kind::send, const_cast<void*>(data), count, type, peer, tag};
  send_recv_group({&op, 1});
}

RecvStatus ContextImpl::recv(void* data, std::size_t count, DataType type, int peer, int tag) {
  const P2POp op{P2POp::Kind::recv, data, count, type, peer, tag};
  return send_recv_group({&op, 1}).front();
}

std::vector<RecvStatus> ContextImpl::send_recv_group(std::span<const P2POp> ops) {
  check_parent();
  try {
    if (on_device(ops)) return backend::nccl_send_recv(*nccl_backend_, ops);
    return p2p_->run(ops);
  } catch (const Error& error) {
    if (named_group()) throw in_this_group(error);
    throw;
  }
}

std::unique_ptr<backend::NativeBackend> ContextImpl::open_channel(const std::string& name,
                                                                  std::size_t window_bytes) {
  auto native = std::make_unique<backend::NativeBackend>(make_transport(name, window_bytes),
                                                         options_.algorithm);
  if (auto hierarchy = make_hierarchy(name)) native->set_hierarchy(std::move(*hierarchy));
  return native;
}

std::optional<backend::NativeBackend::Hierarchy> ContextImpl::make_hierarchy(
    const std::string& channel) {
  if (world_.size == 1 || options_.hierarchical == Hierarchical::off) return std::nullopt;
  // Every rank must take the same decision, so rank 0 collects each rank's view of its place.
  const bool fits = world_.local_size > 1 && world_.cross_size > 1 &&
                    world_.size == world_.local_size * world_.cross_size &&
                    world_.rank == world_.cross_rank * world_.local_size + world_.local_rank;
  // Each view also says where the rank runs, so that the hierarchy's set-up errors can name
  // the host and address of a peer that never arrives: "1 HOSTNAME ADDRESS".
  rendezvous::PrefixStore world(*store_, key_prefix_ + channel + "/");
  const auto views = transport::all_gather_in_group(
      world, "hierarchy", fmt::format("{} {} {}", fits ? 1 : 0, this_hostname(), advertise_host_),
      world_.rank, world_.size, options_.connect_timeout, transport::GlobalRanks(global_ranks_),
      "set-up of the hierarchical all-reduce");
  const bool all =
      std::all_of(views.begin(), views.end(), [](const auto& v) { return v.starts_with("1"); });
  if (!all && world_.rank == 0 && options_.hierarchical == Hierarchical::on && channel == "main" &&
      !parent_) {
    spdlog::warn("ringfuse: RINGFUSE_HIERARCHICAL=1 ignored: it needs ranks on several hosts "
                 "with the same number on each, numbered host by host (local size {}, cross "
                 "size {}, world {})",
                 world_.local_size, world_.cross_size, world_.size);
  }
  if (!all) return std::nullopt;

  backend::NativeBackend::Hierarchy hierarchy;
  // The ranks of one host: shared memory unless TCP is forced (or they are not on one host).
  // Both transports know only positions in their group; they name global ranks, and report
  // failures where this channel's flat transport does, so every rank reads one first failure.
  const std::string channel_prefix = key_prefix_ + channel + "/";
  const auto place_of = [&](int position) {
    std::istringstream fields(views[static_cast<std::size_t>(position)]);
    std::string fit, hostname, address;
    fields >> fit >> hostname >> address;
    return fmt::format("{} ({})", hostname, address);
  };
  auto local_mesh = mesh_options(fmt::format("{}-host{}", channel, world_.cross_rank));
  std::vector<int> host_ranks;
  std::vector<std::string> host_places;
  for (int local = 0; local < world_.local_size; ++local) {
    host_ranks.push_back(global_rank(world_.cross_rank * world_.local_size + local));
    host_places.push_back(place_of(world_.cross_rank * world_.local_size + local));
  }
  local_mesh.global_ranks =
      transport::GlobalRanks(std::move(host_ranks), std::move(host_places));
  local_mesh.report_prefix = channel_prefix;
  // Shared memory decided pair by pair, as for a flat world: a host group whose ranks do not
  // all see one /dev/shm (containers with one address and hostname) still puts the pairs
  // that proved they share it on rings, and only the others on TCP.
  hierarchy.local = transport_over(local_mesh, world_.local_rank, world_.local_size, 0);
  auto cross_mesh = mesh_options(fmt::format("{}-local{}", channel, world_.local_rank));
  std::vector<int> peer_ranks;
  std::vector<std::string> peer_places;
  for (int host = 0; host < world_.cross_size; ++host) {
    peer_ranks.push_back(global_rank(host * world_.local_size + world_.local_rank));
    peer_places.push_back(place_of(host * world_.local_size + world_.local_rank));
  }
  cross_mesh.global_ranks =
      transport::GlobalRanks(std::move(peer_ranks), std::move(peer_places));
  cross_mesh.report_prefix = channel_prefix;
  hierarchy.cross = std::make_unique<transport::TcpMesh>(world_.cross_rank, world_.cross_size,
                                                         *store_, cross_mesh);
  hierarchy.min_bytes = options_.hierarchical == Hierarchical::on ? 0 : kHierarchicalMinBytes;
  if (world_.rank == 0 && channel == "main" && !parent_) {
    spdlog::info("ringfuse: hierarchical all-reduce ({}): {} ranks per host over {}, {} hosts "
                 "over tcp",
                 options_.hierarchical == Hierarchical::on ? "every all-reduce"
                                                           : "all-reduces of 64 KiB and more",
                 world_.local_size, host_transport_name(*hierarchy.local), world_.cross_size);
  }
  return hierarchy;
}

backend::Backend& ContextImpl::pick(backend::OpKind kind, DataType type, ReduceOp op,
                                    const void* buffer) {
  backend::OpDesc desc{kind, type, op, Device::cpu};
  // Only a build with NCCL and a GPU can be handed device memory; ask CUDA where it lives.
  if ((nccl_backend_ || staging_backend_) && buffer != nullptr) {
    desc.device = backend::device_of(buffer);
  }
  for (auto* backend : backends_) {
    if (backend->enabled(desc)) return *backend;
  }
  throw core::rank_error(ErrorKind::invalid_argument, global_rank(world_.rank),
                         "no backend accepts {} of {} on {} memory (RINGFUSE_BACKEND={})",
                         backend::to_string(kind), to_string(type),
                         desc.device == Device::cuda ? "CUDA device" : "host",
                         to_string(options_.backend));
}

template <class Call>
auto ContextImpl::run(backend::OpKind kind, DataType type, ReduceOp op, const void* buffer,
                      Call&& call) {
  check_parent();
  if (parent_ && options_.group_failures == GroupFailures::job) {
    // Fail fast (RINGFUSE_GROUP_FAILURES=job): a rank lost on any channel of this rank ends
    // every group, even one that does not contain the lost rank.
    if (auto reason = abort_state_->reason()) {
      throw core::rank_error(ErrorKind::peer_failure, global_rank(world_.rank),
                             "{}: {}: this job was aborted earlier (RINGFUSE_GROUP_FAILURES=job; "
                             "contain keeps groups of live ranks working): {}",
                             label_, backend::to_string(kind), *reason);
    }
  }
  auto& backend = pick(kind, type, op, buffer);
  try {
    return call(backend);
  } catch (Error& error) {
    if (error.backend().empty())
      error.in_collective(backend.sequence(), std::string(backend.name()));
    if (error.kind() == ErrorKind::timeout && error.peer() != Error::kNoRank &&
        store_ != nullptr && world_.size > 2) {
      // The peer that made no progress may only be waiting for another rank in turn (from
      // three ranks on: of two, the peer can only have stopped itself).
      const auto scope = fmt::format("{}{}/{}/", key_prefix_, backend.name(), backend.sequence());
      if (const auto why = explain_stall(*store_, scope, global_rank(world_.rank), error.peer(),
                                         backend.sequence(), kStallPatience)) {
        Error explained(error.kind(), fmt::format("{} {}", error.what(), *why), error.rank(),
                        error.peer());
        explained.in_collective(error.sequence(), error.backend());
        if (named_group()) throw in_this_group(explained);
        throw explained;
      }
    }
    if (named_group()) throw in_this_group(error);
    throw;
  }
}

void ContextImpl::refuse_undefined(std::string_view collective, DataType type,
                                   ReduceOp op) const {
  if (is_defined(type, op)) return;
  throw core::rank_error(ErrorKind::invalid_argument, global_rank(world_.rank), "{}: {}",
                         collective, core::undefined_reduction(type, op));
}

void ContextImpl::allreduce(void* data, std::size_t count, DataType type, ReduceOp op,
                            Algorithm algo) {
  refuse_undefined("allreduce", type, op);
  const auto start = std::chrono::steady_clock::now();
  const auto executed = run(backend::OpKind::allreduce, type, op, data, [&](auto& backend) {
    return backend.allreduce(data, count, type, op, algo);
  });
  if (progress_) {
    progress_->allreduce(executed.bytes, world_.size, std::chrono::steady_clock::now() - start);
  }
}

void ContextImpl::broadcast(void* data, std::size_t count, DataType type, int root) {
  run(backend::OpKind::broadcast, type, ReduceOp::sum, data,
      [&](auto& backend) { backend.broadcast(data, count, type, root); });
  if (progress_) progress_->collective();
}

void ContextImpl::allgather(const void* send, void* recv, std::size_t count, DataType type) {
  const std::vector<std::size_t> counts(static_cast<std::size_t>(world_.size), count);
  run(backend::OpKind::allgatherv, type, ReduceOp::sum, recv,
      [&](auto& backend) { backend.allgatherv(send, recv, counts, type); });
  if (progress_) progress_->collective();
}

void ContextImpl::allgatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                             DataType type) {
  run(backend::OpKind::allgatherv, type, ReduceOp::sum, recv,
      [&](auto& backend) { backend.allgatherv(send, recv, counts, type); });
  if (progress_) progress_->collective();
}

void ContextImpl::reducescatter(const void* send, void* recv, std::size_t recv_count,
                                DataType type, ReduceOp op) {
  refuse_undefined("reducescatter", type, op);
  run(backend::OpKind::reducescatter, type, op, recv,
      [&](auto& backend) { backend.reducescatter(send, recv, recv_count, type, op); });
  if (progress_) progress_->collective();
}

void ContextImpl::alltoall(const void* send, void* recv, std::size_t count, DataType type) {
  const std::vector<std::size_t> counts(static_cast<std::size_t>(world_.size), count);
  run(backend::OpKind::alltoallv, type, ReduceOp::sum, recv,
      [&](auto& backend) { backend.alltoallv(send, counts, recv, counts, type); });
  if (progress_) progress_->collective();
}

void ContextImpl::alltoallv(const void* send, std::span<const std::size_t> send_counts,
                            void* recv, std::span<const std::size_t> recv_counts, DataType type) {
  run(backend::OpKind::alltoallv, type, ReduceOp::sum, recv,
      [&](auto& backend) { backend.alltoallv(send, send_counts, recv, recv_counts, type); });
  if (progress_) progress_->collective();
}

void ContextImpl::report_step(std::uint64_t step) {
  if (progress_) progress_->step(step);
}

void ContextImpl::barrier() {
  run(backend::OpKind::barrier, DataType::u8, ReduceOp::sum, nullptr,
      [&](auto& backend) { backend.barrier(); });
  if (progress_) progress_->collective();
}

}  // namespace ringfuse::context

namespace ringfuse {

WorldSpec world_from_environment() {
  return context::only_ringfuse_errors(
      Error::kNoRank, "reading the world from the environment",
      [] { return core::parse_world(core::process_environment()); });
}

Options options_from_environment() {
  return context::only_ringfuse_errors(
      Error::kNoRank, "reading the tunables from the environment",
      [] { return core::parse_options(core::process_environment()); });
}

std::unique_ptr<Context> init(const WorldSpec& world, const Options& options) {
  return context::only_ringfuse_errors(world.rank, "init()", [&] {
    context::apply_log_level(options, world.rank);
    return std::make_unique<context::ContextImpl>(world, options);
  });
}

std::unique_ptr<Context> init(const WorldSpec& world, const Options& options,
                              std::shared_ptr<rendezvous::Store> store) {
  return context::only_ringfuse_errors(world.rank, "init() over a given store", [&] {
    if (!store) {
      throw core::rank_error(ErrorKind::invalid_argument, world.rank,
                             "init() over a given store: the store is null; pass a store "
                             "every rank shares, or call init(world, options)");
    }
    context::apply_log_level(options, world.rank);
    return std::make_unique<context::ContextImpl>(world, options, std::move(store));
  });
}

std::unique_ptr<Context> init() {
  return init(world_from_environment(), options_from_environment());
}

}  // namespace ringfuse
