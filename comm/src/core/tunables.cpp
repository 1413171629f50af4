#include "core/tunables.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/common.h>

#include "core/horovod_variables.hpp"
#include "core/host_address.hpp"

namespace ringfuse::core {
namespace {

using Problem = std::optional<std::string>;

// One spelling per value; the first is what the log and --help show.
template <class T>
struct Choice {
  std::string_view name;
  T value;
};

template <class T, std::size_t N>
Problem choose(const std::string& text, const std::array<Choice<T>, N>& choices, T& field,
               std::string_view want) {
  for (const auto& choice : choices) {
    if (text == choice.name) {
      field = choice.value;
      return std::nullopt;
    }
  }
  return std::string(want);
}

template <class T, std::size_t N>
std::string name_of(const std::array<Choice<T>, N>& choices, T value) {
  for (const auto& choice : choices) {
    if (choice.value == value) return std::string(choice.name);
  }
  return "?";
}

constexpr std::array<Choice<Algorithm>, 4> kAlgorithms{{{"auto", Algorithm::automatic},
                                                         {"ring", Algorithm::ring},
                                                         {"tree", Algorithm::tree},
                                                         {"rhd", Algorithm::rhd}}};
constexpr std::array<Choice<TransportKind>, 3> kTransports{
    {{"auto", TransportKind::automatic}, {"tcp", TransportKind::tcp}, {"shm", TransportKind::shm}}};
constexpr std::array<Choice<GroupFailures>, 2> kGroupFailures{
    {{"job", GroupFailures::job}, {"contain", GroupFailures::contain}}};
constexpr std::array<Choice<Hierarchical>, 5> kHierarchical{{{"auto", Hierarchical::automatic},
                                                              {"1", Hierarchical::on},
                                                              {"0", Hierarchical::off},
                                                              {"on", Hierarchical::on},
                                                              {"off", Hierarchical::off}}};
constexpr std::array<Choice<BackendKind>, 4> kBackends{{{"auto", BackendKind::automatic},
                                                         {"native", BackendKind::native},
                                                         {"mpi", BackendKind::mpi},
                                                         {"nccl", BackendKind::nccl}}};
constexpr std::array<Choice<MatchMode>, 2> kMatchModes{
    {{"sequence", MatchMode::sequence}, {"name", MatchMode::name}}};
constexpr std::array<Choice<bool>, 4> kSwitch{
    {{"0", false}, {"1", true}, {"off", false}, {"on", true}}};

std::optional<double> real(const std::string& text) {
  char* end = nullptr;
  const double parsed = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(parsed)) {
    return std::nullopt;
  }
  return parsed;
}

Problem seconds(const std::string& text, std::chrono::milliseconds& field) {
  const auto parsed = real(text);
  if (!parsed || *parsed <= 0 || *parsed > 7 * 24 * 3600) {
    return "a positive number of seconds (at most a week)";
  }
  // Rounded up: a positive value must not become a zero timeout (e.g. 1e-6 s; found by
  // tests/fuzz).
  field = std::chrono::milliseconds(static_cast<long long>(std::ceil(*parsed * 1000)));
  return std::nullopt;
}

std::string show_seconds(std::chrono::milliseconds value) {
  return fmt::format("{}", static_cast<double>(value.count()) / 1000.0);
}

Problem count(const std::string& text, long long max, std::size_t& field, std::string_view want) {
  long long parsed = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || parsed < 0 ||
      parsed > max) {
    return std::string(want);
  }
  field = static_cast<std::size_t>(parsed);
  return std::nullopt;
}

// Bytes, with an optional K/M/G suffix (powers of two), up to 1T.
Problem bytes(const std::string& text, std::size_t& field) {
  std::string digits = text;
  unsigned shift = 0;
  if (!digits.empty()) {
    const char unit = static_cast<char>(std::toupper(static_cast<unsigned char>(digits.back())));
    if (unit == 'K' || unit == 'M' || unit == 'G') {
      shift = unit == 'K' ? 10 : unit == 'M' ? 20 : 30;
      digits.pop_back();
    }
  }
  unsigned long long parsed = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), parsed);
  const unsigned long long limit = (1ull << 40) >> shift;
  if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() ||
      parsed > limit) {
    return "a number of bytes in 0..1T, optionally with a K, M or G suffix";
  }
  field = static_cast<std::size_t>(parsed << shift);
  return std::nullopt;
}

