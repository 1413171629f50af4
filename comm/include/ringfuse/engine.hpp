// The asynchronous engine (Horovod's model): callers enqueue named tensors and get a Work
// handle; a background thread negotiates readiness between ranks, fuses small all-reduces into
// one buffer, runs the collectives and completes the handles.
//
//   auto& engine = ctx->engine();                    // collective: every rank calls it once
//   ringfuse::TensorView grad{ptr, ringfuse::DataType::f32, {1024, 512}};
//   auto work = engine.allreduce("layer1.weight.grad", grad, {.op = ringfuse::ReduceOp::avg});
//   work.wait();                                     // throws ringfuse::Error on failure
//
// Matching (EngineConfig::match, RINGFUSE_MATCH):
// - sequence (the default): every rank must enqueue the same collectives in the same order:
//   the i-th collective of every rank is matched with the i-th of every other and must agree
//   on name, dtype, shape, operator and root.
// - name (Horovod's semantics): collectives are matched by name, so ranks may enqueue them in
//   different orders; a collective runs once every rank (that has not joined) enqueued its
//   name, and whatever is ready on every rank is fused and run in one order agreed by rank 0.
//   Enqueueing a name that is still pending on this rank is refused at once (invalid_argument).
// Either way a mismatch (dtype, shape, operator, root) fails that collective on every rank
// with one message naming which ranks sent what, and the engine stays usable for the next one;
// a rank that stops submitting is named, with the names it has not submitted, by the stall
// inspector.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ringfuse/error.hpp"
#include "ringfuse/types.hpp"

namespace ringfuse {

enum class Device : std::uint8_t { cpu, cuda };

/// A view of a caller-owned tensor: nothing is copied, the memory must stay valid until the
/// Work completes. `shape` may be empty for a scalar.
///
/// CUDA tensors (device = cuda) need a build with CUDA and NCCL, and must live on this rank's
/// GPU: cuda:(local rank modulo the visible devices). The engine packs them into a fusion
/// buffer on that GPU with its own kernels and runs them on its own NCCL communicator (with
/// RINGFUSE_BACKEND=native|mpi: staged through pinned host memory). Its device work starts
/// after what callers have queued on the legacy default stream by the time the collective
/// runs, so a tensor produced on another stream must be synchronised before it is enqueued.
/// When the Work completes, the device work is finished and the result is in the tensor.
struct TensorView {
  void* data = nullptr;
  DataType dtype = DataType::f32;
  std::vector<std::int64_t> shape;
  Device device = Device::cpu;
  int device_index = 0;  // CUDA: the ordinal of the GPU `data` is on

  std::size_t numel() const;
  std::size_t bytes() const { return numel() * element_size(dtype); }
};

/// Wire compression of floating-point all-reduces (f32/f64 travel as f16 or bf16).
enum class Compression : std::uint8_t { none, fp16, bf16 };

struct AllreduceOptions {
  ReduceOp op = ReduceOp::sum;
  // Integer tensors are scaled in f64 and truncated toward zero (Horovod's rule), an average
  // being divided before the postscale; bool tensors take no scale, nor avg.
  double prescale = 1.0;   // multiplied into the input before the reduction
  double postscale = 1.0;  // multiplied into the result; avg adds 1/size
  Compression compression = Compression::none;
};

/// Called on the engine thread with the output shape of an allgather; returns memory for
/// numel(shape) elements of the input's dtype (on the input's device), valid until the Work
/// completes.
using OutputAllocator = std::function<void*(const std::vector<std::int64_t>& shape)>;
/// The same for one tensor of a grouped collective: `index` is its place in the group.
using GroupedOutputAllocator =
    std::function<void*(std::size_t index, const std::vector<std::int64_t>& shape)>;

namespace engine {
struct WorkState;
}

/// Handle to one enqueued collective (c10d's Work). Cheap to copy; all copies share state.
class Work {
 public:
  Work() = default;
  explicit Work(std::shared_ptr<engine::WorkState> state) : state_(std::move(state)) {}

