// ringfuse._c10d: the torch.distributed process group "ringfuse" (torch 1.13's
// c10d::ProcessGroup), over a Ringfuse Context that bootstraps from the c10d Store torch hands
// over. Python's ringfuse.distributed registers it with Backend.register_backend.
//
// Every collective runs as the Context's blocking collective, in call order, on one lane (as
// Gloo's do), started by the group's worker thread, so that DDP overlaps its large buckets with
// backward and an async_op call returns at once. A small one in host memory is left to its
// caller for a moment: a Work.wait() that finds it (and those queued before it) not yet started
// on an idle lane runs them in the waiting thread (no thread hand-off: the latency of a small
// dist.all_reduce, which waits at once); otherwise the worker starts it after kStealGrace. Each is preceded by an agreement check
// (agree_and_allreduce: one exchange of the call's hash; in a group of two, an all-reduce of at
// most 4 KiB travels in the same exchange), so ranks that call different collectives
// (shape, dtype, operator, root or the collective itself) all fail with one message naming what
// each rank sent, instead of hanging or mixing data; the connections stay in step, so the group
// stays usable. The Context bounds every collective by the group's timeout, so a lost peer
// fails the Work instead of hanging it. CUDA tensors and the all-to-alls run on the Context's
// engine (its NCCL communicator, on a build with CUDA and NCCL; the engine's split checks),
// behind the same agreement check, on the worker.
//
// A Work's future is settled (torch's callbacks run) only after its collective has left the
// lane, and a worker that settles one leaves another worker waiting for the lane: torch's own
// DDP communication hooks (PowerSGD) start a collective inside such a callback and wait for
// it there, which on a lane held by the settling thread never ran.
//
// send, recv and recvAnysource go through the Context's engine (process_group_p2p.hpp), beside
// the collectives' lane; new_group needs nothing here (ringfuse.distributed builds a group's
// Context over the group's store).
#include <torch/csrc/utils/pybind.h>

#include <ATen/ATen.h>
#include <ATen/core/ivalue_inl.h>
#include <ATen/record_function.h>
#include <c10/util/SmallVector.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <pybind11/chrono.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/environment.hpp"
#include "core/errors.hpp"
#include "core/thread_name.hpp"
#include "process_group_p2p.hpp"
#include "process_group_store.hpp"
#include "python_thread_state.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace py = pybind11;
namespace rf = ringfuse;

