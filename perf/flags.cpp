#include "flags.hpp"

#include <iostream>
#include <map>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "fusion_model.hpp"
#include "ringfuse/error.hpp"
#include "size_parse.hpp"
#include "split_color.hpp"

namespace ringfuse::perf {
namespace {

// CLI11 transforms turn "4K" into "4096" before the uint64 conversion, so the error for a bad
// size names the flag and the accepted spellings.
CLI::Validator size_validator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        const auto parsed = parse_size(value);
        if (!parsed) return fmt::format("'{}' is not a size (e.g. 4096, 4K, 256M, 1G)", value);
        value = std::to_string(*parsed);
        return {};
      },
      "SIZE[K|M|G]");
}

// -d takes our names and nccl-tests' (so its command lines, e.g. `-d float`, carry over).
std::optional<DataType> parse_type_name(const std::string& name) {
  static const std::map<std::string, DataType> nccl_tests_names = {
      {"half", DataType::f16},   {"bfloat16", DataType::bf16}, {"float", DataType::f32},
      {"double", DataType::f64}, {"int8", DataType::i8},       {"uint8", DataType::u8},
      {"int16", DataType::i16},  {"int32", DataType::i32},     {"int", DataType::i32},
      {"int64", DataType::i64},  {"bool", DataType::boolean}};
  if (const auto it = nccl_tests_names.find(name); it != nccl_tests_names.end()) return it->second;
  return parse_data_type(name);
}

/// "sum avg min max prod band bor bxor": every operator, for the help and its error.
std::string operator_names() {
  std::vector<std::string_view> names;
  for (const ReduceOp op : kAllReduceOps) names.push_back(to_string(op));
  return fmt::format("{}", fmt::join(names, " "));
}

std::optional<Algorithm> parse_algorithm(const std::string& name) {
  if (name == "auto") return Algorithm::automatic;
  if (name == "ring") return Algorithm::ring;
  if (name == "tree") return Algorithm::tree;
  if (name == "rhd") return Algorithm::rhd;
  return std::nullopt;
}

}  // namespace

std::optional<BackendKind> backend_override(const PerfOptions& options) {
  if (options.backend == "mpi") return BackendKind::mpi;
  if (options.backend == "nccl") return BackendKind::nccl;
  if (options.device == Device::cuda) return BackendKind::native;  // staged, on purpose
  return std::nullopt;
}

std::string_view to_string(MallocTuning tuning) {
  switch (tuning) {
    case MallocTuning::both: return "both";
    case MallocTuning::env: return "env";
    case MallocTuning::off: return "off";
  }
  return "?";
}

