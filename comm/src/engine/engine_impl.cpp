#include "engine/engine_impl.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/errors.hpp"
#include "core/thread_name.hpp"
#include "core/undefined_reduction.hpp"
#include "engine/config.hpp"

namespace ringfuse::engine {
namespace {

constexpr std::chrono::microseconds kMaxIdleInterval{50'000};
// After a cycle that ran collectives, the engine thread checks its queue this long (yielding
// the CPU in between) before it sleeps: a training loop's next enqueue or flush() then finds
// it awake instead of waking it through the scheduler (as Work::wait does for the caller).
constexpr std::chrono::microseconds kSpinAfterWork{100};

}  // namespace

EngineImpl::EngineImpl(EngineResources resources)
    : rank_(resources.rank),
      size_(resources.size),
      names_{std::move(resources.global_ranks), std::move(resources.label)},
      config_(resources.config),
      timeline_(resources.timeline ? std::move(resources.timeline)
                                   : std::make_shared<Timeline>(rank_),
                resources.timeline_process),
      negotiator_(rank_, size_, config_, std::move(resources.control), names_),
      executor_(rank_, size_, config_.fusion_threshold,
                ExecutionResources{std::move(resources.data), std::move(resources.device_space),
                                   std::move(resources.device_data),
                                   std::move(resources.device_unavailable), resources.progress,
                                   names_(resources.rank)},
                outstanding_, timeline_),
      idle_interval_(config_.cycle_time) {
  if (!config_.timeline_path.empty()) {
    timeline_.timeline().start_configured(config_.timeline_path, config_.timeline_mark_cycles);
  }
  if (rank_ == 0 && names_.label.empty()) {
    spdlog::info("ringfuse engine: {}", describe_config(config_, core::process_environment()));
  }
  thread_ = std::thread([this] {
    core::name_this_thread("rf-engine");
    run();
  });
  if (resources.p2p) p2p_ = std::make_unique<P2PWorker>(std::move(resources.p2p));
}

Work EngineImpl::send(TensorView tensor, int peer, int tag) {
  if (!p2p_) refuse("send: this engine has no point-to-point connections");
  return p2p_->send(tensor, peer, tag);
}

Work EngineImpl::recv(TensorView tensor, int peer, int tag) {
  if (!p2p_) refuse("recv: this engine has no point-to-point connections");
  return p2p_->recv(tensor, peer, tag);
}

EngineImpl::~EngineImpl() {
  p2p_.reset();
  queue_.stop();
  if (thread_.joinable()) thread_.join();
}

void EngineImpl::start_timeline(const std::string& path, bool mark_cycles) {
  if (path.empty()) refuse("start_timeline: the path is empty");
  timeline_.timeline().start(path, mark_cycles);
}

EngineStats EngineImpl::stats() const {
  std::lock_guard lock(state_mutex_);
  EngineStats stats = stats_;
  stats.collectives = executor_.collectives();
  stats.fused_tensors = executor_.fused_tensors();
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Callers' side

static std::string undefined_reduction(std::string_view name, DataType type, ReduceOp op) {
  return fmt::format("tensor '{}': {}", name, core::undefined_reduction(type, op));
}

void EngineImpl::refuse(const std::string& what) const {
  throw core::rank_error(ErrorKind::invalid_argument, names_(rank_), "engine: {}", what);
}

void EngineImpl::check_tensor(std::string_view name, const TensorView& tensor) const {
  const auto bad = [&](const std::string& what) {
    refuse(fmt::format("tensor '{}': {}", name, what));
  };
  if (auto problem = executor_.device_problem(tensor)) bad(*problem);
  for (const auto dim : tensor.shape) {
    if (dim < 0) bad(fmt::format("negative dimension {}", dim));
  }
  if (tensor.shape.size() > 16) bad("more than 16 dimensions");
  if (tensor.data == nullptr && tensor.numel() > 0) bad("data is null");
}

Work EngineImpl::submit(std::vector<Request> requests) { return submit(std::span(requests)); }

Work EngineImpl::submit(std::span<Request> requests) {
  auto work = make_work_state();
  work->remaining = static_cast<int>(requests.size());
  for (auto& request : requests) request.work = work;
  if (joined_.load() && !requests.front().join) {
    refuse("this rank called join(); it may enqueue again once every rank has joined");
  }
  const bool by_name = config_.match == MatchMode::name && !requests.front().join;
  if (by_name) claim_names(requests, *work);
  if (!queue_.push(requests, config_.fusion_threshold)) {
    if (by_name) std::exchange(work->before_done, nullptr)();
    std::lock_guard lock(state_mutex_);
    if (failure_) throw *failure_;
    refuse("the engine has shut down");
  }
  return Work(work);
}

void EngineImpl::claim_names(std::span<const Request> requests, WorkState& work) {
  std::vector<std::string> names;
  for (const auto& request : requests) names.push_back(request.fp.name);
  {
    std::lock_guard lock(names_mutex_);
    std::set<std::string> claimed;
    for (const auto& name : names) {
      if (pending_names_.count(name) != 0 || !claimed.insert(name).second) {
        refuse(fmt::format("'{}' is already pending on this rank (RINGFUSE_MATCH=name matches "
                           "collectives by name); wait for its Work before enqueueing it "
                           "again, or give this one another name",
                           name));
      }
    }
    pending_names_.insert(names.begin(), names.end());
  }
  // Released before the Work is marked done, so that a caller may enqueue the name again as
  // soon as wait() returns.
  work.before_done = [this, names = std::move(names)] { release_names(names); };
}

void EngineImpl::release_names(const std::vector<std::string>& names) {
  std::lock_guard lock(names_mutex_);
  for (const auto& name : names) pending_names_.erase(name);
}

Work EngineImpl::allreduce(std::string name, TensorView tensor, AllreduceOptions options) {
  return submit_one(allreduce_request(std::move(name), std::move(tensor), options));
}

Work EngineImpl::grouped_allreduce(std::string name, std::vector<TensorView> tensors,
                                   AllreduceOptions options) {
  if (tensors.empty()) {
    refuse(fmt::format("grouped allreduce '{}' has no tensors", name));
  }
  std::vector<Request> requests;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    requests.push_back(
        allreduce_request(member_name(name, i, tensors.size()), tensors[i], options));
  }
  return submit(std::move(requests));
}

Work EngineImpl::allreduce_view(std::string_view name, const TensorView& tensor,
                                AllreduceOptions options) {
  // Name mode claims names in a set of its own: the owning call's path, allocations and all.
  if (config_.match == MatchMode::name) return allreduce(std::string(name), tensor, options);
  check_allreduce(name, tensor, options);
  if (joined_.load()) {
    refuse("this rank called join(); it may enqueue again once every rank has joined");
  }
  auto work = make_work_state();
  const bool queued = queue_.emplace(
      [&](Request& request) {
        // Every field is written (request.hpp's size check stands guard over new ones); the
        // name and shape are assigned into the memory of the request this one replaces.
        auto& fp = request.fp;
        fp.op_type = OpType::allreduce;
        fp.dtype = tensor.dtype;
        fp.root = -1;
        fp.device = tensor.device;
        fp.shape.assign(tensor.shape.begin(), tensor.shape.end());
        // clear() and append(): assign() takes the general replace path (≈ 120 instructions
        // a name), append() copies into the capacity.
        fp.name.clear();
        fp.name.append(name);
        fp.splits.clear();
        set_allreduce_options(request, options);  // op, scales, compression
        request.data = tensor.data;
        request.output = nullptr;
        request.allocate = nullptr;
        request.work = work;
        request.join = false;  // seq and enqueued: the queue's
      },
      config_.fusion_threshold);
  if (!queued) {
    std::lock_guard lock(state_mutex_);
    if (failure_) throw *failure_;
    refuse("the engine has shut down");
  }
  return Work(std::move(work));
}

void EngineImpl::check_allreduce(std::string_view name, const TensorView& tensor,
                                 const AllreduceOptions& options) const {
  check_tensor(name, tensor);
  // Integers scale in f64 and truncate toward zero (Horovod's rule); a bool has no scale.
  if (tensor.dtype == DataType::boolean &&
      (options.prescale != 1.0 || options.postscale != 1.0)) {
    refuse(fmt::format("tensor '{}': prescale/postscale do not apply to a bool tensor", name));
  }
  if (!is_defined(tensor.dtype, options.op)) {
    refuse(undefined_reduction(name, tensor.dtype, options.op));
  }
}

void EngineImpl::set_allreduce_options(Request& request, const AllreduceOptions& options) {
  request.fp.op = options.op;
  request.fp.prescale = options.prescale;
  request.fp.postscale = options.postscale;
  request.fp.compression = (request.fp.dtype == DataType::f32 ||
                            request.fp.dtype == DataType::f64)
                               ? options.compression
                               : Compression::none;
}

Request EngineImpl::allreduce_request(std::string name, TensorView tensor,
                                      const AllreduceOptions& options) const {
  check_allreduce(name, tensor, options);
  Request request = tensor_request(OpType::allreduce, std::move(name), std::move(tensor));
  set_allreduce_options(request, options);
  return request;
}

Request EngineImpl::tensor_request(OpType type, std::string name, TensorView tensor) {
  Request request;
  request.fp.op_type = type;
  request.fp.dtype = tensor.dtype;
  request.fp.shape = std::move(tensor.shape);
  request.fp.name = std::move(name);
  request.fp.device = tensor.device;
  request.data = tensor.data;
  return request;
}

Work EngineImpl::submit_one(Request request) { return submit(std::span(&request, 1)); }

std::string EngineImpl::member_name(const std::string& name, std::size_t index,
                                    std::size_t count) {
  return count == 1 ? name : fmt::format("{}.{}", name, index);
}

Request EngineImpl::allgather_request(std::string name, const TensorView& input,
                                      OutputAllocator allocate) const {
  check_tensor(name, input);
  if (input.shape.empty() || !allocate) {
    refuse(fmt::format("allgather '{}' needs a tensor with at least one dimension and an "
                       "output allocator",
                       name));
  }
  Request request = tensor_request(OpType::allgather, std::move(name), input);
  request.allocate = std::move(allocate);
  return request;
}

Work EngineImpl::allgather(std::string name, TensorView input, OutputAllocator allocate) {
  return submit_one(allgather_request(std::move(name), input, std::move(allocate)));
}

Work EngineImpl::grouped_allgather(std::string name, std::vector<TensorView> inputs,
                                   GroupedOutputAllocator allocate) {
  if (inputs.empty() || !allocate) {
    refuse(fmt::format("grouped allgather '{}' needs tensors and an output allocator", name));
  }
  std::vector<Request> requests;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    requests.push_back(allgather_request(
        member_name(name, i, inputs.size()), inputs[i],
        [allocate, i](const std::vector<std::int64_t>& shape) { return allocate(i, shape); }));
  }
  return submit(std::move(requests));
}

Work EngineImpl::broadcast(std::string name, TensorView tensor, int root) {
  check_tensor(name, tensor);
  if (root < 0 || root >= size_) {
    refuse(fmt::format("broadcast '{}': root {} is not a rank of this world of {}", name, root,
                       size_));
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
    refuse(fmt::format("alltoall '{}': dimension 0 must divide by the world size {} and the "
                       "output must have the input's dtype, size and device",
                       name, size_));
  }
  Request request = tensor_request(OpType::alltoall, std::move(name), input);
  request.output = output.data;
  return submit_one(std::move(request));
}

Work EngineImpl::alltoall(std::string name, TensorView input, std::vector<std::int64_t> splits,
                          OutputAllocator allocate) {
  check_tensor(name, input);
  std::int64_t rows = 0;
  bool negative = false;
  for (const auto count : splits) {
    negative = negative || count < 0;
    rows += count;
  }
  if (input.shape.empty() || splits.size() != static_cast<std::size_t>(size_) || negative ||
      rows != input.shape.front() || !allocate) {
    refuse(fmt::format("alltoall '{}': give {} splits (one per rank, none negative) that add "
                       "up to the input's dimension 0 ({}), and an output allocator",
                       name, size_, input.shape.empty() ? 0 : input.shape.front()));
  }
  Request request = tensor_request(OpType::alltoallv, std::move(name), input);
  request.fp.splits = std::move(splits);
  request.allocate = std::move(allocate);
  return submit_one(std::move(request));
}

Work EngineImpl::reducescatter(std::string name, TensorView input, OutputAllocator allocate,
                               ReduceOp op) {
  check_tensor(name, input);
  if (input.shape.empty() || !allocate) {
    refuse(fmt::format("reducescatter '{}' needs a tensor with at least one dimension and an "
                       "output allocator",
                       name));
  }
  Request request = tensor_request(OpType::reducescatterv, std::move(name), input);
  request.fp.op = op;
  request.allocate = std::move(allocate);
  return submit_one(std::move(request));
}

Work EngineImpl::grouped_reducescatter(std::string name, std::vector<TensorView> inputs,
                                       std::vector<TensorView> outputs, ReduceOp op) {
  if (inputs.empty() || inputs.size() != outputs.size()) {
    refuse(fmt::format("grouped reducescatter '{}' needs as many outputs as inputs, at least "
                       "one ({} and {} given)",
                       name, inputs.size(), outputs.size()));
  }
  std::vector<Request> requests;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    requests.push_back(
        reducescatter_request(member_name(name, i, inputs.size()), inputs[i], outputs[i], op));
  }
  return submit(std::move(requests));
}

