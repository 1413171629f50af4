#include "engine/engine_impl.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "algo/algorithms.hpp"
#include "backend/nccl_backend.hpp"
#include "engine/config.hpp"
#include "engine/rank_set.hpp"

namespace ringfuse::engine {
namespace {

constexpr std::chrono::microseconds kMaxIdleInterval{50'000};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

EngineImpl::EngineImpl(EngineResources resources)
    : rank_(resources.rank),
      size_(resources.size),
      config_(resources.config),
      algorithm_(resources.algorithm),
      control_(std::move(resources.control)),
      data_(std::move(resources.data)),
      device_space_(std::move(resources.device_space)),
      device_data_(std::move(resources.device_data)),
      device_unavailable_(std::move(resources.device_unavailable)),
      progress_(resources.progress),
      cache_(config_.cache_capacity),
      coordinator_(size_, cache_),
      stall_(config_.stall_warning, config_.stall_abort),
      host_memory_(config_.fusion_threshold, data_->shared_window()),
      idle_interval_(config_.cycle_time) {
  if (!config_.timeline_path.empty()) {
    timeline_ = std::make_unique<Timeline>(config_.timeline_path, rank_);
  }
  if (rank_ == 0) {
    spdlog::info("ringfuse engine: {}", describe_config(config_, core::process_environment()));
  }
  thread_ = std::thread([this] { run(); });
}

EngineImpl::~EngineImpl() {
  queue_.stop();
  if (thread_.joinable()) thread_.join();
}

EngineStats EngineImpl::stats() const {
  std::lock_guard lock(state_mutex_);
  return stats_;
}

// ---------------------------------------------------------------------------------------------
// Callers' side

void EngineImpl::check_tensor(const std::string& name, const TensorView& tensor) const {
  const auto bad = [&](const std::string& what) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: tensor '{}': {}", rank_, name, what), rank_);
  };
  if (tensor.device == Device::cuda) {
    if (!device_space_ || !device_data_) {
      bad(fmt::format("is a CUDA tensor, but {}; pass host memory, or run where a CUDA device "
                      "is visible",
                      device_unavailable_));
    }
    if (tensor.device_index != device_space_->device_index()) {
      bad(fmt::format("is on cuda:{}, but this rank's engine works on cuda:{} (its local rank "
                      "modulo the visible devices); give each rank its own GPU with "
                      "CUDA_VISIBLE_DEVICES, or move the tensor",
                      tensor.device_index, device_space_->device_index()));
    }
    if (tensor.numel() > 0 && backend::device_of(tensor.data) != Device::cuda) {
      bad("is marked as a CUDA tensor, but its data pointer is host memory");
    }
  }
  for (const auto dim : tensor.shape) {
    if (dim < 0) bad(fmt::format("negative dimension {}", dim));
  }
  if (tensor.shape.size() > 16) bad("more than 16 dimensions");
  if (tensor.data == nullptr && tensor.numel() > 0) bad("data is null");
}

Work EngineImpl::submit(std::vector<Request> requests) {
  auto work = std::make_shared<WorkState>();
  work->remaining = static_cast<int>(requests.size());
  for (auto& request : requests) request.work = work;
  if (joined_.load() && !requests.front().join) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: this rank called join(); it may enqueue again once "
                            "every rank has joined",
                            rank_),
                rank_);
  }
  if (!queue_.push(requests, config_.fusion_threshold)) {
    std::lock_guard lock(state_mutex_);
    if (failure_) throw *failure_;
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: the engine has shut down", rank_), rank_);
  }
  return Work(work);
}

Work EngineImpl::allreduce(std::string name, TensorView tensor, AllreduceOptions options) {
  return submit_one(allreduce_request(std::move(name), tensor, options));
}

Work EngineImpl::grouped_allreduce(std::string name, std::vector<TensorView> tensors,
                                   AllreduceOptions options) {
  if (tensors.empty()) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: grouped allreduce '{}' has no tensors", rank_, name),
                rank_);
  }
  std::vector<Request> requests;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    requests.push_back(allreduce_request(
        tensors.size() == 1 ? name : fmt::format("{}.{}", name, i), tensors[i], options));
  }
  return submit(std::move(requests));
}