ParsedFlags parse_flags(int argc, char** argv) {
  PerfOptions o;
  CLI::App app{
      "ringfuse-perf: nccl-tests-style sweep of one collective, with Open MPI and Gloo measured "
      "in the same run.\nLaunch with `ringfuse-run -np N ringfuse-perf ...` or "
      "`mpirun -np N ringfuse-perf ...` (needed for --peers mpi)."};
  std::string collective = "allreduce";
  std::string dtype = "f32";
  std::string op = "sum";
  std::string algo = "auto";
  std::string peers;
  std::string malloc_tuning = "both";
  int check = 1;
  app.add_option("collective", collective,
                 "allreduce | broadcast | allgather | reducescatter | alltoall | barrier | fusion "
                 "(a model's gradient all-reduces, fused vs unfused) | sendrecv (point-to-point "
                 "latency and bandwidth between ranks 0 and 1, osu_latency/osu_bw style)")
      ->required();
  app.add_option("-b,--minbytes", o.min_bytes, "smallest size (K/M/G suffixes)")
      ->transform(size_validator())
      ->capture_default_str();
  app.add_option("-e,--maxbytes", o.max_bytes, "largest size (K/M/G suffixes)")
      ->transform(size_validator())
      ->capture_default_str();
  app.add_option("-f,--stepfactor", o.step_factor, "multiply the size by this between rows")
      ->check(CLI::Range(std::uint64_t{2}, std::uint64_t{1} << 20))
      ->capture_default_str();
  app.add_option("-n,--iters", o.iters, "timed iterations per size")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("-w,--warmup_iters", o.warmup, "untimed iterations per size")
      ->check(CLI::Range(0, 1'000'000))
      ->capture_default_str();
  app.add_option("-c,--check", check, "1: verify every result (the `wrong` column), 0: skip")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  app.add_option("-d,--datatype", dtype,
                 "f16 bf16 f32 f64 i8 u8 i16 i32 i64 bool (or nccl-tests' half bfloat16 float "
                 "double int8 uint8 int16 int32 int64)")
      ->capture_default_str();
  app.add_option("-o,--op", op, operator_names() + " (band, bor and bxor: integer and bool types)")
      ->capture_default_str();
  app.add_option("-r,--root", o.root, "broadcast root")->capture_default_str();
  app.add_option("--algo", algo, "all-reduce algorithm of ours: auto ring tree rhd")
      ->capture_default_str();
  app.add_option("--backend", o.backend,
                 "our backend: native, mpi (the library's MPI backend; under mpirun only), or "
                 "nccl (with --device cuda, its default)");
  std::string device = "cpu";
  app.add_option("--device", device,
                 "cpu, or cuda: the buffers on GPU local rank % GPUs (nccl-tests' setting)")
      ->capture_default_str();
  app.add_option("--peers", peers,
                 "comma-separated peers measured in the same run: mpi,gloo (host memory), "
                 "nccl (--device cuda)");
  app.add_option("--peer-malloc-tuning", malloc_tuning,
                 "both: Open MPI as started, then again with glibc tuned through mallopt "
                 "(row mpi+malloc); env: re-exec everything under MALLOC_MMAP_MAX_=0 "
                 "MALLOC_TRIM_THRESHOLD_=4294967296; off: as started only")
      ->capture_default_str();
  app.add_option("--model", o.model,
                 "fusion: resnet50 | bert-base | small1000 (1,000 tensors of 4 KiB) | "
                 "uniform:COUNTxBYTES (e.g. uniform:200x1M)")
      ->capture_default_str();
  app.add_option("--modes", o.fusion_modes,
                 "fusion: only these rows, comma-separated (default: all): single, fused, "
                 "unfused, unfused-no-eng, mpi-per-tensor; e.g. --modes fused to profile it")
      ->delimiter(',')
      ->check(CLI::IsMember({"single", "fused", "unfused", "unfused-no-eng", "mpi-per-tensor"}));
  app.add_option("--enqueue", o.fusion_enqueue,
                 "fusion: how the fused row enqueues each tensor: view = allreduce_view over "
                 "names and views it keeps; copy = allreduce with a copy of each name and shape")
      ->check(CLI::IsMember({"view", "copy"}))
      ->capture_default_str();
  app.add_option("--order", o.fusion_order,
                 "fusion: interleaved = each timed round runs every mode once (order alternating "
                 "round by round), and paired_vs_single is the median of the rounds' ratios; "
                 "sequential = each mode's iterations together, one mode after the other")
      ->check(CLI::IsMember({"interleaved", "sequential"}))
      ->capture_default_str();
  app.add_option("--json", o.json_path, "also write every row to this file (JSON)");
  app.add_option("--split", o.split,
                 "measure ours on a sub-communicator (Context::split) by COLOR_EXPR: host, "
                 "parity, half or mod:K");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return {std::nullopt, app.exit(e)};
  }

  auto fail = [](const std::string& message) {
    std::cerr << "ringfuse-perf: " << message << "\n";
    return ParsedFlags{std::nullopt, 2};
  };
  o.fusion = collective == "fusion";
  o.sendrecv = collective == "sendrecv";
  if (o.fusion) {
    try {
      make_model(o.model);
    } catch (const Error& e) {
      return fail(fmt::format("--model {}: {}", o.model, e.what()));
    }
  }
  const auto parsed_collective =
      o.fusion || o.sendrecv ? std::optional<Collective>(Collective::allreduce)
                             : parse_collective(collective);
  if (!parsed_collective) {
    return fail(fmt::format("unknown collective '{}': expected allreduce, broadcast, allgather, "
                            "reducescatter, alltoall or barrier", collective));
  }
  o.collective = *parsed_collective;
  const auto parsed_type = parse_type_name(dtype);
  if (!parsed_type) return fail(fmt::format("-d {}: unknown type (f16 bf16 f32 f64 i8 u8 i16 i32 i64 bool)", dtype));
  o.type = *parsed_type;
  const auto parsed_op = parse_reduce_op(op);
  if (!parsed_op) return fail(fmt::format("-o {}: unknown operator ({})", op, operator_names()));
  o.op = *parsed_op;
  const auto parsed_algo = parse_algorithm(algo);
  if (!parsed_algo) return fail(fmt::format("--algo {}: expected auto, ring, tree or rhd", algo));
  o.algo = *parsed_algo;
  if (device != "cpu" && device != "cuda") {
    return fail(fmt::format("--device {}: expected cpu or cuda", device));
  }
  o.device = device == "cuda" ? Device::cuda : Device::cpu;
  if (o.backend.empty()) o.backend = o.device == Device::cuda ? "nccl" : "native";
  if (o.backend != "native" && o.backend != "mpi" && o.backend != "nccl") {
    return fail(fmt::format("--backend {}: expected native, mpi or nccl", o.backend));
  }
  if (o.backend == "nccl" && o.device != Device::cuda) {
    return fail("--backend nccl runs GPU buffers: add --device cuda");
  }
  if (o.sendrecv && (o.device == Device::cuda || o.backend != "native")) {
    return fail("sendrecv measures host buffers on the native data plane: drop --device and "
                "--backend");
  }
  if (o.fusion && o.device == Device::cuda) {
    return fail("--device cuda: the fusion benchmark replays host tensors only");
  }
  if (!o.split.empty()) {
    if (auto problem = split_expression_problem(o.split)) {
      return fail(fmt::format("--split {}: {}", o.split, *problem));
    }
    if (!peers.empty() || o.fusion) {
      return fail(fmt::format("--split {}: measures ours on a sub-communicator only; drop {}",
                              o.split, o.fusion ? "the fusion benchmark" : "--peers"));
    }
  }
  if (malloc_tuning == "both") {
    o.malloc_tuning = MallocTuning::both;
  } else if (malloc_tuning == "env") {
    o.malloc_tuning = MallocTuning::env;
  } else if (malloc_tuning == "off") {
    o.malloc_tuning = MallocTuning::off;
  } else {
    return fail(fmt::format("--peer-malloc-tuning {}: expected both, env or off", malloc_tuning));
  }
  if (!peers.empty()) {
    std::size_t start = 0;
    while (start <= peers.size()) {
      const std::size_t comma = std::min(peers.find(',', start), peers.size());
      const std::string peer = peers.substr(start, comma - start);
      if (peer != "mpi" && peer != "gloo" && peer != "nccl") {
        return fail(fmt::format("--peers: unknown peer '{}': expected mpi, gloo or nccl", peer));
      }
      if ((peer == "nccl") != (o.device == Device::cuda)) {
        return fail(fmt::format("--peers {}: {}", peer,
                                peer == "nccl" ? "nccl measures GPU buffers: add --device cuda"
                                               : "measures host buffers, not --device cuda"));
      }
      if (std::find(o.peers.begin(), o.peers.end(), peer) == o.peers.end()) o.peers.push_back(peer);
      start = comma + 1;
    }
  }
  if (o.min_bytes > o.max_bytes) {
    return fail(fmt::format("-b {} is larger than -e {}", o.min_bytes, o.max_bytes));
  }
  o.check = check == 1;
  return {o, 0};
}

}  // namespace ringfuse::perf