std::string show_bytes(std::size_t value) {
  for (const auto& [shift, unit] : {std::pair{30, 'G'}, std::pair{20, 'M'}, std::pair{10, 'K'}}) {
    if (value != 0 && value % (std::size_t{1} << shift) == 0) {
      return fmt::format("{}{}", value >> shift, unit);
    }
  }
  return fmt::format("{}", value);
}

Problem log_level(const std::string& text, std::string& field) {
  const auto parsed = spdlog::level::from_str(text);
  // from_str answers `off` for anything it does not know.
  if (parsed == spdlog::level::off && text != "off") {
    return "one of trace, debug, info, warn, error, critical, off";
  }
  field = text;
  return std::nullopt;
}

Problem host_address(const std::string& text, std::string& field) {
  auto check = check_this_host_address(text);
  if (!check.address) {
    return "an IPv4 address of this host, or a name that resolves to one: " + check.problem;
  }
  field = std::move(*check.address);
  return std::nullopt;
}

// The rows. Captureless lambdas: each row's parser and display sit next to its name.
const std::array<Tunable, 26> kTunables{{
    {"RINGFUSE_ALGO", "--algo", true, "auto|ring|tree|rhd",
     "all-reduce algorithm (auto: tree up to 32 KiB, rhd up to 1 MiB, ring above; on one "
     "host, through the ranks' own memory from RINGFUSE_CROSS_MEMORY_MIN)", "",
     TunableScope::context,
     [](const std::string& v, Options& o) {
       return choose(v, kAlgorithms, o.algorithm, "one of auto, ring, tree, rhd");
     },
     [](const Options& o) { return name_of(kAlgorithms, o.algorithm); }},
    {"RINGFUSE_TRANSPORT", "--transport", true, "auto|tcp|shm",
     "data path between ranks (auto: shared memory when every rank is on this host, else TCP)",
     "", TunableScope::context,
     [](const std::string& v, Options& o) {
       return choose(v, kTransports, o.transport, "one of auto, tcp, shm");
     },
     [](const Options& o) { return name_of(kTransports, o.transport); }},
    {"RINGFUSE_HIERARCHICAL", "--hierarchical", true, "auto|1|0",
     "two-level all-reduce across hosts (auto: 64 KiB and more, when every host runs as many "
     "ranks)",
     "", TunableScope::context,
     [](const std::string& v, Options& o) {
       return choose(v, kHierarchical, o.hierarchical, "one of auto, 1 (on), 0 (off)");
     },
     [](const Options& o) { return name_of(kHierarchical, o.hierarchical); }},
    {"RINGFUSE_GROUP_FAILURES", "--group-failures", true, "job|contain",
     "what a dead rank does to groups (split, subgroup, process set) it is not in (job: every "
     "group fails fast; contain: groups of live ranks keep working)",
     "", TunableScope::context,
     [](const std::string& v, Options& o) {
       return choose(v, kGroupFailures, o.group_failures, "one of job, contain");
     },
     [](const Options& o) { return name_of(kGroupFailures, o.group_failures); }},
    {"RINGFUSE_BACKEND", "--backend", true, "auto|native|mpi|nccl",
     "backend of the blocking collectives (mpi: plain mpirun only; nccl: CUDA buffers)", "",
     TunableScope::context,
     [](const std::string& v, Options& o) {
       return choose(v, kBackends, o.backend, "one of auto, native, mpi, nccl");
     },
     [](const Options& o) { return name_of(kBackends, o.backend); }},
    {"RINGFUSE_TIMEOUT_S", "--timeout", true, "S",
     "seconds a collective may wait without progress before it fails", "",
     TunableScope::context,
     [](const std::string& v, Options& o) { return seconds(v, o.op_timeout); },
     [](const Options& o) { return show_seconds(o.op_timeout); }},
    {"RINGFUSE_CONNECT_TIMEOUT_S", "--start-timeout", true, "S",
     "seconds for start-up: the ranks' rendezvous and connections (and, with --k8s-service, "
     "discovery and agreement)",
     "", TunableScope::context,
     [](const std::string& v, Options& o) { return seconds(v, o.connect_timeout); },
     [](const Options& o) { return show_seconds(o.connect_timeout); }},
    {"RINGFUSE_HOST_ADDR", "--host-addr", true, "ADDR",
     "IPv4 address (or name) of this host that its ranks advertise to their peers",
     "(the address that reaches the store)", TunableScope::context,
     [](const std::string& v, Options& o) { return host_address(v, o.host_addr); },
     [](const Options& o) { return o.host_addr; }},
    {"RINGFUSE_SOCKETS_PER_PEER", "--sockets-per-peer", true, "N",
     "TCP connections between each pair of ranks; messages of 512 KiB and more are striped "
     "across them (for clouds that cap each TCP flow below the link)",
     "", TunableScope::context,
     [](const std::string& v, Options& o) -> Problem {
       std::size_t parsed = 0;
       if (auto problem = count(v, 16, parsed, "a number of connections in 1..16")) return problem;
       if (parsed == 0) return "a number of connections in 1..16";
       o.sockets_per_peer = static_cast<int>(parsed);
       return std::nullopt;
     },
     [](const Options& o) { return fmt::format("{}", o.sockets_per_peer); }},
    {"RINGFUSE_SHM_LARGE_WAIT", "--shm-large-wait", true, "yield|sleep",
     "how a rank waits in a shared-memory exchange of 256 KiB or more: yield first (yield), "
     "or sleep at once, leaving the core to compute threads until the peer's doorbell wakes "
     "it (sleep; the Python front-ends' default)",
     "yield", TunableScope::context,
     [](const std::string& v, Options& o) -> Problem {
       if (v != "yield" && v != "sleep") return "yield or sleep";
       o.shm_large_waits_sleep = v == "sleep";
       return std::nullopt;
     },
     [](const Options& o) { return std::string(o.shm_large_waits_sleep ? "sleep" : "yield"); }},
    {"RINGFUSE_CROSS_MEMORY_MIN", "--cross-memory-min", true, "auto|off|BYTES",
     "all-reduces of at least this many bytes over shared memory read and write the peers' "
     "buffers in place (cross-memory attach), shared out among the ranks that are running "
     "(auto: 64 KiB x ranks^2; off: always through the rings)",
     "auto", TunableScope::context,
     [](const std::string& v, Options& o) -> Problem {
       if (v == "auto" || v == "off") {
         o.cross_memory_min = v == "auto" ? Options::kCrossMemoryAuto : Options::kCrossMemoryOff;
         return std::nullopt;
       }
       std::size_t parsed = 0;
       if (bytes(v, parsed) || parsed == 0) return "auto, off or a number of bytes (K/M/G) > 0";
       o.cross_memory_min = parsed;
       return std::nullopt;
     },
     [](const Options& o) {
       if (o.cross_memory_min == Options::kCrossMemoryAuto) return std::string("auto");
       if (o.cross_memory_min == Options::kCrossMemoryOff) return std::string("off");
       return show_bytes(o.cross_memory_min);
     }},
    {"RINGFUSE_P2P_EAGER_BYTES", "--p2p-eager-bytes", true, "BYTES",
     "point-to-point: messages up to this size (K/M/G suffixes) are sent without waiting for "
     "their receive; larger ones wait for it, then go straight into its buffer",
     "", TunableScope::context,
     [](const std::string& v, Options& o) { return bytes(v, o.p2p_eager_bytes); },
     [](const Options& o) { return show_bytes(o.p2p_eager_bytes); }},
    {"RINGFUSE_P2P_UNEXPECTED_BYTES", "--p2p-unexpected-bytes", true, "BYTES",
     "point-to-point: the most bytes of one sender's messages a rank keeps for receives not "
     "posted yet (K/M/G suffixes); beyond it, small messages also wait for their receive",
     "", TunableScope::context,
     [](const std::string& v, Options& o) { return bytes(v, o.p2p_unexpected_bytes); },
     [](const Options& o) { return show_bytes(o.p2p_unexpected_bytes); }},
    {"RINGFUSE_LOG_LEVEL", "--log-level", true, "LEVEL",
     "log level: trace|debug|info|warn|error|critical|off", "info", TunableScope::context,
     [](const std::string& v, Options& o) { return log_level(v, o.log_level); },
     [](const Options& o) { return o.log_level; }},
    {"RINGFUSE_PROGRESS_FILE", "--health-port", false, "PATH",
     "the record a rank publishes its progress in for the launcher's /metrics (ringfuse-run "
     "--health-port sets it for each rank)",
     "(none)", TunableScope::context,
     [](const std::string& v, Options& o) -> Problem {
       o.progress_file = v;
       return std::nullopt;
     },
     [](const Options& o) { return o.progress_file; }},
    {"RINGFUSE_FUSION_THRESHOLD", "--fusion-threshold", true, "BYTES",
     "engine: fusion buffer bytes, K/M/G suffixes (0 disables fusion)", "", TunableScope::engine,
     [](const std::string& v, Options& o) { return bytes(v, o.engine.fusion_threshold); },
     [](const Options& o) { return show_bytes(o.engine.fusion_threshold); }},
    {"RINGFUSE_FUSION_INPLACE_MIN", "--fusion-inplace-min", true, "BYTES",
     "engine: all-reduces this large run in place, alone, skipping the fusion buffer", "",
     TunableScope::engine,
     [](const std::string& v, Options& o) { return bytes(v, o.engine.fusion_inplace_min); },
     [](const Options& o) { return show_bytes(o.engine.fusion_inplace_min); }},
    {"RINGFUSE_FUSION_LOOKAHEAD", "--fusion-lookahead", true, "N",
     "engine: incompatible requests looked past when filling a fusion buffer", "",
     TunableScope::engine,
     [](const std::string& v, Options& o) {
       return count(v, 1 << 20, o.engine.fusion_lookahead, "a number of requests in 0..1048576");
     },
     [](const Options& o) { return fmt::format("{}", o.engine.fusion_lookahead); }},
    {"RINGFUSE_FUSION_SHM", "--fusion-shm", true, "1|0",
     "engine: fusion buffer in shared memory when every rank is on one host", "",
     TunableScope::engine,
     [](const std::string& v, Options& o) {
       return choose(v, kSwitch, o.engine.fusion_shared_memory, "1 (on) or 0 (off)");
     },
     [](const Options& o) { return name_of(kSwitch, o.engine.fusion_shared_memory); }},
    {"RINGFUSE_CYCLE_TIME_MS", "--cycle-time-ms", true, "MS",
     "engine: longest wait before a negotiation cycle once work is queued", "",
     TunableScope::engine,
     [](const std::string& v, Options& o) -> Problem {
       const auto parsed = real(v);
       if (!parsed || *parsed < 0.05 || *parsed > 10'000) return "milliseconds in 0.05..10000";
       o.engine.cycle_time = std::chrono::microseconds(static_cast<long long>(*parsed * 1000));
       return std::nullopt;
     },
     [](const Options& o) {
       return fmt::format("{}", static_cast<double>(o.engine.cycle_time.count()) / 1000.0);
     }},
    {"RINGFUSE_CACHE_CAPACITY", "--cache-capacity", true, "N",
     "engine: response-cache entries (0 disables the cache)", "", TunableScope::engine,
     [](const std::string& v, Options& o) {
       return count(v, 1 << 20, o.engine.cache_capacity, "a number of entries in 0..1048576");
     },
     [](const Options& o) { return fmt::format("{}", o.engine.cache_capacity); }},
    {"RINGFUSE_STALL_TIMEOUT_S", "--stall-timeout", true, "S",
     "engine: seconds before a stalled collective is reported, naming the missing ranks", "",
     TunableScope::engine,
     [](const std::string& v, Options& o) { return seconds(v, o.engine.stall_warning); },
     [](const Options& o) { return show_seconds(o.engine.stall_warning); }},
    {"RINGFUSE_STALL_ABORT_S", "--stall-abort", true, "S",
     "engine: seconds before a stalled collective fails on every rank", "",
     TunableScope::engine,
     [](const std::string& v, Options& o) { return seconds(v, o.engine.stall_abort); },
     [](const Options& o) { return show_seconds(o.engine.stall_abort); }},
    {"RINGFUSE_MATCH", "--match", true, "sequence|name",
     "engine: how ranks' collectives are paired: sequence (same order on every rank) or name "
     "(Horovod's: any order, a duplicate pending name is refused)",
     "", TunableScope::engine,
     [](const std::string& v, Options& o) {
       return choose(v, kMatchModes, o.engine.match, "one of sequence, name");
     },
     [](const Options& o) { return name_of(kMatchModes, o.engine.match); }},
    {"RINGFUSE_TIMELINE", "--timeline", true, "FILE",
     "engine: Chrome-trace timeline, one file per rank (NAME.<rank>.json)", "(none)",
     TunableScope::engine,
     [](const std::string& v, Options& o) -> Problem {
       o.engine.timeline_path = v;
       return std::nullopt;
     },
     [](const Options& o) { return o.engine.timeline_path; }},
    {"RINGFUSE_TIMELINE_MARK_CYCLES", "--timeline-mark-cycles", true, "1|0",
     "engine: also mark each negotiation cycle in the timeline (CYCLE_START)", "",
     TunableScope::engine,
     [](const std::string& v, Options& o) {
       return choose(v, kSwitch, o.engine.timeline_mark_cycles, "1 (on) or 0 (off)");
     },
     [](const Options& o) { return name_of(kSwitch, o.engine.timeline_mark_cycles); }},
}};

}  // namespace