Request EngineImpl::allreduce_request(std::string name, const TensorView& tensor,
                                      const AllreduceOptions& options) const {
  check_tensor(name, tensor);
  if (!is_floating_point(tensor.dtype) && (options.prescale != 1.0 || options.postscale != 1.0)) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: tensor '{}': prescale/postscale need a "
                            "floating-point tensor, not {}",
                            rank_, name, to_string(tensor.dtype)),
                rank_);
  }
  Request request = tensor_request(OpType::allreduce, std::move(name), tensor);
  request.fp.op = options.op;
  request.fp.prescale = options.prescale;
  request.fp.postscale = options.postscale;
  request.fp.compression = (tensor.dtype == DataType::f32 || tensor.dtype == DataType::f64)
                               ? options.compression
                               : Compression::none;
  return request;
}

Request EngineImpl::tensor_request(OpType type, std::string name, const TensorView& tensor) {
  Request request;
  request.fp.op_type = type;
  request.fp.dtype = tensor.dtype;
  request.fp.shape = tensor.shape;
  request.fp.name = std::move(name);
  request.fp.device = tensor.device;
  request.data = tensor.data;
  return request;
}

Work EngineImpl::submit_one(Request request) {
  std::vector<Request> requests;
  requests.push_back(std::move(request));
  return submit(std::move(requests));
}

Work EngineImpl::allgather(std::string name, TensorView input, OutputAllocator allocate) {
  check_tensor(name, input);
  if (input.shape.empty() || !allocate) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: allgather '{}' needs a tensor with at least one "
                            "dimension and an output allocator",
                            rank_, name),
                rank_);
  }
  Request request = tensor_request(OpType::allgather, std::move(name), input);
  request.allocate = std::move(allocate);
  return submit_one(std::move(request));
}

Work EngineImpl::broadcast(std::string name, TensorView tensor, int root) {
  check_tensor(name, tensor);
  if (root < 0 || root >= size_) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: broadcast '{}': root {} is not a rank of this world "
                            "of {}",
                            rank_, name, root, size_),
                rank_);
  }
  Request request = tensor_request(OpType::broadcast, std::move(name), tensor);
  request.fp.root = root;
  return submit_one(std::move(request));
}

Work EngineImpl::alltoall(std::string name, TensorView input, TensorView output) {
  check_tensor(name, input);
  check_tensor(name, output);
  if (input.shape.empty() || input.shape.front() % size_ != 0 || output.dtype != input.dtype ||
      output.numel() != input.numel() || output.device != input.device) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: alltoall '{}': dimension 0 must divide by the world "
                            "size {} and the output must have the input's dtype, size and device",
                            rank_, name, size_),
                rank_);
  }
  Request request = tensor_request(OpType::alltoall, std::move(name), input);
  request.output = output.data;
  return submit_one(std::move(request));
}

Work EngineImpl::reducescatter(std::string name, TensorView input, TensorView output,
                               ReduceOp op) {
  check_tensor(name, input);
  check_tensor(name, output);
  if (output.dtype != input.dtype || output.device != input.device ||
      output.numel() * static_cast<std::size_t>(size_) != input.numel()) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: reducescatter '{}': the input must hold {} times the "
                            "output's elements, of the same dtype and device",
                            rank_, name, size_),
                rank_);
  }
  Request request = tensor_request(OpType::reducescatter, std::move(name), input);
  request.fp.op = op;
  request.output = output.data;
  return submit_one(std::move(request));
}

Work EngineImpl::barrier(std::string name) {
  Request request;
  request.fp.op_type = OpType::barrier;
  request.fp.dtype = DataType::u8;
  request.fp.name = std::move(name);
  return submit_one(std::move(request));
}

Work EngineImpl::join() {
  if (joined_.exchange(true)) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: join() called twice", rank_), rank_);
  }
  Request request;
  request.join = true;
  request.fp.op_type = OpType::barrier;
  request.fp.name = "join";
  try {
    return submit_one(std::move(request));
  } catch (...) {
    joined_ = false;
    throw;
  }
}

