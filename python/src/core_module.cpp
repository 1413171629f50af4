// ringfuse._core: the Context and the asynchronous Engine over torch tensors, for the pure
// Python layer (ringfuse.torch). Tensors are never copied: the engine gets their data pointer,
// dtype, shape and device, and the tensors are kept alive until their collective completed.
//
// The GIL: the engine thread never touches Python. Completion only flips the Work's state;
// Python observes it through poll()/wait() (wait releases the GIL). Tensor references are
// dropped on Python threads only (a TensorImpl with a Python object may take the GIL in its
// destructor), which is why the Session keeps every in-flight collective until it completed,
// even when Python dropped its handle.
//
// This is the only file that includes torch's headers (they compile slowly).
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>

#include <ATen/ATen.h>
#include <pybind11/stl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/environment.hpp"
#include "core/errors.hpp"
#include "core/horovod_variables.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/engine.hpp"
#include "ringfuse/error.hpp"

namespace py = pybind11;
namespace rf = ringfuse;
using namespace std::chrono_literals;

namespace {

// The engine's data types. Others (complex) are the Python layer's business: it moves them as
// bytes where no arithmetic is involved, and refuses them where the engine would reduce them.
std::optional<rf::DataType> engine_dtype(at::ScalarType type) {
  switch (type) {
    case at::kHalf: return rf::DataType::f16;
    case at::kBFloat16: return rf::DataType::bf16;
    case at::kFloat: return rf::DataType::f32;
    case at::kDouble: return rf::DataType::f64;
    case at::kChar: return rf::DataType::i8;
    case at::kByte: return rf::DataType::u8;
    case at::kInt: return rf::DataType::i32;
    case at::kLong: return rf::DataType::i64;
    case at::kShort: return rf::DataType::i16;
    case at::kBool: return rf::DataType::boolean;
    default: return std::nullopt;
  }
}

rf::ReduceOp reduce_op(const std::string& name, int rank) {
  if (auto op = rf::parse_reduce_op(name)) return *op;
  throw rf::core::rank_error(rf::ErrorKind::invalid_argument, rank,
                             "unknown reduction '{}' (sum, avg, min, max, prod)", name);
}

rf::MatchMode match_mode(const std::string& name) {
  if (name == "sequence") return rf::MatchMode::sequence;
  if (name == "name") return rf::MatchMode::name;
  throw rf::Error(rf::ErrorKind::invalid_argument,
                  "unknown matching mode '" + name + "' (sequence, name)");
}

rf::Compression wire_compression(const std::string& name, int rank) {
  if (name == "none") return rf::Compression::none;
  if (name == "fp16") return rf::Compression::fp16;
  if (name == "bf16") return rf::Compression::bf16;
  throw rf::core::rank_error(rf::ErrorKind::invalid_argument, rank,
                             "unknown wire compression '{}' (none, fp16, bf16)", name);
}

// A view of `tensor` for the engine: its own memory, no copy.
rf::TensorView view_of(const at::Tensor& tensor, const std::string& name, int rank) {
  const auto refuse = [&](const std::string& why) {
    return rf::core::rank_error(rf::ErrorKind::invalid_argument, rank, "tensor '{}': {}", name,
                                why);
  };
  if (!tensor.defined()) throw refuse("is undefined (None)");
  if (tensor.is_sparse()) throw refuse("is sparse; pass a dense tensor (tensor.to_dense())");
  if (!tensor.is_contiguous()) {
    throw refuse("is not contiguous; pass tensor.contiguous() (in-place collectives need "
                 "contiguous memory)");
  }
  const auto dtype = engine_dtype(tensor.scalar_type());
  if (!dtype) {
    throw refuse(std::string("dtype ") + c10::toString(tensor.scalar_type()) +
                 " is not one the engine knows (f16, bf16, f32, f64, i8, u8, i16, i32, i64, bool)");
  }
  rf::TensorView view;
  view.data = tensor.data_ptr();
  view.dtype = *dtype;
  view.shape.assign(tensor.sizes().begin(), tensor.sizes().end());
  if (tensor.is_cuda()) {
    view.device = rf::Device::cuda;
    view.device_index = tensor.get_device();
  } else if (!tensor.is_cpu()) {
    throw refuse(std::string("is on device ") + tensor.device().str() +
                 "; only CPU and CUDA tensors are supported");
  }
  return view;
}

// One enqueued collective as Python sees it: the engine's Work, the tensors it reads and
// writes (kept alive until it completed), and what the engine allocated for it (allgather,
// uneven alltoall and reducescatter: `gathered`; grouped allgather: `outputs`).
struct Pending {
  rf::Work work;
  std::vector<at::Tensor> keep_alive;
  std::mutex output_mutex;  // the outputs are set on the engine thread
  at::Tensor gathered;
  std::vector<at::Tensor> outputs;

