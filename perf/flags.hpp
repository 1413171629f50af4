// ringfuse-perf's command line: nccl-tests' flags plus --algo, --backend, --peers, --json.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "collective.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/engine.hpp"
#include "ringfuse/types.hpp"

namespace ringfuse::perf {

/// How the Open MPI peer's malloc configuration is handled (DESIGN.md §3: its large all-reduce
/// collapses from page faults on fresh temporaries unless glibc keeps freed memory).
enum class MallocTuning : std::uint8_t {
  both,  // measure peers as the process environment says, then again with mallopt() tuning
  env,   // re-exec the whole benchmark under MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296
  off,   // only the environment this process was started with
};

struct PerfOptions {
  Collective collective = Collective::allreduce;
  std::uint64_t min_bytes = 32ULL << 20;  // nccl-tests' defaults for -b/-e/-f
  std::uint64_t max_bytes = 32ULL << 20;
  std::uint64_t step_factor = 2;
  int iters = 20;
  int warmup = 5;
  bool check = true;
  DataType type = DataType::f32;
  ReduceOp op = ReduceOp::sum;
  int root = 0;
  Algorithm algo = Algorithm::automatic;
  std::string backend;  // native | mpi | nccl; parse_flags fills in the --device's default
  std::vector<std::string> peers;  // "mpi", "gloo", "nccl"
  Device device = Device::cpu;     // --device: where the measured buffers live
  MallocTuning malloc_tuning = MallocTuning::both;
  std::string json_path;
  /// --split COLOR_EXPR (perf/split_color.hpp): measure ours on the child Context of each
  /// rank's color instead of the world; empty: the world.
  std::string split;
  // `ringfuse-perf fusion` (perf/fusion_sweep.hpp) instead of a collective sweep.
  bool fusion = false;
  std::string model = "resnet50";  // --model, fusion only
  /// --modes, fusion only: the rows to measure (empty: all), e.g. just "fused" to profile it.
  std::vector<std::string> fusion_modes;
  /// --enqueue, fusion only: how the fused row hands each tensor to the engine: "view"
  /// (Engine::allreduce_view over names and views kept from step to step) or "copy"
  /// (Engine::allreduce with a copy of the name and shape, as before allreduce_view existed).
  std::string fusion_enqueue = "view";
  /// --order, fusion only: "interleaved" (each timed round runs every mode once, the order
  /// alternating, so a disturbance of a shared machine falls on all modes alike) or
  /// "sequential" (each mode's iterations together, one mode after the other).
  std::string fusion_order = "interleaved";
  // `ringfuse-perf sendrecv` (perf/sendrecv.hpp): point-to-point latency and bandwidth.
  bool sendrecv = false;
};

struct ParsedFlags {
  std::optional<PerfOptions> options;  // set when the benchmark should run
  int exit_code = 0;                   // otherwise: exit with this (0 after --help)
};

/// Parses and validates argv; prints usage or a one-line error naming the flag on failure.
ParsedFlags parse_flags(int argc, char** argv);

/// What --backend (and --device) ask of the Context: nothing (RINGFUSE_BACKEND decides) for
/// native on host memory; native with --device cuda stages GPU buffers through host memory.
std::optional<BackendKind> backend_override(const PerfOptions& options);

std::string_view to_string(MallocTuning tuning);

}  // namespace ringfuse::perf