Work EngineImpl::reducescatter(std::string name, TensorView input, TensorView output,
                               ReduceOp op) {
  return submit_one(reducescatter_request(std::move(name), input, output, op));
}

Request EngineImpl::reducescatter_request(std::string name, const TensorView& input,
                                          const TensorView& output, ReduceOp op) const {
  check_tensor(name, input);
  check_tensor(name, output);
  if (output.dtype != input.dtype || output.device != input.device ||
      output.numel() * static_cast<std::size_t>(size_) != input.numel()) {
    refuse(fmt::format("reducescatter '{}': the input must hold {} times the output's "
                       "elements, of the same dtype and device",
                       name, size_));
  }
  if (!is_defined(input.dtype, op)) refuse(undefined_reduction(name, input.dtype, op));
  Request request = tensor_request(OpType::reducescatter, std::move(name), input);
  request.fp.op = op;
  request.output = output.data;
  return request;
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
    refuse("join() called twice");
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
  bool ran_last_cycle = false;
  try {
    while (true) {
      const bool stopping = queue_.stopping();
      if (stopping && stop_requested_ == Clock::time_point{}) stop_requested_ = Clock::now();
      const bool active = world_busy_ || !outstanding_.empty() || join_request_.has_value();
      const auto wait = active ? config_.cycle_time : idle_interval_;
      auto taken = queue_.wait_and_take(config_.fusion_threshold, config_.cycle_time / 5,
                                        config_.cycle_time, Clock::now() + wait,
                                        ran_last_cycle ? kSpinAfterWork
                                                       : std::chrono::microseconds{0});
      const bool had_work = !taken.empty();
      const bool join = take(std::move(taken));
      const auto started = Clock::now();
      Cycle cycle = negotiator_.cycle(outstanding_, join, join_request_.has_value(),
                                      queue_.stopping(), stop_requested_);
      const auto& response = cycle.response;
      if (timeline_.enabled() && (cycle.announced > 0 || !response.ready.empty())) {
        if (timeline_.marking_cycles()) {
          timeline_.instant(Timeline::kNegotiation, "CYCLE_START", started);
        }
        timeline_.event(Timeline::kNegotiation, "NEGOTIATE", started, Clock::now(),
                         fmt::format("\"announced\":{},\"released\":{},\"by_index\":{}",
                                     cycle.announced, response.ready.size(),
                                     response.indexed_released.has_value()));
      }
      count(cycle);
      apply(response);
      if (response.status != CycleResponse::Status::ok) break;
      if (had_work || active || response.world_busy || !response.ready.empty()) {
        idle_interval_ = config_.cycle_time;
      } else {
        idle_interval_ = std::min(kMaxIdleInterval, idle_interval_ * 2);
      }
      ran_last_cycle = !response.ready.empty();
      negotiator_.recycle(std::move(cycle.response.ready));
    }
  } catch (const Error& error) {
    fail_everything(error);
  } catch (const std::exception& e) {
    fail_everything(
        core::rank_error(ErrorKind::system, names_(rank_), "{}: {}", names_.engine(), e.what()));
  }
  queue_.stop();
  // Requests that raced with the end get the same answer as everything else pending.
  auto late = queue_.wait_and_take(0, {}, {}, Clock::now());
  Error reason = [&] {
    std::lock_guard lock(state_mutex_);
    return failure_ ? *failure_
                    : core::rank_error(ErrorKind::invalid_argument, names_(rank_),
                                       "engine: the engine has shut down");
  }();
  for (auto& request : late.queued()) request.work->complete(&reason);
  if (join_request_) join_request_->work->complete(&reason);
  // The rank's timeline stays open for the other engines that share it (a set's engine runs
  // on after the world's stopped, or the other way round); what this one wrote reaches the
  // file now, in case the process ends without destructors.
  timeline_.timeline().flush();
}