  // An OutputAllocator filling `gathered`. Runs on the engine thread: a fresh tensor has no
  // Python object, so no GIL is involved. `this` lives in the Session's in-flight list until
  // the Work completed.
  rf::OutputAllocator allocate_gathered(at::TensorOptions options) {
    return [this, options](const std::vector<std::int64_t>& shape) -> void* {
      std::lock_guard lock(output_mutex);
      gathered = at::empty(shape, options);
      return gathered.data_ptr();
    };
  }
};

// Waits (GIL released) until `work` finished, in slices so that Ctrl-C is seen; throws its
// error, or a timeout error once `timeout_s` (<= 0: no limit) passed. Called with the GIL.
void wait_for(const rf::Work& work, double timeout_s) {
  // Done already (every member of a fused group once the first is waited for): its result or
  // error without giving the GIL away and taking it back.
  if (work.test()) return work.wait(0ms);
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    bool finished = false;
    {
      py::gil_scoped_release no_gil;
      finished = work.wait_for(100ms);  // throws the collective's own error
    }
    if (finished) return;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    const std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
    if (timeout_s > 0 && waited.count() >= timeout_s) {
      throw rf::Error(rf::ErrorKind::timeout,
                      "ringfuse: the collective did not finish within " +
                          std::to_string(timeout_s) + " s (it keeps running)");
    }
  }
}

class Handle {
 public:
  explicit Handle(std::shared_ptr<Pending> pending) : pending_(std::move(pending)) {}

  bool poll() const { return pending_->work.test(); }

  /// Waits (GIL released) until the collective finished, in slices so that Ctrl-C is seen;
  /// throws its error, or a timeout error once `timeout_s` (<= 0: no limit) passed.
  void wait(double timeout_s) const { wait_for(pending_->work, timeout_s); }

  /// The tensor an allgather produced (None before completion or for other collectives).
  py::object gathered() const {
    std::lock_guard lock(pending_->output_mutex);
    if (!pending_->gathered.defined()) return py::none();
    return py::cast(pending_->gathered);
  }

  /// The tensors a grouped allgather produced, in input order (empty before completion).
  std::vector<at::Tensor> outputs() const {
    std::lock_guard lock(pending_->output_mutex);
    return pending_->outputs;
  }

  std::vector<std::int64_t> output_shape() const { return pending_->work.output_shape(); }
  std::vector<std::int64_t> received_splits() const { return pending_->work.received_splits(); }
  int last_joined_rank() const { return pending_->work.last_joined_rank(); }

 private:
  std::shared_ptr<Pending> pending_;
};

// One rank's membership in the world (ringfuse::init()) and its engine.
class Session {
 public:
  /// `match`: the engine's matching mode ("sequence" or "name"), overriding the environment's
  /// RINGFUSE_MATCH; None keeps what the environment says.
  /// Horovod's own variables (HOROVOD_FUSION_THRESHOLD, HOROVOD_TIMELINE, ...) stand in for
  /// the RINGFUSE_* variables they name where those are unset (core/horovod_variables.hpp):
  /// this is the Horovod API.
  explicit Session(const std::optional<std::string>& match) {
    const auto env = rf::core::process_environment();
    auto options = rf::core::parse_options(rf::core::with_horovod_variables(env));
    if (match) options.engine.match = match_mode(*match);
    const auto world = rf::world_from_environment();
    py::gil_scoped_release no_gil;  // init() connects to every peer: let other threads run
    context_ = rf::init(world, options);
    engine_ = &context_->engine();
    if (context_->rank() == 0) {  // after init(): its log level applies
      for (const auto& read : rf::core::horovod_variables_read(env)) {
        spdlog::info("ringfuse.torch: {}", read);
      }
      for (const auto& ignored : rf::core::horovod_variables_not_honoured(env)) {
        spdlog::warn("ringfuse.torch: {}", ignored);
      }
    }
  }
  ~Session() { close(); }