// ---------------------------------------------------------------------------------------------
// Engine thread

void EngineImpl::run() {
  try {
    while (true) {
      const bool stopping = queue_.stopping();
      if (stopping && stop_requested_ == Clock::time_point{}) stop_requested_ = Clock::now();
      const bool active = world_busy_ || !outstanding_.empty() || join_request_.has_value();
      const auto wait = active ? config_.cycle_time : idle_interval_;
      auto taken = queue_.wait_and_take(config_.fusion_threshold, config_.cycle_time / 5,
                                        config_.cycle_time, Clock::now() + wait);
      const bool had_work = !taken.empty();
      auto message = announce(std::move(taken), queue_.stopping());
      const auto started = Clock::now();
      const auto announced = message.entries.size() + message.indices.size();
      const bool by_index = message.indexed;
      auto response = negotiate(std::move(message));
      if (response.indexed_released) {
        release_held(response);
      } else if (by_index) {
        held_.clear();  // the coordinator took them into its table
      }
      if (timeline_ && (announced > 0 || !response.ready.empty())) {
        timeline_->event(Timeline::kNegotiation, "NEGOTIATE", started, Clock::now(),
                         fmt::format("\"announced\":{},\"released\":{},\"by_index\":{}",
                                     announced, response.ready.size(),
                                     response.indexed_released.has_value()));
      }
      apply(response);
      if (response.status != CycleResponse::Status::ok) break;
      if (had_work || active || response.world_busy || !response.ready.empty()) {
        idle_interval_ = config_.cycle_time;
      } else {
        idle_interval_ = std::min(kMaxIdleInterval, idle_interval_ * 2);
      }
    }
  } catch (const Error& error) {
    fail_everything(error);
  } catch (const std::exception& e) {
    fail_everything(Error(ErrorKind::system,
                          fmt::format("rank {}: ringfuse engine: {}", rank_, e.what()), rank_));
  }
  queue_.stop();
  // Requests that raced with the end get the same answer as everything else pending.
  auto late = queue_.wait_and_take(0, {}, {}, Clock::now());
  Error reason = [&] {
    std::lock_guard lock(state_mutex_);
    return failure_ ? *failure_
                    : Error(ErrorKind::invalid_argument,
                            fmt::format("rank {}: engine: the engine has shut down", rank_), rank_);
  }();
  for (auto& request : late) request.work->complete(&reason);
  if (join_request_) join_request_->work->complete(&reason);
  timeline_.reset();
}

CycleMessage EngineImpl::announce(std::vector<Request> taken, bool shutdown) {
  CycleMessage message;
  message.shutdown = shutdown;
  const auto now = Clock::now();
  for (auto& request : taken) {
    if (request.join) {
      message.join = true;
      join_request_ = std::move(request);
      continue;
    }
    if (timeline_) {
      timeline_->event(Timeline::kQueue, "QUEUE " + request.fp.name, request.enqueued, now,
                       fmt::format("\"seq\":{}", request.seq));
    }
    const auto seq = request.seq;
    held_.push_back(seq);
    outstanding_.emplace(seq, std::move(request));
  }
  message.busy = !outstanding_.empty();

  // The short way when everything held is cached (never an allgather: the coordinator must
  // collect every rank's dimension 0).
  held_indices_.clear();
  bool by_index = !message.join && !shutdown && !join_request_;
  for (auto it = held_.begin(); by_index && it != held_.end(); ++it) {
    if (const auto index = cache_.find(outstanding_.at(*it).fp)) {
      held_indices_.push_back(*index);
    } else {
      by_index = false;
    }
  }
  if (by_index) {
    message.indexed = true;
    message.first_seq = held_.empty() ? 0 : held_.front();
    message.indices = held_indices_;
    return message;
  }
  for (const auto seq : held_) {
    const auto& fp = outstanding_.at(seq).fp;
    message.entries.push_back(Announcement{seq, cache_.find(fp), fp});
  }
  held_.clear();
  return message;
}