  /// True once the collective finished, successfully or not. Never blocks.
  bool test() const;
  /// Blocks until the collective finishes; throws its ringfuse::Error if it failed, or an
  /// Error of kind timeout when `timeout` passes first (the collective keeps running).
  void wait(std::chrono::milliseconds timeout = std::chrono::minutes(10)) const;
  /// The same, but says a timeout by returning false instead of throwing, so that a caller
  /// waiting in slices cannot take a slice that ran out as the collective finished for the
  /// collective's own error. True once it finished; throws its error if it failed.
  bool wait_for(std::chrono::milliseconds timeout) const;
  /// Runs `callback` once the collective finished (at once, on this thread, if it already
  /// has; else on the engine thread): nullptr for success, else the error.
  void on_complete(std::function<void(const Error*)> callback) const;
  /// The shape an allgather (or an uneven alltoall or reducescatter) produced: empty
  /// otherwise, or before completion; for a grouped allgather, the last tensor's.
  std::vector<std::int64_t> output_shape() const;
  /// Uneven alltoall: the rows (dimension 0) received from each rank, in rank order, once the
  /// Work completed; empty otherwise.
  std::vector<std::int64_t> received_splits() const;
  /// join(): the rank that joined last, once the Work completed (Horovod's join() returns
  /// it); -1 before that, and for every other collective.
  int last_joined_rank() const;
  /// recv(): the rank the message came from, once the Work completed; -1 otherwise.
  int source_rank() const;