namespace ringfuse::python {
namespace {

constexpr const char* kBackendName = "ringfuse";

// Collectives of at most this many bytes in host memory may run in the thread that waits for
// them: a thread hand-off costs more than the collective itself here (perf/RESULTS.md, issue
// 21). Larger ones (DDP's buckets) start on the worker at once, so backward overlaps them.
constexpr std::size_t kInlineBytes = 64 * 1024;
// How long the worker leaves a small collective to a waiter before it starts it itself: a
// synchronous call waits within microseconds; an async_op caller that waits later (or never:
// a future, a poll) still sees it start without waiting, as with Gloo.
constexpr std::chrono::microseconds kStealGrace{50};
// In a run of small collectives, queuing one wakes no one (a wake-up costs the peers a core on
// a small host: 8-31 us instead of 4 per 4 KiB dist.all_reduce here): the worker looks at the
// queue this often while a small one was queued in the last kWorkerAwake, and is woken
// otherwise (and for a large collective, or when a future is asked for). Not while the group
// was used at all, as before: DDP queues a small collective or two per step, and a poll every
// millisecond through a training step took a core from the ranks' compute a thousand times a
// second: the ranks reached the CNN's bucket of perf/ddp_vs_gloo.py 0.27-0.66 ms apart (median
// of 30 steps, nine runs) against 0.20-0.35 without the poll (N = 2; perf/RESULTS.md, issue
// 21, eighteenth session).
constexpr std::chrono::microseconds kWorkerPoll{1000};
constexpr std::chrono::microseconds kWorkerAwake{2 * kWorkerPoll};

class RingfuseWork;

// Threads settling a Work's future now, in every group of this process. torch's callbacks, and
// the references to Python objects a settled future drops, take the GIL, which no thread gets
// once the interpreter is finalizing: Python ends it with pthread_exit, whose unwinding through
// C++ frames terminates the process (PowerSGD's hook, whose callbacks are Python closures, ended
// training runs with SIGABRT). ringfuse.distributed waits at exit until none is left. Process
// wide, as the interpreter is.
std::atomic<int> threads_settling{0};

/// Counts the calling thread in threads_settling while it lives.
class SettlingFutures {
 public:
  SettlingFutures() { threads_settling.fetch_add(1, std::memory_order_relaxed); }
  ~SettlingFutures() { threads_settling.fetch_sub(1, std::memory_order_release); }
  SettlingFutures(const SettlingFutures&) = delete;
  SettlingFutures& operator=(const SettlingFutures&) = delete;
};

/// Waits (without the GIL) until no thread is settling a future, for at most `seconds`.
void wait_for_settled_futures(double seconds) {
  py::gil_scoped_release no_gil;
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(seconds));
  while (threads_settling.load(std::memory_order_acquire) > 0 &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

/// Lets a Work's wait() run its own collective, and those queued before it, in the waiting
/// thread. Held by the group and by its Works; the group detaches it (and waits for a thread
/// inside it to leave) before its Context goes. One atomic word, not a mutex: every wait() of a
/// small collective passes through here (perf/RESULTS.md, issue 21, seventh session).
class LaneAccess {
 public:
  using RunUpTo = std::function<void(RingfuseWork*)>;
  LaneAccess(RunUpTo run_up_to, std::function<void()> start_soon)
      : run_up_to_(std::move(run_up_to)), start_soon_(std::move(start_soon)) {}

  /// Wakes the worker to start what is queued (a future was asked for: nobody may wait).
  void start_soon() {
    if (enter()) start_soon_();
    leave();
  }

  void run_up_to(RingfuseWork* work) {
    if (enter()) run_up_to_(work);
    leave();
  }

  /// After this, run_up_to() and start_soon() do nothing; returns once no thread is inside
  /// them (a waiter running collectives finishes them first; each is bounded by its timeout).
  void detach() {
    int seen = state_.fetch_or(kDetached, std::memory_order_acq_rel) | kDetached;
    while (seen != kDetached) {
      state_.wait(seen, std::memory_order_acquire);
      seen = state_.load(std::memory_order_acquire);
    }
  }

 private:
  static constexpr int kDetached = 1 << 30;  // above it: how many threads are inside

  bool enter() { return (state_.fetch_add(1, std::memory_order_acquire) & kDetached) == 0; }
  void leave() {
    if (state_.fetch_sub(1, std::memory_order_acq_rel) == kDetached + 1) state_.notify_all();
  }

  RunUpTo run_up_to_;
  std::function<void()> start_soon_;
  std::atomic<int> state_{0};
};

std::optional<DataType> ringfuse_dtype(at::ScalarType type) {
  switch (type) {
    case at::kHalf: return DataType::f16;
    case at::kBFloat16: return DataType::bf16;
    case at::kFloat: return DataType::f32;
    case at::kDouble: return DataType::f64;
    case at::kChar: return DataType::i8;
    case at::kByte: return DataType::u8;
    case at::kShort: return DataType::i16;
    case at::kInt: return DataType::i32;
    case at::kLong: return DataType::i64;
    case at::kBool: return DataType::boolean;
    default: return std::nullopt;
  }
}

/// What a Work's timeout message names ("ProcessGroup ringfuse: allreduce of f32[1024]"),
/// formatted only when it is needed, not on every call.
struct WorkLabel {
  std::shared_ptr<const std::string> where;  // "ProcessGroup ringfuse (group)"
  const char* call = "";
  std::optional<at::ScalarType> type;  // with the tensor's element count, when there is one
  std::int64_t numel = 0;

  std::string text() const {
    if (!type) return fmt::format("{}: {}", *where, call);
    return fmt::format("{}: {} of {}[{}]", *where, call, c10::toString(*type), numel);
  }
};

/// A Work completed on the group's lane (the calling thread or the worker): wait() and the
/// future see the same outcome.
class RingfuseWork final : public ::c10d::Work {
 public:
  /// `default_timeout` bounds a wait() without a timeout of its own (twice the group's
  /// timeout: the lane may be running collectives queued before this one). `lane`, for a small
  /// collective, lets wait() run it in the waiting thread when it has not started.
  /// A Work's output tensors: most collectives have one (no allocation for it).
  using Outputs = c10::SmallVector<at::Tensor, 1>;

  RingfuseWork(int rank, ::c10d::OpType type, Outputs&& outputs,
               std::chrono::milliseconds default_timeout, WorkLabel what,
               std::shared_ptr<LaneAccess> lane = nullptr)
      : Work(rank, type),
        outputs_(std::move(outputs)),
        default_timeout_(default_timeout),
        what_(std::move(what)),
        lane_(std::move(lane)) {}

  bool wait(std::chrono::milliseconds timeout) override {
    if (lane_ && !isCompleted()) lane_->run_up_to(this);
    // kNoTimeout still has a deadline: the process group's timeout plus the time the queue
    // ahead may take is bounded by the collectives' own timeouts; a margin covers the rest.
    const auto limit = timeout == ::kNoTimeout ? default_timeout_ : timeout;
    std::unique_lock lock(mutex_);
    if (!completed_ && !cv_.wait_for(lock, limit, [&] { return completed_; })) {
      throw core::rank_error(ErrorKind::timeout, rank_,
                             "{}: not finished after {} ms (Work.wait timeout); a peer may be "
                             "stuck or slow, or the ranks called different collectives",
                             what_.text(), limit.count());
    }
    if (exception_) std::rethrow_exception(exception_);
    return true;
  }

  std::vector<at::Tensor> result() override { return {outputs_.begin(), outputs_.end()}; }

  /// The collective's own tensors, for its body on the lane.
  const Outputs& outputs() const { return outputs_; }

  /// Whether a future was asked for before the collective started: the worker starts it
  /// without leaving it to a waiter first.
  bool start_now() const { return start_now_.load(std::memory_order_acquire); }

  // Made on first request: a plain dist.all_reduce never asks for it (DDP's hooks do).
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override {
    if (lane_ && !isCompleted()) {
      // DDP's hooks chain on it at once and nobody waits on the Work: no grace for a waiter.
      start_now_.store(true, std::memory_order_release);
      lane_->start_soon();
    }
    std::unique_lock lock(mutex_);
    if (!future_) {
      future_ = c10::make_intrusive<at::ivalue::Future>(
          c10::ListType::create(c10::TensorType::get()));
      if (completed_) {
        const auto error = exception_;
        lock.unlock();
        settle(*future_, error);
      }
    }
    return future_;
  }

  void complete(std::exception_ptr error) {
    if (auto future = finish(error)) settle(*future, error);
  }

  /// Marks the Work completed (wait() returns) and hands back its future, if one was asked
  /// for, to be settled with settle(): that runs torch's callbacks, which may start another
  /// collective and wait for it. Work::finish() with the future looked up in the same step, so
  /// a getFuture() racing with this either finds the Work completed or hands over the future.
  c10::intrusive_ptr<c10::ivalue::Future> finish(std::exception_ptr error) {
    c10::intrusive_ptr<c10::ivalue::Future> future;
    std::function<void()> profiling_end;
    {
      std::lock_guard lock(mutex_);
      completed_ = true;
      exception_ = error;
      future = future_;
      profiling_end = std::exchange(recordFunctionEndCallback_, nullptr);
    }
    if (profiling_end) profiling_end();
    cv_.notify_all();
    return future;
  }

  void settle(c10::ivalue::Future& future, const std::exception_ptr& error) {
    if (error) {
      future.setError(error);
    } else {
      future.markCompleted(c10::IValue(result()));
    }
  }

 private:
  Outputs outputs_;
  std::chrono::milliseconds default_timeout_;
  WorkLabel what_;
  std::shared_ptr<LaneAccess> lane_;  // a small collective's: wait() may run it
  std::atomic<bool> start_now_{false};
  c10::intrusive_ptr<c10::ivalue::Future> future_;  // guarded by mutex_; null until asked for
};

struct WorldPlacement {
  int local_rank = 0;
  int local_size = 1;
  std::string host_addr;  // where peers reach this rank; empty: 127.0.0.1
  std::string job_secret;
  std::string job_id = "torch";  // names shared-memory segments: unique per group on a host
  // A sub-group (new_group): the global rank of each group rank, and the group's name. Errors
  // name these, as users know them; empty for the world group.
  std::vector<int> global_ranks;
  std::string label;
};

class ProcessGroupRingfuse final : public ::c10d::ProcessGroup {
 public:
  ProcessGroupRingfuse(const c10::intrusive_ptr<::c10d::Store>& store, int rank, int size,
                       std::chrono::milliseconds timeout, const WorldPlacement& placement)
      : ProcessGroup(rank, size),
        timeout_(timeout),
        global_ranks_(placement.global_ranks),
        label_(placement.label),
        where_(std::make_shared<const std::string>(
            fmt::format("ProcessGroup ringfuse{}", group_label_suffix()))) {
    WorldSpec world;
    world.rank = rank;
    world.size = size;
    world.local_rank = placement.local_rank;
    world.local_size = placement.local_size;
    if (placement.local_size > 0 && size % placement.local_size == 0) {
      world.cross_rank = rank / placement.local_size;
      world.cross_size = size / placement.local_size;
    } else {
      world.local_rank = rank;
      world.local_size = size;
    }
    world.job_id = placement.job_id;
    world.job_secret = placement.job_secret;
    world.source = "torch.distributed store";
    world.global_ranks = placement.global_ranks;
    world.label = placement.label;
    // Ranks that ringfuse-run started through its rsh agent watch it (context/launcher_watch.hpp)
    // though the group meets at torch's store: the world group does, for the process.
    if (placement.global_ranks.empty()) {
      if (const auto launcher = core::launcher_store_to_watch(core::process_environment())) {
        world.watch_launcher = true;
        std::tie(world.store_host, world.store_port) = *launcher;
      }
    }
    ringfuse::Options options = options_from_environment();
    options.op_timeout = timeout;
    options.connect_timeout = timeout;
    if (!placement.host_addr.empty()) options.host_addr = placement.host_addr;
    context_ = ringfuse::init(world, options, std::make_shared<C10dStore>(store, rank));
    // The engine carries send/recv. Started here, as the Context was: collective, and on
    // the thread that uses torch's store (see process_group_p2p.hpp).
    p2p_ = std::make_unique<PointToPoint>(*context_, context_->engine(), timeout);
    {
      std::lock_guard lock(queue_mutex_);
      workers_.emplace_back([this] { run_queue(); });
    }
  }

  ~ProcessGroupRingfuse() override {
    {
      std::lock_guard lock(queue_mutex_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    // No worker starts another once stopping_ is set: workers_ stays as it is now.
    if (workers_.empty()) return;
    // The workers drop the tensors of the collectives they ran and run torch's future
    // callbacks, and the engine's thread may still release tensors of transfers; dropping a
    // tensor that has a Python object takes the GIL: joining any of them with the GIL held
    // (destroy_process_group) would deadlock.
    const auto stop = [this] {
      for (auto& worker : workers_) worker.join();
      lane_access_->detach();  // a waiter running collectives in its thread finishes first
      context_.reset();
    };
    if (PyGILState_Check()) {
      py::gil_scoped_release release;
      stop();
    } else {
      stop();
    }
  }

  const std::string getBackendName() const override { return kBackendName; }

  c10::intrusive_ptr<::c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                             const ::c10d::BroadcastOptions& opts) override {
    auto tensor = single("broadcast", tensors);
    check_root("broadcast", opts.rootRank);
    const int root = static_cast<int>(opts.rootRank);
    auto signature = fmt::format("{} broadcast root {}", shape_of(moved(tensor)), root);
    return on_lane(::c10d::OpType::BROADCAST, describe("broadcast", tensor), {tensor},
                   lane_hint(tensor), [=, this](RingfuseWork&) {
                     agree("broadcast", signature);
                     auto buffer = tensor.contiguous();
                     if (buffer.is_cuda()) {
                       await("broadcast", engine().broadcast("broadcast", moved(buffer), root),
                             {buffer});
                     } else {
                       const auto view = moved(buffer);
                       context_->broadcast(buffer.data_ptr(), count_of(view), view.dtype, root);
                     }
                     copy_back(buffer, tensor);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                             const ::c10d::AllreduceOptions& opts) override {
    if (tensors.size() == 1 && tensors[0].defined() && tensors[0].is_sparse()) {
      return sparse_allreduce(tensors[0], opts);
    }
    auto tensor = single("allreduce", tensors);
    const auto op = reduce_op("allreduce", opts.reduceOp);
    const auto type = reducible("allreduce", tensor);
    // An operator the type lacks (AVG of bools) is refused by the Context, as on any group.
    if (getSize() == 1 && tensor.device().is_cpu() && is_defined(type, op)) {
      if (auto done = finished_alone(::c10d::OpType::ALLREDUCE, describe("allreduce", tensor),
                                     tensor)) {
        return done;
      }
    }
    return on_lane(::c10d::OpType::ALLREDUCE, describe("allreduce", tensor), {tensor},
                   lane_hint(tensor), [this, type, op](RingfuseWork& work) {
                     const at::Tensor& tensor = work.outputs()[0];
                     auto buffer = tensor.contiguous();
                     const FlatSignature signature(type, tensor, to_string(op));
                     // A small one travels inside the check (one exchange instead of two).
                     const SmallAllreduce small{buffer.data_ptr(),
                                                static_cast<std::size_t>(buffer.numel()), type,
                                                op};
                     if (!agree_and_allreduce(*context_, {"allreduce", signature.view()},
                                              *where_, buffer.is_cuda() ? nullptr : &small)) {
                       reduce_all("allreduce", buffer, type, op);
                     }
                     copy_back(buffer, tensor);
                   });
  }

  // A sparse COO tensor (as from nn.Embedding(sparse=True)): every rank's indices and values
  // are gathered to all (their counts differ) and summed into one coalesced tensor, as Gloo does.
  c10::intrusive_ptr<::c10d::Work> sparse_allreduce(const at::Tensor& tensor,
                                                    const ::c10d::AllreduceOptions& opts) {
    if (!tensor.device().is_cpu()) check_cpu("allreduce", tensor);  // says which device
    if (opts.reduceOp.op_ != ::c10d::ReduceOp::SUM) {
      refuse("allreduce", "a sparse tensor can only be reduced with SUM");
    }
    return on_lane(::c10d::OpType::ALLREDUCE, describe("sparse allreduce", tensor), {tensor},
                   LaneHint{}, [=, this](RingfuseWork&) {
                     agree("allreduce", "sparse sum");  // layouts: check_same_sparse_layout
                     auto input = tensor.coalesce();
                     check_same_sparse_layout(input);
                     // [nnz, sparse_dim] rows, so the ranks' blocks concatenate along nnz.
                     auto indices = input._indices().t().contiguous();
                     auto values = input._values().contiguous();
                     std::vector<int64_t> nnz(getSize());
                     const int64_t own_nnz = input._nnz();
                     context_->allgather(&own_nnz, nnz.data(), 1, DataType::i64);
                     const auto total = std::accumulate(nnz.begin(), nnz.end(), int64_t{0});
                     auto all_indices = at::empty({total, input.sparse_dim()}, indices.options());
                     auto value_sizes = values.sizes().vec();
                     value_sizes[0] = total;
                     auto all_values = at::empty(value_sizes, values.options());
                     std::vector<std::size_t> index_counts, value_bytes;
                     for (const auto n : nnz) {
                       index_counts.push_back(static_cast<std::size_t>(n * input.sparse_dim()));
                       value_bytes.push_back(static_cast<std::size_t>(
                           n * dense_row_elements(input) * values.element_size()));
                     }
                     context_->allgatherv(indices.data_ptr(), all_indices.data_ptr(),
                                          index_counts, DataType::i64);
                     context_->allgatherv(values.data_ptr(), all_values.data_ptr(), value_bytes,
                                          DataType::u8);
                     auto sum = at::sparse_coo_tensor(all_indices.t(), all_values, input.sizes())
                                    .coalesce();
                     tensor.copy_(sum);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> allreduce_coalesced(
      std::vector<at::Tensor>& tensors, const ::c10d::AllreduceCoalescedOptions& opts) override {
    const auto op = reduce_op("allreduce_coalesced", opts.reduceOp);
    std::vector<DataType> types;
    std::vector<std::string> shapes;
    bool any_cuda = false;
    for (const auto& tensor : tensors) {
      check_dense("allreduce_coalesced", tensor);
      types.push_back(reducible("allreduce_coalesced", tensor));
      shapes.push_back(shape_of(flat(tensor, types.back())));
      any_cuda = any_cuda || tensor.is_cuda();
    }
    auto signature = fmt::format("{} {}", fmt::join(shapes, " "), to_string(op));
    return on_lane(
        ::c10d::OpType::ALLREDUCE_COALESCED, label("allreduce_coalesced"), outputs_of(tensors),
        lane_hint(tensors),
        [=, this](RingfuseWork&) {
          agree("allreduce_coalesced", signature);
          std::vector<at::Tensor> buffers;
          for (const auto& tensor : tensors) buffers.push_back(tensor.contiguous());
          if (any_cuda) {  // the engine's NCCL communicator fuses them
            std::vector<TensorView> views;
            for (std::size_t i = 0; i < tensors.size(); ++i) {
              views.push_back(flat(buffers[i], types[i]));
            }
            await("allreduce_coalesced",
                  engine().grouped_allreduce("allreduce_coalesced", std::move(views), {.op = op}),
                  buffers);
          } else {
            for (std::size_t i = 0; i < tensors.size(); ++i) {
              reduce_all("allreduce_coalesced", buffers[i], types[i], op);
            }
          }
          for (std::size_t i = 0; i < tensors.size(); ++i) {
            copy_back(buffers[i], tensors[i]);
          }
        });
  }

  // An all-reduce into a scratch copy, kept by the root only (no rooted reduce in the
  // Context). The root is in the name, so ranks that name different roots get the mismatch
  // error.
  c10::intrusive_ptr<::c10d::Work> reduce(std::vector<at::Tensor>& tensors,
                                          const ::c10d::ReduceOptions& opts) override {
    auto tensor = single("reduce", tensors);
    check_root("reduce", opts.rootRank);
    const auto op = reduce_op("reduce", opts.reduceOp);
    const auto type = reducible("reduce", tensor);
    const auto root = static_cast<int>(opts.rootRank);
    auto signature = flat_signature(type, tensor, to_string(op));
    return on_lane(::c10d::OpType::REDUCE, describe("reduce", tensor), {tensor},
                   lane_hint(tensor), [=, this](RingfuseWork&) {
                     const auto name = fmt::format("reduce to {}", root);
                     agree(name, signature);
                     auto buffer = tensor.contiguous().clone();
                     reduce_all(name, buffer, type, op);
                     if (getRank() == root) tensor.copy_(buffer);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                             std::vector<at::Tensor>& inputs,
                                             const ::c10d::AllgatherOptions&) override {
    auto input = single("allgather", inputs);
    if (outputs.size() != 1) refuse("allgather", "expects one output list (one device)");
    auto outs = outputs[0];
    check_list("allgather", "output", outs, input);
    return on_lane(::c10d::OpType::ALLGATHER, describe("allgather", input), outputs_of(outs),
                   lane_hint(outs), [=, this](RingfuseWork&) {
                     agree("allgather", gathered_signature({input}));
                     gather_to_all("allgather", input, outs);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                   const ::c10d::AllgatherOptions&) override {
    check_dense("_allgather_base", input);
    check_dense("_allgather_base", output);
    if (output.numel() != input.numel() * getSize() || output.dtype() != input.dtype()) {
      refuse("_allgather_base", fmt::format("output must hold world size ({}) x input's {} "
                                            "elements of the input's dtype; it holds {}",
                                            getSize(), input.numel(), output.numel()));
    }
    return on_lane(::c10d::OpType::_ALLGATHER_BASE, describe("_allgather_base", input), {output},
                   lane_hint({output}), [=, this](RingfuseWork&) {
                     agree("allgather", gathered_signature({input}));
                     auto send = input.contiguous();
                     auto recv = output.contiguous();
                     allgather_into("allgather", send, recv);
                     copy_back(recv, output);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> allgather_coalesced(
      std::vector<std::vector<at::Tensor>>& output_lists, std::vector<at::Tensor>& inputs,
      const ::c10d::AllgatherOptions&) override {
    if (output_lists.size() != static_cast<std::size_t>(getSize())) {
      refuse("allgather_coalesced", "expects one output list per rank");
    }
    for (const auto& list : output_lists) {
      if (list.size() != inputs.size()) {
        refuse("allgather_coalesced", "each output list must hold one tensor per input");
      }
    }
    for (const auto& input : inputs) check_dense("allgather_coalesced", input);
    std::vector<at::Tensor> flat_outputs;
    for (const auto& list : output_lists) {
      flat_outputs.insert(flat_outputs.end(), list.begin(), list.end());
    }
    return on_lane(::c10d::OpType::ALLGATHER_COALESCED, label("allgather_coalesced"),
                   outputs_of(flat_outputs),
                   lane_hint(flat_outputs), [=, this](RingfuseWork&) {
                     agree("allgather_coalesced", gathered_signature(inputs));
                     for (std::size_t i = 0; i < inputs.size(); ++i) {
                       std::vector<at::Tensor> outs;
                       for (const auto& list : output_lists) outs.push_back(list[i]);
                       gather_to_all("allgather_coalesced", inputs[i], outs);
                     }
                   });
  }

  // Gather moves as much as an allgather here (no rooted gather in the Context).
  c10::intrusive_ptr<::c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs,
                                          std::vector<at::Tensor>& inputs,
                                          const ::c10d::GatherOptions& opts) override {
    auto input = single("gather", inputs);
    check_root("gather", opts.rootRank);
    const bool root = getRank() == opts.rootRank;
    std::vector<at::Tensor> outs;
    if (root) {
      if (outputs.size() != 1) refuse("gather", "the root expects one output list");
      outs = outputs[0];
      check_list("gather", "output", outs, input);
    } else if (!outputs.empty()) {
      refuse("gather", "only the root passes an output list");
    }
    const auto name = fmt::format("gather to {}", opts.rootRank);
    return on_lane(::c10d::OpType::GATHER, describe("gather", input), outputs_of(outs),
                   lane_hint({input}, getSize()), [=, this](RingfuseWork&) {
                     agree(name, gathered_signature({input}));
                     if (root) {
                       gather_to_all(name, input, outs);
                     } else {
                       std::vector<at::Tensor> scratch;
                       for (int r = 0; r < getSize(); ++r) scratch.push_back(at::empty_like(input));
                       gather_to_all(name, input, scratch);
                     }
                   });
  }

  // Scatter is a broadcast of the root's inputs, of which each rank keeps its own block: more
  // bytes than a rooted scatter, but matched (and diagnosed) like every other collective.
  c10::intrusive_ptr<::c10d::Work> scatter(std::vector<at::Tensor>& outputs,
                                           std::vector<std::vector<at::Tensor>>& inputs,
                                           const ::c10d::ScatterOptions& opts) override {
    auto output = single("scatter", outputs);
    check_root("scatter", opts.rootRank);
    const int root = static_cast<int>(opts.rootRank);
    std::vector<at::Tensor> ins;
    if (getRank() == root) {
      if (inputs.size() != 1) refuse("scatter", "the root expects one input list");
      ins = inputs[0];
      check_list("scatter", "input", ins, output);
    } else if (!inputs.empty()) {
      refuse("scatter", "only the root passes an input list");
    }
    return on_lane(
        ::c10d::OpType::SCATTER, describe("scatter", output), {output},
        lane_hint({output}, getSize()), [=, this](RingfuseWork&) {
          at::Tensor all = getRank() == root
                               ? at::cat(flattened(ins))
                               : at::empty({getSize() * output.numel()}, output.options());
          agree("scatter", fmt::format("{} broadcast root {}", shape_of(moved(all)), root));
          if (all.is_cuda()) {
            await("scatter", engine().broadcast("scatter", moved(all), root), {all});
          } else {
            const auto view = moved(all);
            context_->broadcast(all.data_ptr(), count_of(view), view.dtype, root);
          }
          output.copy_(all.narrow(0, getRank() * output.numel(), output.numel())
                           .view(output.sizes()));
        });
  }

  c10::intrusive_ptr<::c10d::Work> reduce_scatter(
      std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
      const ::c10d::ReduceScatterOptions& opts) override {
    auto output = single("reduce_scatter", outputs);
    if (inputs.size() != 1) refuse("reduce_scatter", "expects one input list (one device)");
    auto ins = inputs[0];
    check_list("reduce_scatter", "input", ins, output);
    const auto op = reduce_op("reduce_scatter", opts.reduceOp);
    const auto type = reducible("reduce_scatter", output);
    return on_lane(::c10d::OpType::REDUCE_SCATTER, describe("reduce_scatter", output), {output},
                   lane_hint(ins), [=, this](RingfuseWork&) {
                     auto send = at::cat(flattened(ins));
                     auto recv = output.contiguous();
                     scatter_reduced(send, recv, type, op);
                     copy_back(recv, output);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> _reduce_scatter_base(
      at::Tensor& output, at::Tensor& input, const ::c10d::ReduceScatterOptions& opts) override {
    check_dense("_reduce_scatter_base", input);
    check_dense("_reduce_scatter_base", output);
    if (input.numel() != output.numel() * getSize() || output.dtype() != input.dtype()) {
      refuse("_reduce_scatter_base",
             fmt::format("input must hold world size ({}) x output's {} elements of the "
                         "output's dtype; it holds {}",
                         getSize(), output.numel(), input.numel()));
    }
    const auto op = reduce_op("_reduce_scatter_base", opts.reduceOp);
    const auto type = reducible("_reduce_scatter_base", output);
    return on_lane(::c10d::OpType::_REDUCE_SCATTER_BASE, describe("_reduce_scatter_base", input),
                   {output}, lane_hint({input}), [=, this](RingfuseWork&) {
                     auto send = input.contiguous();
                     auto recv = output.contiguous();
                     scatter_reduced(send, recv, type, op);
                     copy_back(recv, output);
                   });
  }

  // The all-to-alls stay on the engine, whose fingerprints carry each rank's splits, so that
  // splits that do not fit fail with the engine's message; the agreement check first keeps
  // them in step with the Context's collectives.
  c10::intrusive_ptr<::c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input,
                                                 std::vector<int64_t>& output_splits,
                                                 std::vector<int64_t>& input_splits,
                                                 const ::c10d::AllToAllOptions&) override {
    check_dense("alltoall_base", input);
    check_dense("alltoall_base", output);
    if (input.dtype() != output.dtype()) refuse("alltoall_base", "input and output dtypes differ");
    const auto send_rows = split_rows("alltoall_base", "input", input, input_splits);
    const auto recv_rows = split_rows("alltoall_base", "output", output, output_splits);
    return on_lane(::c10d::OpType::ALLTOALL_BASE, describe("alltoall_base", input), {output},
                   LaneHint{}, [=, this](RingfuseWork&) {
                     auto send = input.contiguous();
                     auto recv = output.contiguous();
                     const auto rows = moved_rows(send);
                     agree("alltoall", fmt::format("{}[*,{}] alltoall", to_string(rows.dtype),
                                                   rows.shape[1]));
                     alltoall_rows(rows, send_rows, recv, recv_rows, {send});
                     copy_back(recv, output);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> alltoall(std::vector<at::Tensor>& outputs,
                                            std::vector<at::Tensor>& inputs,
                                            const ::c10d::AllToAllOptions&) override {
    if (outputs.size() != static_cast<std::size_t>(getSize()) || inputs.size() != outputs.size()) {
      refuse("alltoall", fmt::format("expects {} input and {} output tensors, one per rank",
                                     getSize(), getSize()));
    }
    std::vector<std::int64_t> send_bytes, recv_bytes;
    for (int r = 0; r < getSize(); ++r) {
      check_dense("alltoall", inputs[r]);
      check_dense("alltoall", outputs[r]);
      send_bytes.push_back(static_cast<std::int64_t>(inputs[r].nbytes()));
      recv_bytes.push_back(static_cast<std::int64_t>(outputs[r].nbytes()));
    }
    return on_lane(::c10d::OpType::ALLTOALL, label("alltoall"), outputs_of(outputs), LaneHint{},
                   [=, this](RingfuseWork&) {
      agree("alltoall", "u8[*,1] alltoall");
      // Bytes, one row each: the tensors of one list may differ in size and dtype.
      auto send = at::cat(flattened_bytes(inputs));
      auto recv = at::empty({std::accumulate(recv_bytes.begin(), recv_bytes.end(), int64_t{0})},
                            send.options());
      alltoall_rows(view_of(send, DataType::u8, {send.numel(), 1}), send_bytes, recv, recv_bytes,
                    {send});
      std::int64_t offset = 0;
      for (int r = 0; r < getSize(); ++r) {
        auto bytes = recv.narrow(0, offset, recv_bytes[r]);
        outputs[r].copy_(bytes.view(outputs[r].scalar_type()).view(outputs[r].sizes()));
        offset += recv_bytes[r];
      }
    });
  }

  // The agreement check is an all-reduce, so it is the barrier (device_ids name GPUs for
  // NCCL's barrier; none is needed here).
  c10::intrusive_ptr<::c10d::Work> barrier(const ::c10d::BarrierOptions&) override {
    return on_lane(::c10d::OpType::BARRIER, label("barrier"), {}, LaneHint{.bytes = 0, .host = true},
                   [this](RingfuseWork&) { agree("barrier", "barrier"); });
  }

  c10::intrusive_ptr<::c10d::Work> send(std::vector<at::Tensor>& tensors, int peer,
                                        int tag) override {
    return p2p_->send(host_tensor("send", tensors), peer, tag);
  }
  c10::intrusive_ptr<::c10d::Work> recv(std::vector<at::Tensor>& tensors, int peer,
                                        int tag) override {
    return p2p_->recv(host_tensor("recv", tensors), peer, tag);
  }
  c10::intrusive_ptr<::c10d::Work> recvAnysource(std::vector<at::Tensor>& tensors,
                                                 int tag) override {
    return p2p_->recv(host_tensor("recvAnysource", tensors), kAnySource, tag);
  }

 private:
  [[noreturn]] void refuse(std::string_view call, std::string_view why) const {
    throw core::rank_error(ErrorKind::invalid_argument, global_rank(),
                           "ProcessGroup ringfuse{}: {}: {}", group_label_suffix(), call, why);
  }

  /// This rank as users know it: its rank in the world, also in a sub-group.
  int global_rank() const { return global_rank(getRank()); }
  int global_rank(int group_rank) const {
    if (group_rank < 0 || static_cast<std::size_t>(group_rank) >= global_ranks_.size()) {
      return group_rank;
    }
    return global_ranks_[static_cast<std::size_t>(group_rank)];
  }
  /// " (new_group([1, 2]))" in a sub-group's messages; empty for the world group.
  std::string group_label_suffix() const {
    return label_.empty() ? std::string() : fmt::format(" ({})", label_);
  }

  void check_cpu(std::string_view call, const at::Tensor& tensor) const {
    if (!tensor.defined()) refuse(call, "a tensor is undefined");
    if (!tensor.device().is_cpu()) {
      refuse(call, fmt::format("tensor on {}: {} takes CPU tensors only on this backend; move "
                               "it with .cpu()",
                               tensor.device().str(), call));
    }
    if (tensor.is_sparse()) refuse(call, "sparse tensors are not supported; pass .to_dense()");
  }

  /// A collective's tensor: dense, in host memory or on a CUDA device (which the engine runs
  /// on its NCCL communicator, or staged through host memory; a build or machine without
  /// CUDA fails the Work with the engine's reason).
  void check_dense(std::string_view call, const at::Tensor& tensor) const {
    if (!tensor.defined()) refuse(call, "a tensor is undefined");
    if (tensor.is_sparse()) refuse(call, "sparse tensors are not supported; pass .to_dense()");
    if (!tensor.device().is_cpu() && !tensor.device().is_cuda()) {
      refuse(call, fmt::format("tensor on {}: the ringfuse process group takes CPU and CUDA "
                               "tensors; move it with .cpu()",
                               tensor.device().str()));
    }
  }

  at::Tensor single(std::string_view call, const std::vector<at::Tensor>& tensors) const {
    if (tensors.size() != 1) {
      refuse(call, fmt::format("expects exactly one tensor (one device per process), got {}",
                               tensors.size()));
    }
    check_dense(call, tensors[0]);
    return tensors[0];
  }

  /// The one tensor of a point-to-point call: the engine's send/recv take host memory only.
  at::Tensor host_tensor(std::string_view call, const std::vector<at::Tensor>& tensors) const {
    auto tensor = single(call, tensors);
    check_cpu(call, tensor);
    return tensor;
  }

  void check_root(std::string_view call, int64_t root) const {
    if (root < 0 || root >= getSize()) {
      refuse(call, fmt::format("root rank {} is outside the group of {}", root, getSize()));
    }
  }

  void check_list(std::string_view call, const std::string& role,
                  const std::vector<at::Tensor>& list, const at::Tensor& like) const {
    if (list.size() != static_cast<std::size_t>(getSize())) {
      refuse(call, fmt::format("the {} list holds {} tensors; it needs one per rank ({})", role,
                               list.size(), getSize()));
    }
    for (const auto& tensor : list) {
      check_dense(call, tensor);
      if (tensor.numel() != like.numel() || tensor.scalar_type() != like.scalar_type()) {
        refuse(call, fmt::format("every {} tensor must match {} with {} elements; one has {} {}",
                                 role, c10::toString(like.scalar_type()), like.numel(),
                                 c10::toString(tensor.scalar_type()),
                                 tensor.numel()));
      }
    }
  }

  DataType reducible(std::string_view call, const at::Tensor& tensor) const {
    const auto type = ringfuse_dtype(tensor.scalar_type());
    if (!type) {
      refuse(call, fmt::format("dtype {} cannot be reduced by Ringfuse",
                             c10::toString(tensor.scalar_type())));
    }
    return *type;
  }

  ReduceOp reduce_op(std::string_view call, const ::c10d::ReduceOp& op) const {
    switch (op.op_) {
      case ::c10d::ReduceOp::SUM: return ReduceOp::sum;
      case ::c10d::ReduceOp::AVG: return ReduceOp::avg;
      case ::c10d::ReduceOp::PRODUCT: return ReduceOp::prod;
      case ::c10d::ReduceOp::MIN: return ReduceOp::min;
      case ::c10d::ReduceOp::MAX: return ReduceOp::max;
      case ::c10d::ReduceOp::BAND: return ReduceOp::band;
      case ::c10d::ReduceOp::BOR: return ReduceOp::bor;
      case ::c10d::ReduceOp::BXOR: return ReduceOp::bxor;
      default:
        refuse(call, "reduce op not supported (Ringfuse reduces with SUM, AVG, PRODUCT, MIN, "
                     "MAX, BAND, BOR and BXOR; not PREMUL_SUM)");
    }
  }

  /// The rows (dimension 0) of `tensor` for each rank: `splits`, or equal shares.
  std::vector<std::int64_t> split_rows(std::string_view call, const std::string& role,
                                       const at::Tensor& tensor,
                                       const std::vector<int64_t>& splits) const {
    const int64_t rows = tensor.dim() == 0 ? 1 : tensor.size(0);
    if (splits.empty()) {
      if (rows % getSize() != 0) {
        refuse(call, fmt::format("the {}'s {} rows do not split evenly over {} ranks; pass "
                                 "split sizes",
                                 role, rows, getSize()));
      }
      return std::vector<std::int64_t>(getSize(), rows / getSize());
    }
    if (splits.size() != static_cast<std::size_t>(getSize()) ||
        std::accumulate(splits.begin(), splits.end(), int64_t{0}) != rows) {
      refuse(call, fmt::format("the {} split sizes must be {} numbers summing to its {} rows",
                               role, getSize(), rows));
    }
    return splits;
  }

  /// Each tensor as one dimension of its own dtype, ready for at::cat.
  static std::vector<at::Tensor> flattened(const std::vector<at::Tensor>& tensors) {
    std::vector<at::Tensor> flat;
    for (const auto& tensor : tensors) flat.push_back(tensor.contiguous().view(-1));
    return flat;
  }

  /// The same, as bytes: for lists whose tensors may differ in dtype.
  static std::vector<at::Tensor> flattened_bytes(const std::vector<at::Tensor>& tensors) {
    std::vector<at::Tensor> flat;
    for (const auto& tensor : tensors) flat.push_back(tensor.contiguous().view(-1).view(at::kByte));
    return flat;
  }

  // What the ranks must agree on before each collective (agree_on_collective), in the words
  // of the engine's fingerprints, so that mismatch messages read alike whichever ran it:
  // dtype, shape, operator, root, device. Shapes go flat (numel): torch lets ranks pass
  // different shapes of the same size.

  /// Collective, on the lane: throws the mismatch error on every rank alike unless every
  /// rank's next collective is `name` with `signature`. Every check of this group goes
  /// through agree_and_allreduce (here without a payload), so the ranks' checks exchange alike.
  void agree(std::string_view name, std::string_view signature) {
    agree_and_allreduce(*context_, {name, signature}, *where_, nullptr);
  }

  /// `f32[1024]`, with ` on cuda` for device memory (the engine's fingerprint's words).
  static std::string shape_of(const TensorView& view) {
    return fmt::format("{}[{}]{}", to_string(view.dtype), fmt::join(view.shape, ","),
                       view.device == Device::cuda ? " on cuda" : "");
  }

  /// shape_of() of `tensor` as `type`[numel], then `what`: `f32[1024] sum`, in a buffer of its
  /// own: every all-reduce writes it (no fmt, no shape vector, no allocation).
  class FlatSignature {
   public:
    FlatSignature(DataType type, const at::Tensor& tensor, std::string_view what) {
      append(to_string(type));
      append("[");
      size_ = static_cast<std::size_t>(
          std::to_chars(text_.data() + size_, text_.data() + text_.size(), tensor.numel()).ptr -
          text_.data());
      append("]");
      if (tensor.is_cuda()) append(" on cuda");
      append(" ");
      append(what);
    }
    std::string_view view() const { return {text_.data(), size_}; }

   private:
    void append(std::string_view part) {  // cut at capacity: the operators' names are short
      const auto n = std::min(part.size(), text_.size() - size_);
      std::copy_n(part.data(), n, text_.data() + size_);
      size_ += n;
    }
    std::array<char, 96> text_{};
    std::size_t size_ = 0;
  };

  static std::string flat_signature(DataType type, const at::Tensor& tensor,
                                    std::string_view what) {
    return std::string(FlatSignature(type, tensor, what).view());
  }

  /// An allgather of one row per rank of each of `inputs`: `f32[1,10] allgather`.
  static std::string gathered_signature(const std::vector<at::Tensor>& inputs) {
    std::vector<std::string> rows;
    for (const auto& input : inputs) {
      auto view = moved(input);
      view.shape = {1, view.shape[0]};
      rows.push_back(shape_of(view));
    }
    return fmt::format("{} allgather", fmt::join(rows, " "));
  }

  static std::size_t count_of(const TensorView& view) {
    return static_cast<std::size_t>(view.shape.empty() ? 1 : view.shape[0]);
  }

  /// All-reduces `buffer` (contiguous) in place: host memory on the Context's blocking
  /// all-reduce, device memory on the engine's NCCL communicator.
  void reduce_all(const std::string& name, const at::Tensor& buffer, DataType type, ReduceOp op) {
    if (buffer.is_cuda()) {
      await(name, engine().allreduce(name, flat(buffer, type), {.op = op}), {buffer});
      return;
    }
    context_->allreduce(buffer.data_ptr(), static_cast<std::size_t>(buffer.numel()), type, op);
  }

  /// Reduces `send` (contiguous, size() blocks) and leaves this rank's block in `recv`.
  void scatter_reduced(const at::Tensor& send, const at::Tensor& recv, DataType type,
                       ReduceOp op) {
    agree("reduce_scatter", fmt::format("{} {} reducescatter", shape_of(flat(send, type)),
                                        to_string(op)));
    if (send.is_cuda() || recv.is_cuda()) {
      await("reduce_scatter",
            engine().reducescatter("reduce_scatter", flat(send, type), flat(recv, type), op),
            {send, recv});
      return;
    }
    context_->reducescatter(send.data_ptr(), recv.data_ptr(),
                            static_cast<std::size_t>(recv.numel()), type, op);
  }

  Engine& engine() { return context_->engine(); }

  static TensorView view_of(const at::Tensor& buffer, DataType type,
                            std::vector<std::int64_t> shape) {
    TensorView view{buffer.data_ptr(), type, std::move(shape)};
    if (buffer.device().is_cuda()) {
      view.device = Device::cuda;
      view.device_index = buffer.device().index();
    }
    return view;
  }

  /// A contiguous tensor as `type`[numel].
  static TensorView flat(const at::Tensor& buffer, DataType type) {
    return view_of(buffer, type, {buffer.numel()});
  }

  /// A contiguous tensor whose bytes are only moved: as its own dtype when Ringfuse has it
  /// (mismatch messages then name it), else as bytes.
  static TensorView moved(const at::Tensor& buffer) {
    if (const auto type = ringfuse_dtype(buffer.scalar_type())) return flat(buffer, *type);
    return view_of(buffer, DataType::u8, {static_cast<std::int64_t>(buffer.nbytes())});
  }

  /// moved(), as rows (dimension 0) of elements, for the all-to-alls.
  static TensorView moved_rows(const at::Tensor& buffer) {
    const std::int64_t rows = buffer.dim() == 0 ? 1 : buffer.size(0);
    auto view = moved(buffer);
    view.shape = {rows, rows == 0 ? 0 : view.shape[0] / rows};
    return view;
  }

  /// Waits for the engine's Work within the group's timeout. `buffers` are what the engine
  /// reads and writes: if the wait gives up first, their memory stays alive until the engine
  /// is done with it.
  void await(const std::string& name, const rf::Work& work, std::vector<at::Tensor> buffers) {
    // The worker waits for this collective before it takes the next: negotiate it now rather
    // than after the engine's quiet timer (about a millisecond per collective otherwise).
    engine().flush();
    if (!work.wait_for(timeout_)) {  // throws the collective's own error
      std::vector<c10::Storage> storages;
      for (const auto& buffer : buffers) storages.push_back(buffer.storage());
      work.on_complete([keep = std::move(storages)](const Error*) {});
      throw core::rank_error(ErrorKind::timeout, global_rank(),
                             "ProcessGroup ringfuse{}: {}: not finished within {} ms; a peer "
                             "may be stuck, slow or gone, or it has not called this collective",
                             group_label_suffix(), name, timeout_.count());
    }
  }

  /// Every rank's `send` (one contiguous tensor), in rank order, into `recv` (contiguous,
  /// size() times as large); the agreement check made sure every rank sends as many.
  /// Device memory goes through the engine, whose allgather lets dimension 0 differ between
  /// ranks; torch's does not, so each rank sends one row of all its elements.
  void allgather_into(const std::string& name, const at::Tensor& send, const at::Tensor& recv) {
    auto input = moved(send);
    if (!send.is_cuda() && !recv.is_cuda()) {
      context_->allgather(send.data_ptr(), recv.data_ptr(), count_of(input), input.dtype);
      return;
    }
    input.shape = {1, input.shape[0]};
    // Every rank sends one row, and the fingerprint matched the rest of the shape: the
    // output is always size() rows, which `recv` holds.
    auto work = engine().allgather(
        name, input, [output = recv](const auto&) -> void* { return output.data_ptr(); });
    await(name, work, {send, recv});
  }

  /// An all-to-all of rows: this rank sends send_rows[j] rows of `input` to rank j and
  /// receives recv_rows[j] rows from rank j into `recv` (contiguous, of input's row size).
  void alltoall_rows(const TensorView& input, const std::vector<std::int64_t>& send_rows,
                     const at::Tensor& recv, const std::vector<std::int64_t>& recv_rows,
                     std::vector<at::Tensor> buffers) {
    const auto expected = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
    const std::int64_t row_elements = input.shape[1];
    // Rows that would not fit `recv` land in scratch memory, and the splits are compared
    // below: a rank's own tensors decide what fits, not its peers'.
    auto scratch = std::make_shared<at::Tensor>();
    auto output = recv;
    auto work = engine().alltoall(
        "alltoall", input, send_rows,
        [output, expected, row_elements, scratch, type = input.dtype](const auto& shape) -> void* {
          if (!shape.empty() && shape[0] == expected) return output.data_ptr();
          *scratch = at::empty({static_cast<std::int64_t>(element_size(type)) *
                                std::max<std::int64_t>(shape.empty() ? 0 : shape[0], 1) *
                                std::max<std::int64_t>(row_elements, 1)},
                               output.options().dtype(at::kByte));
          return scratch->data_ptr();
        });
    buffers.push_back(recv);
    await("alltoall", work, std::move(buffers));
    const auto received = work.received_splits();
    if (received != recv_rows) {
      refuse("alltoall", fmt::format("this rank expected [{}] rows from the ranks, which sent "
                                     "[{}]; the output splits must be what each rank sends here",
                                     fmt::join(recv_rows, ","), fmt::join(received, ",")));
    }
  }

  static void copy_back(const at::Tensor& buffer, const at::Tensor& tensor) {
    if (!buffer.is_same(tensor)) tensor.copy_(buffer);
  }

  void gather_to_all(const std::string& name, const at::Tensor& input,
                     const std::vector<at::Tensor>& outputs) {
    auto send = input.contiguous();
    auto recv = at::empty({getSize() * send.numel()}, send.options());
    allgather_into(name, send, recv);
    for (int r = 0; r < getSize(); ++r) {
      outputs[r].copy_(recv.narrow(0, r * send.numel(), send.numel()).view(outputs[r].sizes()));
    }
  }

  static int64_t dense_row_elements(const at::Tensor& sparse) {
    int64_t elements = 1;
    for (int64_t d = sparse.sparse_dim(); d < sparse.dim(); ++d) elements *= sparse.size(d);
    return elements;
  }

  // Every rank must hold a sparse tensor of the same shape, split and dtype: compared through
  // an allgather of a fingerprint, so a mismatch fails on every rank instead of mixing data.
  void check_same_sparse_layout(const at::Tensor& sparse) {
    int64_t fingerprint = static_cast<int64_t>(sparse.scalar_type()) * 1000003 +
                          sparse.sparse_dim() * 1009 + sparse.dim();
    for (const auto size : sparse.sizes()) fingerprint = fingerprint * 31 + size;
    std::vector<int64_t> all(getSize());
    context_->allgather(&fingerprint, all.data(), 1, DataType::i64);
    for (int r = 0; r < getSize(); ++r) {
      if (all[r] != fingerprint) {
        throw core::error_at(ErrorKind::invalid_argument, global_rank(), global_rank(r),
                             "ProcessGroup ringfuse: sparse allreduce: rank {}'s tensor differs "
                             "from this rank's {} {} (shape, sparse dimensions or dtype); every "
                             "rank must pass the same kind of sparse tensor",
                             global_rank(r), c10::toString(sparse.scalar_type()),
                             c10::str(sparse.sizes()));
      }
    }
  }

  WorkLabel describe(const char* call, const at::Tensor& tensor) const {
    return {where_, call, tensor.scalar_type(), tensor.numel()};
  }
  WorkLabel label(const char* call) const { return {where_, call, std::nullopt, 0}; }

  /// One collective on the lane, given its Work (whose outputs it may read: an all-reduce's
  /// body captures no tensor, so it fits std::function's own storage and allocates nothing).
  using LaneBody = std::function<void(RingfuseWork&)>;
  struct Item;  // a queued collective: its Work and its body

  /// Where a collective may run: in a thread that waits for it when it is in host memory and
  /// small (and the lane idle), else on the worker only.
  struct LaneHint {
    std::size_t bytes = 0;
    bool host = false;  // false: always the worker (device memory, the engine's collectives)
  };

  static RingfuseWork::Outputs outputs_of(const std::vector<at::Tensor>& tensors) {
    return {tensors.begin(), tensors.end()};
  }

  static LaneHint lane_hint(const at::Tensor& tensor) {
    return {.bytes = tensor.nbytes(), .host = tensor.device().is_cpu()};
  }

  /// The bytes of `tensors` (times `copies`: a gather's or scatter's whole buffer), in host
  /// memory or not.
  static LaneHint lane_hint(const std::vector<at::Tensor>& tensors, int copies = 1) {
    LaneHint hint{.bytes = 0, .host = true};
    for (const auto& tensor : tensors) {
      hint.bytes += tensor.nbytes() * static_cast<std::size_t>(copies);
      hint.host = hint.host && tensor.device().is_cpu();
    }
    return hint;
  }

  /// Queues `body` (one collective: the agreement check, then the Context's blocking call) on
  /// the lane, after every collective this rank called before, and returns at once. The
  /// worker starts it, at once when `hint` says it is large or in device memory, else after
  /// kStealGrace unless a wait() on its Work ran it first (run_up_to). Which thread runs it is
  /// this rank's own choice; the order is the call order either way, and the lane never runs
  /// two at once (the Context's blocking collectives take one thread at a time).
  c10::intrusive_ptr<::c10d::Work> on_lane(::c10d::OpType type, WorkLabel what,
                                           RingfuseWork::Outputs&& outputs, LaneHint hint,
                                           LaneBody body) {
    const bool small = hint.host && hint.bytes <= kInlineBytes;
    // Twice the group's timeout: a collective may wait for those queued before it.
    auto work = c10::make_intrusive<RingfuseWork>(global_rank(), type, std::move(outputs),
                                                  timeout_ * 2, std::move(what),
                                                  small ? lane_access_ : nullptr);
    {
      std::unique_lock lock(queue_mutex_);
      if (failed_) {
        // The connections behind a failed collective are unusable: say why at once.
        lock.unlock();
        work->complete(failed_);
        return work;
      }
      const auto now = std::chrono::steady_clock::now();
      queue_.push_back({work, std::move(body), small, now});
      if (small) {
        last_small_queued_ = now;
        if (polling_ > 0) return work;  // a worker looks within kWorkerPoll
      }
    }
    queue_cv_.notify_one();
    return work;
  }

  /// An all-reduce in a group of one: any reduction of one rank's tensor is that tensor, so on
  /// an idle lane it is finished before it starts (no check, no Context call, no queue: a
  /// group of one has no peer to agree with or wait for). Null when collectives are queued
  /// or running, or the group failed: then it queues behind them, in call order, as usual.
  c10::intrusive_ptr<::c10d::Work> finished_alone(::c10d::OpType type, WorkLabel what,
                                                  const at::Tensor& tensor) {
    {
      std::lock_guard lock(queue_mutex_);
      if (failed_ || lane_busy_ || !queue_.empty()) return {};
    }
    auto work = c10::make_intrusive<RingfuseWork>(global_rank(), type,
                                                  RingfuseWork::Outputs{tensor}, timeout_ * 2,
                                                  std::move(what));
    work->complete(nullptr);
    return work;
  }

  /// Work::wait() of a small collective: when the lane is idle and `work` not yet started, runs
  /// it and every collective queued before it in this thread, in order.
  void run_up_to(RingfuseWork* work) {
    // Only the thread that set lane_busy_ touches waiter_batch_: it keeps its capacity, so a
    // steady loop of small collectives allocates nothing here. The common case, `work` first
    // in the queue, takes it alone without the batch.
    Item first;
    {
      std::lock_guard lock(queue_mutex_);
      if (lane_busy_ || queue_.empty()) return;
      if (queue_.front().work.get() == work) {
        first = std::move(queue_.front());
        queue_.pop_front();
      } else {
        const auto found = std::find_if(queue_.begin(), queue_.end(), [&](const Item& item) {
          return item.work.get() == work;
        });
        if (found == queue_.end()) return;
        const auto end = std::next(found);
        waiter_batch_.assign(std::make_move_iterator(queue_.begin()),
                             std::make_move_iterator(end));
        queue_.erase(queue_.begin(), end);
      }
      lane_busy_ = true;
    }
    // Settled once the lane is free again: a callback may start a collective and wait for it.
    Settlements settlements;
    SettlingFutures settling;  // from before the Works complete (their waiters may then exit)
    if (first.work) {
      finish(first, run_collective(first), settlements);
    } else {
      for (auto& item : waiter_batch_) finish(item, run_collective(item), settlements);
      waiter_batch_.clear();
    }
    release_lane_and_settle(settlements, /*worker=*/false);
    first = Item{};  // the tensors' last references may be these
  }

  /// A finished collective's Work and the future to settle after the lane was let go.
  struct Settlement {
    c10::intrusive_ptr<RingfuseWork> work;
    c10::intrusive_ptr<c10::ivalue::Future> future;
    std::exception_ptr error;
  };
  using Settlements = c10::SmallVector<Settlement, 1>;

  /// Marks `item`'s Work completed with `error` (its collective's outcome); its future, if
  /// one was asked for, goes into `settlements`.
  static void finish(const Item& item, std::exception_ptr error, Settlements& settlements) {
    if (auto future = item.work->finish(error)) {
      settlements.push_back({item.work, std::move(future), std::move(error)});
    }
  }

  /// Lets the lane go after this thread ran collectives on it, then settles their futures
  /// here. torch's callbacks may start a collective and wait for it in this thread (PowerSGD's
  /// hook does), so some worker must be left to run the lane: one is started when every worker
  /// is settling. `worker`: this thread is one of workers_ (and so counts in settling_ while
  /// it settles); else a waiter of run_up_to().
  void release_lane_and_settle(Settlements& settlements, bool worker) {
    bool wake = false;
    {
      std::lock_guard lock(queue_mutex_);
      lane_busy_ = false;
      if (!settlements.empty()) {
        if (worker) ++settling_;
        if (!stopping_ && settling_ >= workers_.size()) {
          workers_.emplace_back([this] { run_queue(); });
        }
      }
      // A worker with nothing to settle goes back to the queue itself.
      wake = !queue_.empty() && (!worker || !settlements.empty());
    }
    if (wake) queue_cv_.notify_one();  // collectives queued behind these meanwhile
    if (settlements.empty()) return;
    if (worker) {
      // torch's callbacks on these futures may be Python (DDP's communication hooks are).
      thread_local KeptThreadState python_state;
      python_state.keep();
    }
    for (auto& [work, future, error] : settlements) work->settle(*future, error);
    settlements.clear();  // the futures' last references may be these
    if (worker) {
      std::lock_guard lock(queue_mutex_);
      --settling_;
    }
  }

  /// Runs one collective of the lane; its error, if any, which also fails the group's later
  /// collectives unless the connections stayed in step.
  std::exception_ptr run_collective(const Item& item) {
    try {
      at::AutoDispatchBelowADInplaceOrView guard;  // the copies are not autograd's business
      item.body(*item.work);
      return nullptr;
    } catch (const Error& failure) {
      auto error = std::make_exception_ptr(naming_group_timeout(failure));
      // A mismatch (or another caller error) fails the collective on every rank alike and
      // leaves the connections in step: the group stays usable.
      std::lock_guard lock(queue_mutex_);
      if (!failed_ && failure.kind() != ErrorKind::invalid_argument) failed_ = error;
      return error;
    } catch (...) {
      auto error = std::current_exception();
      std::lock_guard lock(queue_mutex_);
      if (!failed_) failed_ = error;
      return error;
    }
  }

  void run_queue() {
    core::name_this_thread("rf-c10d-lane");
    for (;;) {
      Item item;
      {
        std::unique_lock lock(queue_mutex_);
        while (!((stopping_ && queue_.empty()) || (!queue_.empty() && !lane_busy_))) {
          // One worker polls (a small collective's on_lane wakes no one then); the others,
          // and all of them once no small collective came for kWorkerAwake, wait to be woken.
          if (polling_ == 0 &&
              std::chrono::steady_clock::now() - last_small_queued_ < kWorkerAwake) {
            ++polling_;
            queue_cv_.wait_for(lock, kWorkerPoll);
            --polling_;
          } else {
            queue_cv_.wait(lock);
          }
        }
        if (queue_.empty()) return;
        if (const auto& head = queue_.front();
            head.small && !stopping_ && !head.work->start_now()) {
          const auto until = head.queued + kStealGrace;
          if (std::chrono::steady_clock::now() < until) {
            // Left to a waiter for a moment; look again then (or when woken). Counted as
            // polling meanwhile, so that the small collectives queued now wake no one: in a
            // loop of them each call woke this worker, which found the next one queued and
            // waited again, a context switch per call for as long as that lasted (16 us
            // instead of 5 per 4 KiB pg.allreduce in runs of thousands of calls).
            ++polling_;
            queue_cv_.wait_until(lock, until);
            --polling_;
            continue;
          }
        }
        item = std::move(queue_.front());
        queue_.pop_front();
        lane_busy_ = true;
      }
      auto error = run_collective(item);
      // From before the Work completes: a thread waiting for it may then leave, and exit,
      // while this one still drops the collective's tensors and settles its future.
      SettlingFutures settling;
      Settlements settlements;
      finish(item, std::move(error), settlements);
      release_lane_and_settle(settlements, /*worker=*/true);
      item = Item{};  // the tensors' last references may be these
    }
  }

  /// A collective's timeout error says which limit it hit. Under torch.distributed that is the
  /// timeout given to init_process_group or new_group (it became op_timeout), not the
  /// RINGFUSE_TIMEOUT_S the core's message names; torch's own tests, like users, look for the
  /// word "timeout" in it.
  Error naming_group_timeout(const Error& failure) const {
    if (failure.kind() != ErrorKind::timeout) return failure;
    Error named(failure.kind(),
                fmt::format("{} (here the timeout given to init_process_group or new_group: "
                            "{} ms)",
                            failure.what(), timeout_.count()),
                failure.rank(), failure.peer());
    if (failure.sequence() != 0) named.in_collective(failure.sequence(), failure.backend());
    return named;
  }

  struct Item {
    c10::intrusive_ptr<RingfuseWork> work;
    LaneBody body;
    bool small = false;  // a waiter may run it (run_up_to); the worker waits kStealGrace first
    std::chrono::steady_clock::time_point queued;
  };

  std::chrono::milliseconds timeout_;
  std::vector<int> global_ranks_;  // by group rank; empty: the world group
  std::string label_;              // the sub-group's name; empty: the world group
  // "ProcessGroup ringfuse (label)": messages start so; shared with the Works' labels.
  std::shared_ptr<const std::string> where_;
  // Before context_, so destroyed after it: the engine stops (failing what is pending) before
  // the tensors of unfinished transfers are released.
  std::unique_ptr<PointToPoint> p2p_;
  std::unique_ptr<Context> context_;
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<Item> queue_;
  std::vector<Item> waiter_batch_;  // what run_up_to() runs; only the lane's holder uses it
  bool stopping_ = false;
  bool lane_busy_ = false;  // a collective runs (in a waiter or the worker): later ones queue
  std::exception_ptr failed_;
  // A worker polls for kWorkerAwake after a small collective was queued.
  std::chrono::steady_clock::time_point last_small_queued_;
  // Workers that look at the queue soon on their own: one every kWorkerPoll, and one leaving
  // a small collective to its waiter for kStealGrace.
  int polling_ = 0;
  std::size_t settling_ = 0;  // workers running torch's callbacks of a finished collective
  // What a small collective's Work calls to run it in the waiting thread.
  std::shared_ptr<LaneAccess> lane_access_ = std::make_shared<LaneAccess>(
      [this](RingfuseWork* work) { run_up_to(work); }, [this] { queue_cv_.notify_one(); });
  // Last: started once everything they use exists. The first in the constructor; another
  // whenever all of them are settling futures (release_lane_and_settle). Guarded by
  // queue_mutex_ until stopping_.
  std::vector<std::thread> workers_;
};

}  // namespace
}  // namespace ringfuse::python

namespace ringfuse::python {
namespace {

/// The group's allreduce as torch.profiler saw it through c10d's operator dispatch: an event
/// "c10d::allreduce_" with its tensors. When no profiler runs, the guard is a thread-local
/// check and the inputs are never built.
c10::intrusive_ptr<::c10d::Work> profiled_allreduce(ProcessGroupRingfuse& group,
                                                    std::vector<at::Tensor>& tensors,
                                                    const ::c10d::AllreduceOptions& opts) {
  RECORD_FUNCTION("c10d::allreduce_", std::vector<c10::IValue>(tensors.begin(), tensors.end()));
  return group.allreduce(tensors, opts);
}

}  // namespace
}  // namespace ringfuse::python

PYBIND11_MODULE(_c10d, module) {
  module.doc() = "The torch.distributed process group \"ringfuse\" (see ringfuse.distributed).";
  py::module::import("torch.distributed");  // registers c10d's ProcessGroup and Store types
  using ringfuse::python::ProcessGroupRingfuse;
  using ringfuse::python::RingfuseWork;
  // Our Work's own Python type: returning one to Python then finds its type at the first
  // look-up, instead of missing and falling back to c10d's Work (a hash of the type's name
  // each). Its methods are Work's.
  py::class_<RingfuseWork, ::c10d::Work, c10::intrusive_ptr<RingfuseWork>>(module, "Work");
  module.def("_wait_for_settled_futures", &ringfuse::python::wait_for_settled_futures,
             py::arg("seconds"),
             "Waits until no thread of this process's ringfuse groups is settling a Work's "
             "future (running torch's callbacks), for at most `seconds`: registered with atexit");
  py::class_<ProcessGroupRingfuse, ::c10d::ProcessGroup,
             c10::intrusive_ptr<ProcessGroupRingfuse>>(module, "ProcessGroupRingfuse")
      // torch's ProcessGroup.allreduce, the same three forms, without c10d's operator
      // dispatch: dist.all_reduce reaches allreduce() with no copy of the tensor list, no boxed
      // call and no ReduceOp allocated (for torch's c10d::allreduce_ kernel on CPU and CUDA
      // alike that is all it does before calling allreduce(); torch.profiler still sees the
      // operator: profiled_allreduce records it). They release the GIL as
      // torch's do: keeping it saved about 470 instructions a call and no time measurable here
      // (perf/RESULTS.md, issue 21, seventh session).
      .def(
          "allreduce",
          [](ProcessGroupRingfuse& group, std::vector<at::Tensor>& tensors,
             const ::c10d::AllreduceOptions& opts) {
            return ringfuse::python::profiled_allreduce(group, tensors, opts);
          },
          py::arg("tensors"), py::arg("opts") = ::c10d::AllreduceOptions(),
          py::call_guard<py::gil_scoped_release>())
      .def(
          "allreduce",
          [](ProcessGroupRingfuse& group, std::vector<at::Tensor>& tensors,
             const ::c10d::ReduceOp& op) {
            ::c10d::AllreduceOptions opts;
            opts.reduceOp = op;
            return ringfuse::python::profiled_allreduce(group, tensors, opts);
          },
          py::arg("tensors"), py::arg("op") = ::c10d::ReduceOp::SUM,
          py::call_guard<py::gil_scoped_release>())
      .def(
          "allreduce",
          [](ProcessGroupRingfuse& group, const at::Tensor& tensor, const ::c10d::ReduceOp& op) {
            ::c10d::AllreduceOptions opts;
            opts.reduceOp = op;
            std::vector<at::Tensor> tensors{tensor};
            return ringfuse::python::profiled_allreduce(group, tensors, opts);
          },
          py::arg("tensor"), py::arg("op") = ::c10d::ReduceOp::SUM,
          py::call_guard<py::gil_scoped_release>())
      .def(py::init([](const c10::intrusive_ptr<::c10d::Store>& store, int rank, int size,
                       std::chrono::milliseconds timeout, int local_rank, int local_size,
                       std::string host_addr, std::string job_secret, std::string job_id,
                       std::vector<int> global_ranks, std::string label) {
             ringfuse::python::WorldPlacement placement{
                 local_rank,           local_size,
                 std::move(host_addr), std::move(job_secret),
                 std::move(job_id),    std::move(global_ranks),
                 std::move(label)};
             return c10::make_intrusive<ProcessGroupRingfuse>(
                 store, rank, size, timeout, placement);
           }),
           py::arg("store"), py::arg("rank"), py::arg("size"), py::arg("timeout"),
           py::arg("local_rank"), py::arg("local_size"), py::arg("host_addr"),
           py::arg("job_secret"), py::arg("job_id") = "torch",
           py::arg("global_ranks") = std::vector<int>{}, py::arg("label") = "",
           py::call_guard<py::gil_scoped_release>());
}