bool EngineImpl::take(TakenRequests taken) {
  if (taken.empty()) return false;
  bool join = false;
  const auto now = Clock::now();
  for (auto& request : taken.queued()) {
    if (request.join) {
      join = true;
      join_request_ = std::move(request);
      continue;
    }
    if (timeline_.enabled()) {
      timeline_.event(Timeline::kQueue, "QUEUE " + request.fp.name, request.enqueued, now,
                       fmt::format("\"seq\":{}", request.seq));
    }
    negotiator_.hold(request.seq);
  }
  // A step's requests usually arrive in one batch at an empty table: taken whole. Otherwise
  // one by one, each swapped into its slot (a join() marker is skipped: moved out above).
  if (join || !outstanding_.adopt(taken.requests, taken.count)) {
    for (auto& request : taken.queued()) {
      if (!request.join) outstanding_.add(request);  // now holds a completed one's memory
    }
  }
  // Back to the callers' side, whose next requests fill that memory again: neither the
  // allocation nor the free of a name or shape happens on this thread.
  queue_.recycle(std::move(taken.requests));
  return join;
}

void EngineImpl::count(const Cycle& cycle) {
  std::lock_guard lock(state_mutex_);
  if (!cycle.response.ready.empty()) {
    ++stats_.cycles;
    if (cycle.response.indexed_released) ++stats_.fast_path_cycles;
  }
  stats_.cache_hits += cycle.cache_hits;
  stats_.cache_misses += cycle.cache_misses;
  stats_.cache_evictions += cycle.cache_evictions;
}