  /// Shuts the engine and the Context down: collectives still pending fail with the engine's
  /// "shut down" error. Idempotent.
  void close() {
    // Detached first, so another Python thread entering while the GIL is released below finds
    // the session closed rather than half destroyed.
    auto closing = std::move(context_);
    engine_ = nullptr;
    if (closing) {
      // The engine thread never takes the GIL, so this cannot deadlock either way; releasing
      // it lets other Python threads run during the shutdown handshake.
      if (PyGILState_Check() != 0) {
        py::gil_scoped_release no_gil;
        closing.reset();
      } else {
        closing.reset();
      }
    }
    in_flight_.clear();
  }

  bool closed() const { return !context_; }
  rf::Context& context() const {
    if (!context_) {
      throw rf::Error(rf::ErrorKind::invalid_argument,
                      "ringfuse has been shut down; call init() again first");
    }
    return *context_;
  }
  /// The engine of Horovod process set `process_set` (0: the global set). Throws
  /// invalid_argument, naming the set, on a rank outside it or for an unknown id.
  rf::Engine& engine(int process_set = 0) const {
    auto& context = this->context();
    return process_set == 0 ? *engine_ : context.engine(process_set);
  }

  /// Registers a process set of these (world) ranks; collective over every rank, members or
  /// not, GIL released. Returns its id (>= 1).
  int add_process_set(const std::vector<int>& ranks) {
    auto& context = this->context();
    py::gil_scoped_release no_gil;
    return context.add_process_set(ranks);
  }

  /// Collective over every rank; collectives still pending on the set fail first.
  void remove_process_set(int id) {
    auto& context = this->context();
    py::gil_scoped_release no_gil;
    context.remove_process_set(id);
  }

  std::vector<int> process_set_ranks(int id) const { return context().process_set_ranks(id); }
  int rank() const { return context().rank(); }

  Handle allreduce(const std::string& name, const at::Tensor& tensor, const std::string& op,
                   double prescale, double postscale, const std::string& compression,
                   int process_set) {
    rf::AllreduceOptions options{reduce_op(op, rank()), prescale, postscale,
                                 wire_compression(compression, rank())};
    auto& engine = this->engine(process_set);
    auto pending = start({tensor});
    pending->work = engine.allreduce(name, view_of(tensor, name, rank()), options);
    return track(std::move(pending));
  }

  /// allreduce(name, tensor, "avg", prescale, postscale) of the global set without
  /// compression, known by the caller's `handle` (wait_average/poll_average): what
  /// ringfuse.torch's allreduce_async_ sends once per gradient per step, with no Handle object
  /// to make and fewer arguments to convert (issue 20: Python's cost per enqueued tensor).
  void allreduce_average(std::int64_t handle, const std::string& name, const at::Tensor& tensor,
                         double prescale, double postscale) {
    const rf::AllreduceOptions options{rf::ReduceOp::avg, prescale, postscale};
    context();  // refuses after shutdown
    auto [slot, fresh] = by_handle_.try_emplace(handle);
    if (!fresh) {
      throw py::value_error("allreduce_average: handle " + std::to_string(handle) +
                            " is in use");
    }
    try {
      slot->second.work = engine_->allreduce(name, view_of(tensor, name, rank()), options);
    } catch (...) {
      by_handle_.erase(slot);
      throw;
    }
    slot->second.tensor = tensor;
  }