void EngineImpl::release_held(CycleResponse& response) {
  const auto released = *response.indexed_released;
  if (released > held_.size()) {
    throw Error(ErrorKind::protocol,
                fmt::format("rank {}: ringfuse engine: the coordinator released {} collectives "
                            "by cache index, but this rank holds {}",
                            rank_, released, held_.size()),
                rank_, 0);
  }
  response.ready.reserve(released);
  for (std::uint32_t i = 0; i < released; ++i) {
    ReadyEntry entry;
    entry.seq = held_.front();
    entry.kind = ReadyEntry::Kind::cached;
    entry.cache_index = held_indices_[i];
    entry.fp = outstanding_.at(entry.seq).fp;
    response.ready.push_back(std::move(entry));
    held_.pop_front();
  }
}

CycleResponse EngineImpl::negotiate(CycleMessage message) {
  if (rank_ == 0) return coordinate(std::move(message));
  control_.send(0, message.encode());
  const auto waiting_since = Clock::now();
  const auto give_up = config_.stall_abort + std::chrono::seconds(10);
  while (true) {
    if (auto bytes = control_.try_recv(0)) return CycleResponse::decode(*bytes, cache_);
    if (Clock::now() - waiting_since > give_up) {
      throw Error(ErrorKind::timeout,
                  fmt::format("rank {}: ringfuse engine: the coordinator (rank 0) has not "
                              "answered a negotiation cycle for {:.1f} s; is rank 0 stalled?",
                              rank_, seconds_since(waiting_since)),
                  rank_, 0);
    }
    if (queue_.stopping() && stop_requested_ != Clock::time_point{} &&
        Clock::now() - stop_requested_ > std::chrono::seconds(2)) {
      throw Error(ErrorKind::peer_failure,
                  fmt::format("rank {}: engine: shut down while the coordinator (rank 0) had not "
                              "answered the last negotiation cycle",
                              rank_),
                  rank_, 0);
    }
  }
}

CycleResponse EngineImpl::coordinate(CycleMessage message) {
  const auto cycle_started = Clock::now();
  coordinator_.receive(0, std::move(message), cycle_started);
  std::vector<bool> received(static_cast<std::size_t>(size_), false);
  received[0] = true;
  int missing = size_ - 1;
  std::optional<std::string> abort;
  while (missing > 0 && !abort) {
    for (int peer = 1; peer < size_; ++peer) {
      if (received[static_cast<std::size_t>(peer)]) continue;
      if (auto bytes = control_.try_recv(peer)) {
        coordinator_.receive(peer, CycleMessage::decode(*bytes, cache_), Clock::now());
        received[static_cast<std::size_t>(peer)] = true;
        --missing;
      }
    }
    if (missing == 0) break;
    std::vector<int> silent;
    for (int peer = 1; peer < size_; ++peer) {
      if (!received[static_cast<std::size_t>(peer)]) silent.push_back(peer);
    }
    abort = stall_.inspect(Clock::now(), coordinator_.waiting(), silent, cycle_started);
    if (!abort && queue_.stopping() && stop_requested_ != Clock::time_point{} &&
        Clock::now() - stop_requested_ > std::chrono::seconds(2)) {
      throw Error(ErrorKind::peer_failure,
                  fmt::format("rank 0: engine: shut down while {} had not taken part in the last "
                              "negotiation cycle",
                              describe_ranks(silent)),
                  0);
    }
  }
  CycleResponse response;
  if (!abort) {
    response = coordinator_.respond(Clock::now());
    const auto waiting = coordinator_.waiting();
    abort = stall_.inspect(Clock::now(), waiting, {}, Clock::now());
    if (!abort) stall_.resolved(waiting);
  }
  if (abort) {
    response = CycleResponse{};
    response.status = CycleResponse::Status::abort;
    response.message = *abort;
  }
  const auto bytes = response.encode();
  for (int peer = 1; peer < size_; ++peer) control_.send(peer, bytes);
  return response;
}