 private:
  std::shared_ptr<engine::WorkState> state_;
};

/// How the engine pairs up the ranks' collectives (see the top of this file).
enum class MatchMode : std::uint8_t { sequence, name };

/// Tunables, read from the environment once by init() (see README "Engine").
struct EngineConfig {
  MatchMode match = MatchMode::sequence;                      // RINGFUSE_MATCH
  std::size_t fusion_threshold = std::size_t{128} << 20;     // RINGFUSE_FUSION_THRESHOLD
  std::chrono::microseconds cycle_time{5'000};                // RINGFUSE_CYCLE_TIME_MS
  std::size_t cache_capacity = 1024;                          // RINGFUSE_CACHE_CAPACITY
  std::string timeline_path;                                  // RINGFUSE_TIMELINE
  bool timeline_mark_cycles = false;                          // RINGFUSE_TIMELINE_MARK_CYCLES
  std::chrono::milliseconds stall_warning{60'000};            // RINGFUSE_STALL_TIMEOUT_S
  std::chrono::milliseconds stall_abort{300'000};             // RINGFUSE_STALL_ABORT_S
  std::size_t fusion_lookahead = 64;                          // RINGFUSE_FUSION_LOOKAHEAD
  /// All-reduces of at least this many bytes skip the fusion buffer: copying them in and out
  /// costs more than the separate call it would save.
  std::size_t fusion_inplace_min = std::size_t{1} << 20;      // RINGFUSE_FUSION_INPLACE_MIN
  /// With every rank on one host (shared-memory transport): the fusion buffer lives in shared
  /// memory and fused all-reduces of 256 KiB and more read the peers' buffers in place, with
  /// no copy into the rings. Off by default: on the machines measured so far the rings'
  /// pipelined copies are faster below 64 MiB (perf/RESULTS.md).
  bool fusion_shared_memory = false;                          // RINGFUSE_FUSION_SHM
};

/// Counters, for tests and tuning.
struct EngineStats {
  std::uint64_t cycles = 0;           // negotiation cycles that carried at least one request
  std::uint64_t fast_path_cycles = 0; // of those, cycles negotiated by cache index alone
  std::uint64_t cache_hits = 0;       // collectives negotiated through the response cache
  std::uint64_t cache_misses = 0;     // collectives negotiated with full fingerprints
  std::uint64_t cache_evictions = 0;
  std::uint64_t collectives = 0;      // backend calls made by the engine
  std::uint64_t fused_tensors = 0;    // tensors run with others in one collective (packed in
                                      // a fusion buffer, or all-reduced in place over pieces)
};

class Engine {
 public:
  virtual ~Engine() = default;

  /// In place: every rank ends with the reduction of every rank's tensor.
  virtual Work allreduce(std::string name, TensorView tensor, AllreduceOptions options = {}) = 0;
  /// allreduce() for a caller that keeps its tensors' names and views from step to step (a
  /// training loop, a framework binding over its own strings): `name` and `tensor` are only
  /// read during the call, so the caller copies nothing, and the engine copies them into
  /// memory it reuses from one step to the next: once it has seen a step, enqueueing
  /// allocates nothing per tensor (allreduce() costs two allocations when the caller copies
  /// its name and shape into the arguments, as it must to keep them). The data must stay
  /// valid until the Work completes, as for allreduce().
  virtual Work allreduce_view(std::string_view name, const TensorView& tensor,
                              AllreduceOptions options = {}) {
    return allreduce(std::string(name), tensor, options);
  }
  /// Several tensors negotiated and completed together (one Work); names are name.0, name.1...
  virtual Work grouped_allreduce(std::string name, std::vector<TensorView> tensors,
                                 AllreduceOptions options = {}) = 0;
  /// Concatenates every rank's input along dimension 0 (which may differ between ranks: an
  /// allgatherv); the output comes from `allocate`.
  virtual Work allgather(std::string name, TensorView input, OutputAllocator allocate) = 0;
  /// In place: root's tensor is copied to every rank.
  virtual Work broadcast(std::string name, TensorView tensor, int root) = 0;
  /// Equal splits along dimension 0 (divisible by the world size); output has input's shape.
  virtual Work alltoall(std::string name, TensorView input, TensorView output) = 0;
  /// Uneven splits: this rank sends `splits[j]` rows (dimension 0) of `input` to rank j, in
  /// order (size() entries summing to dimension 0; ranks may differ). The output, from
  /// `allocate`, holds the rows every rank sent to this one, in rank order; the Work's
  /// received_splits() says how many came from each.
  virtual Work alltoall(std::string name, TensorView input, std::vector<std::int64_t> splits,
                        OutputAllocator allocate) = 0;
  /// input holds size() blocks of output.numel() elements; rank r gets reduced block r.
  virtual Work reducescatter(std::string name, TensorView input, TensorView output,
                             ReduceOp op = ReduceOp::sum) = 0;
  /// Uneven splits of dimension 0 (Horovod's): of R rows, rank r gets R / size() rows, one
  /// more when r < R % size(), reduced, into an output from `allocate` (dimension 0 = its
  /// rows). Runs as an all-reduce of the whole input into engine memory, then a copy.
  virtual Work reducescatter(std::string name, TensorView input, OutputAllocator allocate,
                             ReduceOp op = ReduceOp::sum) = 0;
  /// Several allgathers negotiated together, one Work; names name.0, name.1, ...; each
  /// output comes from `allocate(index, shape)`. Allgathers of one dtype released together
  /// (these, and any others) travel in one allgatherv, up to the fusion threshold.
  virtual Work grouped_allgather(std::string name, std::vector<TensorView> inputs,
                                 GroupedOutputAllocator allocate) = 0;
  /// Several reducescatters (as reducescatter() above) negotiated together, one Work; names
  /// name.0, name.1, ...; inputs[i] and outputs[i] pair up. Those of one dtype and operator
  /// released together travel in one reducescatter, up to the fusion threshold.
  virtual Work grouped_reducescatter(std::string name, std::vector<TensorView> inputs,
                                     std::vector<TensorView> outputs,
                                     ReduceOp op = ReduceOp::sum) = 0;
  virtual Work barrier(std::string name = "barrier") = 0;
  /// This rank has no more collectives: until every rank has joined, it takes part in the
  /// others' all-reduces with the operator's identity (zeros for sum/avg; avg still divides
  /// by the world size), broadcasts and barriers, and contributes no rows to allgathers.
  /// Completes when every rank has joined (its last_joined_rank() says which joined last);
  /// then the ranks may enqueue again.
  virtual Work join() = 0;
  /// Point-to-point (Context::send/recv through Work handles): no negotiation, no other rank
  /// involved; ordered per (peer, tag); runs on the engine's own point-to-point connections.
  /// The tensor must stay valid until the Work completes; a recv's tensor is the capacity
  /// (a longer message fails the Work with invalid_argument). `peer` of a recv may be
  /// kAnySource (Work::source_rank() says who sent). Host memory only.
  virtual Work send(TensorView tensor, int peer, int tag = 0) = 0;
  virtual Work recv(TensorView tensor, int peer, int tag = 0) = 0;
  /// The requests enqueued from now until flush() belong together (a bucket of gradients,
  /// enqueued one by one): no negotiation cycle takes some of them without the others, even
  /// when the caller is descheduled in between or the cycle timer fires. Cycles still run
  /// (other ranks' requests complete meanwhile). Bounded: a hold that flush() does not end
  /// lapses after one second, and the queue is negotiated as usual.
  virtual void hold() = 0;
  /// Starts a negotiation cycle now instead of waiting for the queue to go quiet; ends a
  /// hold().
  virtual void flush() = 0;

  /// Starts this rank's timeline (Chrome trace / Perfetto JSON) at path_for_rank(path)
  /// ("t.json" -> "t.<rank>.json"), replacing the one open; invalid_config if it is unwritable.
  /// A file that another world's timeline is writing is left alone: "t.<rank>.2.json" instead.
  /// One timeline per rank: every engine of its Contexts (the world's, a child's, a process
  /// set's; RINGFUSE_TIMELINE starts it with the first) writes to it, each child on a process
  /// row of its own, and any of them starts or stops it. `mark_cycles`: "CYCLE_START" marks.
  virtual void start_timeline(const std::string& path, bool mark_cycles = false) = 0;
  /// Closes this rank's timeline (a complete JSON document); nothing if none is open.
  virtual void stop_timeline() = 0;

  virtual EngineStats stats() const = 0;
  virtual const EngineConfig& config() const = 0;
};

}  // namespace ringfuse