  /// Waits for allreduce_average's `handle` and returns its tensor; raises its error. Forgets
  /// the handle once the collective finished, with or without an error. Also after
  /// shutdown, which failed what was pending.
  at::Tensor wait_average(std::int64_t handle) {
    auto found = find_average(handle, "synchronize");
    if (!found->second.work.test()) {
      const rf::Work work = found->second.work;  // the map may change while the GIL is away
      try {
        wait_for(work, 0);
      } catch (const rf::Error&) {
        if (work.test()) by_handle_.erase(handle);
        throw;
      }
      found = find_average(handle, "synchronize");
    }
    at::Tensor tensor = std::move(found->second.tensor);
    const rf::Work work = std::move(found->second.work);
    by_handle_.erase(found);
    work.wait(0ms);  // its error, if it failed
    return tensor;
  }

  bool poll_average(std::int64_t handle) {
    return find_average(handle, "poll")->second.work.test();
  }

  Handle grouped_allreduce(const std::string& name, const std::vector<at::Tensor>& tensors,
                           const std::string& op, double prescale, double postscale,
                           const std::string& compression, int process_set) {
    auto& engine = this->engine(process_set);
    rf::AllreduceOptions options{reduce_op(op, rank()), prescale, postscale,
                                 wire_compression(compression, rank())};
    std::vector<rf::TensorView> views;
    views.reserve(tensors.size());
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      views.push_back(view_of(tensors[i], name + "." + std::to_string(i), rank()));
    }
    auto pending = start(tensors);
    pending->work = engine.grouped_allreduce(name, std::move(views), options);
    return track(std::move(pending));
  }

  Handle allgather(const std::string& name, const at::Tensor& input, int process_set) {
    auto& engine = this->engine(process_set);
    auto pending = start({input});
    pending->work = engine.allgather(name, view_of(input, name, rank()),
                                       pending->allocate_gathered(input.options()));
    return track(std::move(pending));
  }

  Handle grouped_allgather(const std::string& name, const std::vector<at::Tensor>& inputs,
                           int process_set) {
    auto& engine = this->engine(process_set);
    std::vector<rf::TensorView> views;
    views.reserve(inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      views.push_back(view_of(inputs[i], name + "." + std::to_string(i), rank()));
    }
    auto pending = start(inputs);
    pending->outputs.resize(inputs.size());
    std::vector<at::TensorOptions> options;
    for (const auto& input : inputs) options.push_back(input.options());
    Pending* raw = pending.get();  // lives in in_flight_ until the Work completed
    pending->work = engine.grouped_allgather(
        name, std::move(views),
        [raw, options](std::size_t index, const std::vector<std::int64_t>& shape) -> void* {
          std::lock_guard lock(raw->output_mutex);
          raw->outputs.at(index) = at::empty(shape, options.at(index));
          return raw->outputs[index].data_ptr();
        });
    return track(std::move(pending));
  }

  /// `root`: the root's rank in the process set.
  Handle broadcast(const std::string& name, const at::Tensor& tensor, int root,
                   int process_set) {
    auto& engine = this->engine(process_set);
    auto pending = start({tensor});
    pending->work = engine.broadcast(name, view_of(tensor, name, rank()), root);
    return track(std::move(pending));
  }

  Handle alltoall(const std::string& name, const at::Tensor& input, const at::Tensor& output,
                  int process_set) {
    auto& engine = this->engine(process_set);
    auto pending = start({input, output});
    pending->work = engine.alltoall(name, view_of(input, name, rank()),
                                      view_of(output, name + " (output)", rank()));
    return track(std::move(pending));
  }

  /// Uneven: `splits[j]` rows of dimension 0 go to rank j; the output comes from the engine.
  Handle alltoallv(const std::string& name, const at::Tensor& input,
                   const std::vector<std::int64_t>& splits, int process_set) {
    auto& engine = this->engine(process_set);
    auto pending = start({input});
    pending->work = engine.alltoall(name, view_of(input, name, rank()), splits,
                                      pending->allocate_gathered(input.options()));
    return track(std::move(pending));
  }

  /// Horovod's uneven split of dimension 0; the output comes from the engine.
  Handle reducescatter_uneven(const std::string& name, const at::Tensor& input,
                              const std::string& op, int process_set) {
    auto& engine = this->engine(process_set);
    auto pending = start({input});
    pending->work = engine.reducescatter(name, view_of(input, name, rank()),
                                           pending->allocate_gathered(input.options()),
                                           reduce_op(op, rank()));
    return track(std::move(pending));
  }

  Handle grouped_reducescatter(const std::string& name, const std::vector<at::Tensor>& inputs,
                               const std::vector<at::Tensor>& outputs, const std::string& op,
                               int process_set) {
    auto& engine = this->engine(process_set);
    std::vector<rf::TensorView> input_views;
    std::vector<rf::TensorView> output_views;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      input_views.push_back(view_of(inputs[i], name + "." + std::to_string(i), rank()));
    }
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      output_views.push_back(
          view_of(outputs[i], name + "." + std::to_string(i) + " (output)", rank()));
    }
    std::vector<at::Tensor> keep(inputs);
    keep.insert(keep.end(), outputs.begin(), outputs.end());
    auto pending = start(std::move(keep));
    pending->work = engine.grouped_reducescatter(name, std::move(input_views),
                                                   std::move(output_views), reduce_op(op, rank()));
    return track(std::move(pending));
  }

  Handle reducescatter(const std::string& name, const at::Tensor& input,
                       const at::Tensor& output, const std::string& op, int process_set) {
    auto& engine = this->engine(process_set);
    auto pending = start({input, output});
    pending->work =
        engine.reducescatter(name, view_of(input, name, rank()),
                               view_of(output, name + " (output)", rank()), reduce_op(op, rank()));
    return track(std::move(pending));
  }

  Handle barrier(const std::string& name, int process_set) {
    auto& engine = this->engine(process_set);
    auto pending = start({});
    pending->work = engine.barrier(name);
    return track(std::move(pending));
  }

  Handle join() {
    auto pending = start({});
    pending->work = engine().join();
    return track(std::move(pending));
  }

  /// Starts a negotiation cycle on the engine of `process_set` now, instead of after the
  /// queue went quiet.
  void flush(int process_set) { engine(process_set).flush(); }
  /// The requests enqueued on `process_set` until flush() go to one negotiation cycle.
  void hold(int process_set) { engine(process_set).hold(); }

  void start_timeline(const std::string& path, bool mark_cycles) {
    engine().start_timeline(path, mark_cycles);
  }
  void stop_timeline() { engine().stop_timeline(); }
  std::string match() const {
    return engine().config().match == rf::MatchMode::name ? "name" : "sequence";
  }

  py::dict stats() const {
    const auto s = engine().stats();
    py::dict d;
    d["cycles"] = s.cycles;
    d["fast_path_cycles"] = s.fast_path_cycles;
    d["cache_hits"] = s.cache_hits;
    d["cache_misses"] = s.cache_misses;
    d["cache_evictions"] = s.cache_evictions;
    d["collectives"] = s.collectives;
    d["fused_tensors"] = s.fused_tensors;
    return d;
  }

  std::size_t in_flight() const { return in_flight_.size(); }

  /// The step perf/python_overhead.py compares ringfuse.torch's with (issue 20: "within 1.5x
  /// the same step from C++"): every tensor enqueued by name as a C++ program would
  /// (Engine::allreduce), then every Work waited for, on this thread with the GIL released
  /// (the caller's list keeps the tensors alive). Returns (enqueue seconds, step seconds).
  std::pair<double, double> step_from_cpp(const std::vector<std::string>& names,
                                          const std::vector<at::Tensor>& tensors,
                                          const std::string& op) {
    if (names.size() != tensors.size()) {
      throw rf::Error(rf::ErrorKind::invalid_argument,
                      "step_from_cpp: " + std::to_string(names.size()) + " names for " +
                          std::to_string(tensors.size()) + " tensors");
    }
    std::vector<rf::TensorView> views;
    views.reserve(tensors.size());
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      views.push_back(view_of(tensors[i], names[i], rank()));
    }
    const rf::AllreduceOptions options{reduce_op(op, rank())};
    auto& engine = this->engine();
    py::gil_scoped_release no_gil;
    std::vector<rf::Work> works;
    works.reserve(views.size());
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < views.size(); ++i) {
      works.push_back(engine.allreduce(names[i], views[i], options));
    }
    const auto enqueued = std::chrono::steady_clock::now();
    for (auto& work : works) work.wait(60s);
    const std::chrono::duration<double> enqueue = enqueued - start;
    const std::chrono::duration<double> step = std::chrono::steady_clock::now() - start;
    return {enqueue.count(), step.count()};
  }

 private:
  std::shared_ptr<Pending> start(std::vector<at::Tensor> tensors) {
    context();  // refuses after shutdown
    prune();
    auto pending = std::make_shared<Pending>();
    pending->keep_alive = std::move(tensors);
    return pending;
  }

  Handle track(std::shared_ptr<Pending> pending) {
    in_flight_.push_back(pending);
    return Handle(std::move(pending));
  }

  // Drops finished collectives (on this Python thread, GIL held). Amortised: it walks the
  // list only once it doubled since the last walk.
  void prune() {
    if (in_flight_.size() < prune_at_) return;
    std::erase_if(in_flight_, [](const std::shared_ptr<Pending>& p) { return p->work.test(); });
    prune_at_ = std::max<std::size_t>(64, 2 * in_flight_.size());
  }

  // One allreduce_average: its Work, and its tensor kept alive until it has been waited for.
  struct Average {
    rf::Work work;
    at::Tensor tensor;
  };
  using Averages = std::unordered_map<std::int64_t, Average>;

  Averages::iterator find_average(std::int64_t handle, const char* what) {
    const auto found = by_handle_.find(handle);
    if (found == by_handle_.end()) {
      throw py::value_error(std::string(what) + ": unknown handle " + std::to_string(handle) +
                            " (already synchronized?)");
    }
    return found;
  }

  std::unique_ptr<rf::Context> context_;
  // allreduce_average's collectives by handle, until waited for (their tensors stay alive
  // until then, as in_flight_ keeps the others', and are dropped on a Python thread).
  Averages by_handle_;
  rf::Engine* engine_ = nullptr;
  std::vector<std::shared_ptr<Pending>> in_flight_;
  std::size_t prune_at_ = 64;
};