void EngineImpl::apply(const CycleResponse& response) {
  if (response.status == CycleResponse::Status::abort) {
    spdlog::error("rank {}: {}", rank_, response.message);
    throw Error(ErrorKind::timeout, response.message, rank_);
  }
  world_busy_ = response.world_busy;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  const auto evictions_before = cache_.evictions();
  for (const auto& entry : response.ready) {
    queue_.advance_sequence(entry.seq + 1);
    if (entry.kind == ReadyEntry::Kind::cached) {
      cache_.touch(entry.cache_index);
      ++hits;
    } else {
      if (entry.kind == ReadyEntry::Kind::full) {
        cache_.insert(entry.fp);
        ++misses;
      }
    }
  }
  {
    std::lock_guard lock(state_mutex_);
    if (!response.ready.empty()) {
      ++stats_.cycles;
      if (response.indexed_released) ++stats_.fast_path_cycles;
    }
    stats_.cache_hits += hits;
    stats_.cache_misses += misses;
    stats_.cache_evictions += cache_.evictions() - evictions_before;
  }
  for (const auto& entry : response.ready) {
    if (entry.kind != ReadyEntry::Kind::error) continue;
    const Error error(ErrorKind::invalid_argument, entry.error, rank_);
    if (outstanding_.count(entry.seq) != 0) spdlog::error("rank {}: {}", rank_, entry.error);
    complete(entry.seq, &error);
  }
  for (const auto& group : plan_fusion(response.ready, config_.fusion_threshold,
                                       config_.fusion_inplace_min, config_.fusion_lookahead)) {
    execute(response, group);
  }
  if (response.join_done && join_request_) {
    {
      std::lock_guard lock(join_request_->work->mutex);
      join_request_->work->output_shape = {response.last_joined};
    }
    joined_ = false;
    auto work = join_request_->work;
    join_request_.reset();
    work->complete(nullptr);
  }
  if (response.status == CycleResponse::Status::shutdown) {
    const Error error(ErrorKind::peer_failure, response.message, rank_);
    if (!outstanding_.empty() || join_request_) spdlog::error("rank {}: {}", rank_, error.what());
    std::lock_guard lock(state_mutex_);
    if (!failure_) failure_ = error;
    for (auto& [seq, request] : outstanding_) request.work->complete(&error);
    outstanding_.clear();
    held_.clear();
  }
}

backend::MemorySpace& EngineImpl::memory_for(Device device) {
  if (device == Device::cpu) return host_memory_;
  if (!device_space_) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: engine: the other ranks agreed on a collective of CUDA "
                            "tensors, but this rank cannot take part: {}",
                            rank_, device_unavailable_),
                rank_);
  }
  return *device_space_;
}

backend::Backend& EngineImpl::backend_for(Device device) {
  if (device == Device::cpu) return *data_;
  memory_for(device);  // the same check
  return *device_data_;
}

void EngineImpl::complete(std::uint64_t seq, const Error* error) {
  const auto it = outstanding_.find(seq);
  if (it == outstanding_.end()) return;  // a joined rank's stand-in
  auto work = it->second.work;
  outstanding_.erase(it);
  work->complete(error);
}

void EngineImpl::execute(const CycleResponse& response, const FusionGroup& group) {
  const auto& head = response.ready[group.members.front()];
  if (head.fp.op_type == OpType::allreduce) {
    run_allreduce(response, group);
  } else {
    const auto it = outstanding_.find(head.seq);
    run_single(head, it == outstanding_.end() ? nullptr : &it->second);
    complete(head.seq, nullptr);
    if (progress_) progress_->collective();
  }
  std::lock_guard lock(state_mutex_);
  ++stats_.collectives;
}

