#include "tunables.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <set>

#include "core/environment.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

struct Tunable {
  const char* flag;
  const char* variable;
  std::string default_text;
  const char* help;
};

std::vector<Tunable> table() {
  const ringfuse::Options defaults{};
  const auto& engine = defaults.engine;
  return {
      {"--algo", "RINGFUSE_ALGO", "auto", "all-reduce algorithm: auto|ring|tree|rhd"},
      {"--transport", "RINGFUSE_TRANSPORT", "auto",
       "data path between ranks: auto (shared memory inside a host)|tcp|shm"},
      {"--hierarchical", "RINGFUSE_HIERARCHICAL", "auto",
       "two-level all-reduce across hosts: auto (>= 64 KiB when ranks span hosts)|1|0"},
      {"--backend", "RINGFUSE_BACKEND", "auto",
       "collective backend: auto|native|mpi (plain mpirun only)|nccl (CUDA buffers)"},
      {"--timeout", "RINGFUSE_TIMEOUT_S", fmt::format("{}", defaults.op_timeout.count() / 1000.0),
       "seconds a collective may wait without progress"},
      {"--fusion-threshold", "RINGFUSE_FUSION_THRESHOLD",
       fmt::format("{}M", engine.fusion_threshold >> 20), "fusion buffer bytes (K/M/G suffix)"},
      {"--fusion-inplace-min", "RINGFUSE_FUSION_INPLACE_MIN",
       fmt::format("{}K", engine.fusion_inplace_min >> 10),
       "all-reduces this large skip the fusion buffer (K/M/G suffix)"},
      {"--fusion-shm", "RINGFUSE_FUSION_SHM", engine.fusion_shared_memory ? "1" : "0",
       "fusion buffer in shared memory when every rank is on one host: 1|0"},
      {"--cycle-time-ms", "RINGFUSE_CYCLE_TIME_MS",
       fmt::format("{}", engine.cycle_time.count() / 1000.0), "engine cycle time, ms"},
      {"--cache-capacity", "RINGFUSE_CACHE_CAPACITY", fmt::format("{}", engine.cache_capacity),
       "response cache entries (0 disables)"},
      {"--stall-timeout", "RINGFUSE_STALL_TIMEOUT_S",
       fmt::format("{}", engine.stall_warning.count() / 1000.0),
       "seconds before a stalled tensor is reported"},
      {"--stall-abort", "RINGFUSE_STALL_ABORT_S",
       fmt::format("{}", engine.stall_abort.count() / 1000.0),
       "seconds before a stalled tensor aborts the job"},
      {"--timeline", "RINGFUSE_TIMELINE", "(none)", "write the engine's timeline to this file"},
      {"--log-level", "RINGFUSE_LOG_LEVEL", "info",
       "trace|debug|info|warn|error|critical|off"},
  };
}

}  // namespace

void Tunables::add_to(CLI::App& app) {
  for (const auto& t : table()) {
    const std::string variable = t.variable;
    app.add_option_function<std::string>(
           t.flag, [this, variable](const std::string& value) { values_[variable] = value; },
           fmt::format("{} (sets {}; default {})", t.help, t.variable, t.default_text))
        ->type_name("VALUE")
        ->group("Tunables (for every rank)");
  }
}

std::map<std::string, std::string> Tunables::variables() const {
  // Same parser as ringfuse::init(), so a bad value fails here, before any rank starts.
  const core::EnvLookup lookup = [this](const std::string& name) -> std::optional<std::string> {
    const auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  };
  core::parse_options(lookup);
  if (const auto level = values_.find("RINGFUSE_LOG_LEVEL"); level != values_.end()) {
    static const std::set<std::string> levels{"trace", "debug", "info",    "warn",
                                              "error", "critical", "off"};
    if (!levels.contains(level->second)) {
      throw Error(ErrorKind::invalid_config,
                  "--log-level '" + level->second +
                      "' is not one of trace, debug, info, warn, error, critical, off");
    }
  }
  return values_;
}

}  // namespace ringfuse::launcher