// Blocking collectives of the Context (no engine), GIL released while they run.
void context_allreduce(Session& s, const at::Tensor& tensor, const std::string& op) {
  const auto view = view_of(tensor, "allreduce", s.rank());
  const auto rop = reduce_op(op, s.rank());
  py::gil_scoped_release no_gil;
  s.context().allreduce(view.data, view.numel(), view.dtype, rop);
}

void context_broadcast(Session& s, const at::Tensor& tensor, int root) {
  const auto view = view_of(tensor, "broadcast", s.rank());
  py::gil_scoped_release no_gil;
  s.context().broadcast(view.data, view.numel(), view.dtype, root);
}

void context_barrier(Session& s) {
  auto& context = s.context();
  py::gil_scoped_release no_gil;
  context.barrier();
}

// The two calls ringfuse.torch makes once per gradient per step (allreduce_async_ and its
// synchronize) as plain CPython functions: parsing six arguments through the C API costs a
// fraction of what pybind11's dispatcher does per call (issue 20: Python's cost per enqueued
// tensor). Errors go through the exception translators pybind11 registered, so they reach
// Python as from any other call.
PyObject* raise_current_exception() {
  if (py::detail::apply_exception_translators(
          py::detail::get_local_internals().registered_exception_translators) ||
      py::detail::apply_exception_translators(
          py::detail::get_internals().registered_exception_translators)) {
    return nullptr;
  }
  PyErr_SetString(PyExc_SystemError, "ringfuse: an exception escaped every translator");
  return nullptr;
}