void EngineImpl::apply(const CycleResponse& response) {
  if (response.status == CycleResponse::Status::abort) {
    auto error = core::rank_error(ErrorKind::timeout, names_(rank_), "{}", response.message);
    spdlog::error("{}", error.what());
    throw error;
  }
  world_busy_ = response.world_busy;
  // Once per cycle, not per entry: the queue's lock is the callers' too.
  if (!response.ready.empty()) {
    std::uint64_t next = 0;
    for (const auto& entry : response.ready) next = std::max(next, entry.seq + 1);
    queue_.advance_sequence(next);
  }
  for (const auto& entry : response.ready) {
    if (entry.kind != ReadyEntry::Kind::error) continue;
    const auto error =
        core::rank_error(ErrorKind::invalid_argument, names_(rank_), "{}", entry.error);
    if (outstanding_.contains(entry.seq)) spdlog::error("{}", error.what());
    outstanding_.complete(entry.seq, &error);
  }
  for (const auto& group : plan_fusion(response.ready, config_.fusion_threshold,
                                       config_.fusion_inplace_min, config_.fusion_lookahead)) {
    executor_.execute(response, group);
  }
  if (response.join_done && join_request_) {
    {
      std::lock_guard lock(join_request_->work->mutex);
      join_request_->work->output_shape = {response.last_joined};
      join_request_->work->last_joined = response.last_joined;
    }
    joined_ = false;
    auto work = join_request_->work;
    join_request_.reset();
    work->complete(nullptr);
  }
  if (response.status == CycleResponse::Status::shutdown) {
    const auto error =
        core::rank_error(ErrorKind::peer_failure, names_(rank_), "{}", response.message);
    if (!outstanding_.empty() || join_request_) spdlog::error("{}", error.what());
    {
      std::lock_guard lock(state_mutex_);
      if (!failure_) failure_ = error;
    }
    outstanding_.fail_all(error);
    negotiator_.drop_held();
  }
}

Error EngineImpl::in_this_group(const Error& error) const {
  const std::string what = error.what();
  if (names_.label.empty() || what.find(names_.engine()) != std::string::npos) return error;
  const auto prefix = fmt::format("rank {}: ", names_(rank_));
  const std::string rest = what.starts_with(prefix) ? what.substr(prefix.size()) : what;
  Error named(error.kind(), fmt::format("{}{}: {}", prefix, names_.engine(), rest), error.rank(),
              error.peer());
  named.in_collective(error.sequence(), error.backend());
  return named;
}

void EngineImpl::fail_everything(const Error& raw) {
  const Error error = in_this_group(raw);
  {
    std::lock_guard lock(state_mutex_);
    if (!failure_) failure_ = error;
  }
  if (!outstanding_.empty() || join_request_) {
    spdlog::error("rank {}: {} stopped: {}", names_(rank_), names_.engine(), error.what());
  }
  outstanding_.fail_all(error);
  negotiator_.drop_held();
}

}  // namespace ringfuse::engine