void EngineImpl::run_allreduce(const CycleResponse& response, const FusionGroup& group) {
  const auto& fp = response.ready[group.members.front()].fp;
  const bool floating = is_floating_point(fp.dtype);
  const ReduceOp backend_op = floating && fp.op == ReduceOp::avg ? ReduceOp::sum : fp.op;
  const double post = fp.postscale * (floating && fp.op == ReduceOp::avg ? 1.0 / size_ : 1.0);
  const DataType wire = wire_type(fp);

  auto& memory = memory_for(fp.device);
  auto& backend = backend_for(fp.device);
  memory.begin();

  // Where each member's data lives on this rank: the caller's tensor, or (a joined rank) the
  // operator's identity in scratch memory.
  std::vector<void*> data;
  std::size_t scratch_bytes = 0;
  for (const auto index : group.members) {
    if (outstanding_.count(response.ready[index].seq) == 0) {
      scratch_bytes += response.ready[index].fp.bytes();
    }
  }
  std::byte* spare = scratch_bytes > 0 ? memory.scratch(scratch_bytes) : nullptr;
  std::uint64_t identity = 0;
  fill_identity(&identity, fp.dtype, fp.op, 1);
  for (const auto index : group.members) {
    const auto& entry = response.ready[index];
    const auto it = outstanding_.find(entry.seq);
    if (it != outstanding_.end()) {
      data.push_back(it->second.data);
    } else {
      memory.fill(spare, identity, element_size(fp.dtype), entry.fp.numel());
      data.push_back(spare);
      spare += entry.fp.bytes();
    }
  }

  std::size_t total = 0;
  for (const auto index : group.members) total += response.ready[index].fp.numel();
  const Algorithm algo = algorithm_ != Algorithm::automatic
                             ? algorithm_
                             : algo::choose_allreduce(total * element_size(wire), total, size_);
  std::string_view algorithm_name = to_string(algo);  // for the timeline
  const auto label = group.members.size() == 1
                         ? response.ready[group.members.front()].fp.name
                         : fmt::format("fused x{}", group.members.size());
  // The collective itself is over: on the timeline and in the launcher's progress record.
  const auto collective_done = [&](Clock::time_point start, std::size_t bytes) {
    const auto end = Clock::now();
    if (timeline_) {
      timeline_->event(Timeline::kCollective, "ALLREDUCE " + label, start, end,
                       fmt::format("\"bytes\":{},\"tensors\":{},\"dtype\":\"{}\",\"algorithm\":\"{}\"",
                                   bytes, group.members.size(), to_string(wire), algorithm_name));
    }
    if (progress_) progress_->allreduce(bytes, size_, end - start);
  };

  if (!group.fused) {
    void* buffer = data.front();
    const backend::CopySegment in_place{buffer, buffer, total};
    if (fp.prescale != 1.0) memory.convert({&in_place, 1}, fp.dtype, fp.dtype, fp.prescale);
    memory.finish();
    const auto start = Clock::now();
    backend.allreduce(buffer, total, fp.dtype, backend_op, Algorithm::automatic);
    collective_done(start, total * element_size(fp.dtype));
    if (post != 1.0) {
      memory.convert({&in_place, 1}, fp.dtype, fp.dtype, post);
      memory.finish();
    }
  } else {
    const std::size_t wire_bytes = element_size(wire);
    std::byte* buffer = memory.fusion_buffer(total * wire_bytes);
    if (fp.device == Device::cpu &&
        data_->runs_in_window(buffer, total * wire_bytes, Algorithm::automatic)) {
      algorithm_name = "shared-window";
    }
    auto start = Clock::now();
    // Each member's place in the buffer, as (into the buffer) or (out of it) segments.
    const auto place_members = [&](bool into_buffer) {
      segments_.clear();
      std::size_t offset = 0;
      for (std::size_t i = 0; i < group.members.size(); ++i) {
        const auto count = response.ready[group.members[i]].fp.numel();
        std::byte* slot = buffer + offset * wire_bytes;
        segments_.push_back(into_buffer ? backend::CopySegment{slot, data[i], count}
                                        : backend::CopySegment{data[i], slot, count});
        offset += count;
      }
      return std::span<const backend::CopySegment>(segments_);
    };
    memory.convert(place_members(true), wire, fp.dtype, fp.prescale);
    memory.finish();
    if (timeline_) {
      timeline_->event(Timeline::kMemcpy, "MEMCPY_IN_FUSION_BUFFER", start, Clock::now(),
                       fmt::format("\"bytes\":{}", total * wire_bytes));
    }
    start = Clock::now();
    backend.allreduce(buffer, total, wire, backend_op, Algorithm::automatic);
    collective_done(start, total * wire_bytes);
    start = Clock::now();
    memory.convert(place_members(false), fp.dtype, wire, post);
    memory.finish();
    if (timeline_) {
      timeline_->event(Timeline::kMemcpy, "MEMCPY_OUT_FUSION_BUFFER", start, Clock::now(),
                       fmt::format("\"bytes\":{}", total * wire_bytes));
    }
    std::lock_guard lock(state_mutex_);
    stats_.fused_tensors += group.members.size();
  }
  for (const auto index : group.members) complete(response.ready[index].seq, nullptr);
}