std::span<const Tunable> tunables() { return kTunables; }

const Tunable* find_tunable(std::string_view variable) {
  const auto it = std::find_if(kTunables.begin(), kTunables.end(),
                               [variable](const Tunable& row) { return row.variable == variable; });
  return it == kTunables.end() ? nullptr : &*it;
}

std::string shown_value(const Tunable& row, const Options& options) {
  std::string value = row.show(options);
  return value.empty() ? std::string(row.when_empty) : value;
}

std::optional<std::string> inconsistency(const Options& options) {
  const auto& engine = options.engine;
  if (engine.stall_abort < engine.stall_warning) {
    return fmt::format("RINGFUSE_STALL_ABORT_S ({} s) is below RINGFUSE_STALL_TIMEOUT_S ({} s); "
                       "the abort limit must not come before the warning",
                       show_seconds(engine.stall_abort), show_seconds(engine.stall_warning));
  }
  return std::nullopt;
}

namespace {

// Where `row`'s effective `value` came from, for describe_tunables.
std::string_view source_of(const Tunable& row, const std::string& value, const EnvLookup& env) {
  if (env(std::string(row.variable))) return "environment";
  if (value == shown_value(row, Options{})) return "default";
  // The Horovod API (ringfuse.torch) honours Horovod's name for the variable.
  for (const auto& horovod : horovod_variables()) {
    if (horovod.ringfuse == row.variable && env(std::string(horovod.horovod))) {
      return horovod.horovod;
    }
  }
  return "set in code";
}

}  // namespace

std::string describe_tunables(const Options& options, const EnvLookup& env, TunableScope scope) {
  std::vector<std::string> parts;
  for (const auto& row : kTunables) {
    if (row.scope != scope) continue;
    const std::string value = shown_value(row, options);
    parts.push_back(fmt::format("{}={} ({})", row.variable, value, source_of(row, value, env)));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace ringfuse::core