// Calls `body(session, handle)` for a call of `expected` arguments whose first two are a
// Session and a handle; a C++ exception becomes the Python one.
template <typename Body>
PyObject* with_session_and_handle(const char* function, PyObject* const* args,
                                  Py_ssize_t given, Py_ssize_t expected, Body&& body) {
  if (given != expected) {
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", function, expected,
                 given);
    return nullptr;
  }
  try {
    auto& session = py::handle(args[0]).cast<Session&>();
    const long long handle = PyLong_AsLongLong(args[1]);
    if (handle == -1 && PyErr_Occurred() != nullptr) return nullptr;
    return body(session, handle);
  } catch (...) {
    return raise_current_exception();
  }
}

// allreduce_average(session, handle, name, tensor, prescale, postscale): Session's.
PyObject* allreduce_average(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  return with_session_and_handle(
      "allreduce_average", args, nargs, 6, [args](Session& session, long long handle) -> PyObject* {
        Py_ssize_t name_size = 0;
        const char* name = PyUnicode_AsUTF8AndSize(args[2], &name_size);
        if (name == nullptr) return nullptr;
        if (!THPVariable_Check(args[3])) {
          PyErr_SetString(PyExc_TypeError,
                          "allreduce_average(): the tensor is not a torch.Tensor");
          return nullptr;
        }
        const double prescale = PyFloat_AsDouble(args[4]);
        if (prescale == -1.0 && PyErr_Occurred() != nullptr) return nullptr;
        const double postscale = PyFloat_AsDouble(args[5]);
        if (postscale == -1.0 && PyErr_Occurred() != nullptr) return nullptr;
        session.allreduce_average(handle,
                                  std::string(name, static_cast<std::size_t>(name_size)),
                                  THPVariable_Unpack(args[3]), prescale, postscale);
        Py_RETURN_NONE;
      });
}