void EngineImpl::run_single(const ReadyEntry& entry, Request* local) {
  const auto& fp = entry.fp;
  const auto start = Clock::now();
  std::string args = fmt::format("\"bytes\":{}", fp.bytes());
  switch (fp.op_type) {
    case OpType::allreduce: break;  // handled by run_allreduce
    case OpType::barrier: backend_for(fp.device).barrier(); break;
    case OpType::broadcast: {
      void* data = local != nullptr ? local->data : memory_for(fp.device).scratch(fp.bytes());
      backend_for(fp.device).broadcast(data, fp.numel(), fp.dtype, fp.root);
      break;
    }
    case OpType::alltoall: {
      const std::vector<std::size_t> counts(static_cast<std::size_t>(size_),
                                            fp.numel() / static_cast<std::size_t>(size_));
      backend_for(fp.device).alltoallv(local->data, counts, local->output, counts, fp.dtype);
      break;
    }
    case OpType::reducescatter:
      backend_for(fp.device).reducescatter(local->data, local->output,
                                           fp.numel() / static_cast<std::size_t>(size_), fp.dtype,
                                           fp.op);
      break;
    case OpType::allgather: {
      std::size_t row = 1;
      for (std::size_t d = 1; d < fp.shape.size(); ++d) row *= static_cast<std::size_t>(fp.shape[d]);
      std::vector<std::size_t> counts;
      std::int64_t rows = 0;
      for (const auto d0 : entry.dim0) {
        counts.push_back(static_cast<std::size_t>(d0) * row);
        rows += d0;
      }
      std::vector<std::int64_t> shape = fp.shape;
      shape.front() = rows;
      const std::size_t out_bytes = static_cast<std::size_t>(rows) * row * element_size(fp.dtype);
      void* output = nullptr;
      std::optional<Error> allocation_error;
      if (local != nullptr) {
        try {
          output = local->allocate(shape);
          if (output == nullptr && out_bytes > 0) throw std::runtime_error("it returned null");
        } catch (const std::exception& e) {
          allocation_error = Error(ErrorKind::invalid_argument,
                                   fmt::format("rank {}: engine: allgather '{}': the output "
                                               "allocator failed: {}",
                                               rank_, fp.name, e.what()),
                                   rank_);
          output = nullptr;
        }
      }
      // Take part even without an output (joined rank, failed allocator): the others wait.
      std::byte* sink = output == nullptr ? memory_for(fp.device).scratch(out_bytes)
                                          : static_cast<std::byte*>(output);
      const void* send = local != nullptr ? local->data : sink;
      backend_for(fp.device).allgatherv(send, sink, counts, fp.dtype);
      if (local != nullptr) {
        std::lock_guard lock(local->work->mutex);
        local->work->output_shape = shape;
      }
      if (allocation_error) {
        auto work = local->work;
        outstanding_.erase(entry.seq);
        work->complete(&*allocation_error);
      }
      args = fmt::format("\"bytes\":{}", out_bytes);
      break;
    }
  }
  if (timeline_) {
    timeline_->event(Timeline::kCollective,
                     fmt::format("{} {}", fmt::format("{}", to_string(fp.op_type)), fp.name),
                     start, Clock::now(), args);
  }
}

void EngineImpl::fail_everything(const Error& error) {
  {
    std::lock_guard lock(state_mutex_);
    if (!failure_) failure_ = error;
  }
  if (!outstanding_.empty() || join_request_) {
    spdlog::error("rank {}: ringfuse engine stopped: {}", rank_, error.what());
  }
  for (auto& [seq, request] : outstanding_) request.work->complete(&error);
  outstanding_.clear();
  held_.clear();
}

}  // namespace ringfuse::engine