// wait_average(session, handle) -> the tensor: Session's.
PyObject* wait_average(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  return with_session_and_handle("wait_average", args, nargs, 2,
                                 [](Session& session, long long handle) {
                                   return THPVariable_Wrap(session.wait_average(handle));
                                 });
}

PyMethodDef per_gradient_calls[] = {
    {"allreduce_average", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(
                              &allreduce_average)),
     METH_FASTCALL,
     "allreduce_average(session, handle, name, tensor, prescale, postscale): the global set's "
     "uncompressed average of `tensor` in place, known by `handle`"},
    {"wait_average", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&wait_average)),
     METH_FASTCALL,
     "wait_average(session, handle) -> tensor: waits (GIL released) for allreduce_average's "
     "handle; raises its error"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "Ringfuse's Context and asynchronous engine over torch tensors (no copies)";

  static py::exception<rf::Error> error_type(m, "RingfuseError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const rf::Error& e) {
      // An instance carrying the library's fields, so Python can tell kinds apart.
      py::object instance = py::reinterpret_borrow<py::object>(error_type.ptr())(e.what());
      // "invalid argument" -> "invalid_argument": an identifier-like value to compare with.
      std::string kind(rf::to_string(e.kind()));
      std::replace(kind.begin(), kind.end(), ' ', '_');
      instance.attr("kind") = kind;
      instance.attr("rank") = e.rank();
      instance.attr("peer") = e.peer();
      PyErr_SetObject(error_type.ptr(), instance.ptr());
    }
  });

  py::class_<Handle>(m, "Handle", "One enqueued collective (poll / wait)")
      .def("poll", &Handle::poll, "True once the collective finished; never blocks")
      .def("wait", &Handle::wait, py::arg("timeout_s") = 0.0,
           "Blocks (GIL released) until the collective finished; raises its error")
      .def("gathered", &Handle::gathered, "The tensor an allgather produced, else None")
      .def("outputs", &Handle::outputs, "The tensors a grouped allgather produced")
      .def("output_shape", &Handle::output_shape)
      .def("received_splits", &Handle::received_splits,
           "Uneven alltoall: the rows received from each rank, once completed")
      .def("last_joined_rank", &Handle::last_joined_rank,
           "join(): the rank that joined last, once completed; else -1");

  py::class_<Session>(m, "Session", "ringfuse::init(): this rank's Context and engine")
      .def(py::init<const std::optional<std::string>&>(), py::arg("match") = py::none())
      .def("close", &Session::close)
      .def_property_readonly("closed", &Session::closed)
      .def_property_readonly("rank", [](const Session& s) { return s.context().rank(); })
      .def_property_readonly("size", [](const Session& s) { return s.context().size(); })
      .def_property_readonly("local_rank",
                             [](const Session& s) { return s.context().local_rank(); })
      .def_property_readonly("local_size",
                             [](const Session& s) { return s.context().local_size(); })
      .def_property_readonly("cross_rank",
                             [](const Session& s) { return s.context().world().cross_rank; })
      .def_property_readonly("cross_size",
                             [](const Session& s) { return s.context().world().cross_size; })
      .def_property_readonly("fusion_threshold", [](const Session& s) {
        return s.engine().config().fusion_threshold;
      })
      .def("allreduce", &Session::allreduce, py::arg("name"), py::arg("tensor"), py::arg("op"),
           py::arg("prescale") = 1.0, py::arg("postscale") = 1.0,
           py::arg("compression") = "none", py::arg("process_set") = 0)
      .def("poll_average", &Session::poll_average, py::arg("handle"),
           "True once allreduce_average's handle finished; never blocks")
      .def("grouped_allreduce", &Session::grouped_allreduce, py::arg("name"),
           py::arg("tensors"), py::arg("op"), py::arg("prescale") = 1.0,
           py::arg("postscale") = 1.0, py::arg("compression") = "none",
           py::arg("process_set") = 0)
      .def("allgather", &Session::allgather, py::arg("name"), py::arg("input"),
           py::arg("process_set") = 0)
      .def("broadcast", &Session::broadcast, py::arg("name"), py::arg("tensor"),
           py::arg("root"), py::arg("process_set") = 0)
      .def("alltoall", &Session::alltoall, py::arg("name"), py::arg("input"), py::arg("output"),
           py::arg("process_set") = 0)
      .def("alltoallv", &Session::alltoallv, py::arg("name"), py::arg("input"),
           py::arg("splits"), py::arg("process_set") = 0)
      .def("grouped_allgather", &Session::grouped_allgather, py::arg("name"),
           py::arg("inputs"), py::arg("process_set") = 0)
      .def("reducescatter_uneven", &Session::reducescatter_uneven, py::arg("name"),
           py::arg("input"), py::arg("op"), py::arg("process_set") = 0)
      .def("grouped_reducescatter", &Session::grouped_reducescatter, py::arg("name"),
           py::arg("inputs"), py::arg("outputs"), py::arg("op"), py::arg("process_set") = 0)
      .def("start_timeline", &Session::start_timeline, py::arg("path"),
           py::arg("mark_cycles") = false)
      .def("stop_timeline", &Session::stop_timeline)
      .def_property_readonly("match", &Session::match)
      .def("reducescatter", &Session::reducescatter, py::arg("name"), py::arg("input"),
           py::arg("output"), py::arg("op"), py::arg("process_set") = 0)
      .def("barrier", &Session::barrier, py::arg("name") = "barrier", py::arg("process_set") = 0)
      .def("join", &Session::join)
      .def("add_process_set", &Session::add_process_set, py::arg("ranks"),
           "Registers a process set (collective over every rank); returns its id")
      .def("remove_process_set", &Session::remove_process_set, py::arg("id"),
           "Removes a process set (collective over every rank)")
      .def("process_set_ranks", &Session::process_set_ranks, py::arg("id"))
      .def("flush", &Session::flush, py::arg("process_set") = 0,
           "Starts a negotiation cycle now on the engine of the process set (0: global); "
           "ends a hold")
      .def("hold", &Session::hold, py::arg("process_set") = 0,
           "What is enqueued on the process set until flush() is negotiated together "
           "(a hold flush() does not end lapses after 1 s)")
      .def("stats", &Session::stats)
      .def("in_flight", &Session::in_flight)
      .def("step_from_cpp", &Session::step_from_cpp, py::arg("names"), py::arg("tensors"),
           py::arg("op"),
           "perf: the same all-reduce step from C++ (enqueue each by name, wait for all); "
           "returns (enqueue s, step s)")
      .def("context_allreduce", &context_allreduce, py::arg("tensor"), py::arg("op"))
      .def("context_broadcast", &context_broadcast, py::arg("tensor"), py::arg("root"))
      .def("context_barrier", &context_barrier);

  m.attr("with_cuda") =
#ifdef RINGFUSE_PY_HAVE_NCCL
      true;
#else
      false;
#endif
  if (PyModule_AddFunctions(m.ptr(), per_gradient_calls) != 0) throw py::error_already_set();
}
