#include "core/horovod_variables.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include <fmt/format.h>

#include "core/tunables.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::core {
namespace {

std::optional<std::string> same(const std::string& value) { return value; }

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// Horovod's levels are TRACE, DEBUG, INFO, WARNING, ERROR, FATAL, in any case.
std::optional<std::string> log_level(const std::string& value) {
  const std::string level = lower(value);
  if (level == "warning") return "warn";
  if (level == "fatal") return "critical";
  return level;
}

// Horovod reads a switch as an integer: anything above 0 is on.
std::optional<std::string> switch_value(const std::string& value) {
  std::size_t used = 0;
  try {
    return std::stol(value, &used) > 0 && used == value.size() ? "1" : "0";
  } catch (const std::exception&) {
    return value;  // refused by the RINGFUSE_* row, naming the Horovod variable
  }
}

// DYNAMIC: Horovod opens no file until hvd.start_timeline(), as Ringfuse does unset.
std::optional<std::string> timeline(const std::string& value) {
  if (value == "DYNAMIC") return std::nullopt;
  return value;
}

// 0 means "never" to Horovod. Ringfuse always ends a stall in the end (never a silent hang):
// its own limit, RINGFUSE_STALL_ABORT_S, stays.
std::optional<std::string> stall_shutdown(const std::string& value) {
  if (value == "0") return std::nullopt;
  return value;
}

constexpr std::array<HorovodVariable, 9> kHorovodVariables{{
    {"HOROVOD_FUSION_THRESHOLD", "RINGFUSE_FUSION_THRESHOLD", same},
    {"HOROVOD_CYCLE_TIME", "RINGFUSE_CYCLE_TIME_MS", same},
    {"HOROVOD_CACHE_CAPACITY", "RINGFUSE_CACHE_CAPACITY", same},
    {"HOROVOD_TIMELINE", "RINGFUSE_TIMELINE", timeline},
    {"HOROVOD_TIMELINE_MARK_CYCLES", "RINGFUSE_TIMELINE_MARK_CYCLES", switch_value},
    {"HOROVOD_STALL_CHECK_TIME_SECONDS", "RINGFUSE_STALL_TIMEOUT_S", same},
    {"HOROVOD_STALL_SHUTDOWN_TIME_SECONDS", "RINGFUSE_STALL_ABORT_S", stall_shutdown},
    {"HOROVOD_HIERARCHICAL_ALLREDUCE", "RINGFUSE_HIERARCHICAL", switch_value},
    {"HOROVOD_LOG_LEVEL", "RINGFUSE_LOG_LEVEL", log_level},
}};

const HorovodVariable* standing_for(std::string_view ringfuse) {
  const auto it = std::find_if(kHorovodVariables.begin(), kHorovodVariables.end(),
                               [&](const HorovodVariable& row) { return row.ringfuse == ringfuse; });
  return it == kHorovodVariables.end() ? nullptr : &*it;
}

// The RINGFUSE_* value `row`'s Horovod variable gives in `env`, checked by the RINGFUSE_*
// variable's own parser, so that an error names the variable the user set.
std::optional<std::string> from_horovod(const HorovodVariable& row, const EnvLookup& env,
                                        Options& parsed) {
  const std::string horovod(row.horovod);
  const auto value = env(horovod);
  if (!value) return std::nullopt;
  auto translated = row.translate(*value);
  if (!translated) return std::nullopt;
  if (const auto want = find_tunable(row.ringfuse)->parse(*translated, parsed)) {
    throw Error(ErrorKind::invalid_config,
                fmt::format("environment variable {}='{}' (Horovod's name for {}) is invalid: "
                            "expected {}",
                            horovod, *value, row.ringfuse, *want));
  }
  return translated;
}

// Horovod never shuts a stall down unless told to, so its stall check may be set beyond
// Ringfuse's default abort (300 s), which must not come before the warning: the abort then
// moves to the warning's time.
std::optional<std::string> stall_abort_after_horovod_check(const EnvLookup& env) {
  if (env("RINGFUSE_STALL_TIMEOUT_S")) return std::nullopt;
  Options parsed;
  const auto check = from_horovod(*standing_for("RINGFUSE_STALL_TIMEOUT_S"), env, parsed);
  if (!check || parsed.engine.stall_warning <= Options{}.engine.stall_abort) return std::nullopt;
  return check;
}

}  // namespace

std::span<const HorovodVariable> horovod_variables() { return kHorovodVariables; }

EnvLookup with_horovod_variables(EnvLookup env) {
  return [env = std::move(env)](const std::string& name) -> std::optional<std::string> {
    if (auto value = env(name)) return value;
    const HorovodVariable* row = standing_for(name);
    if (row == nullptr) return std::nullopt;
    Options parsed;
    if (auto value = from_horovod(*row, env, parsed)) return value;
    if (name == "RINGFUSE_STALL_ABORT_S") return stall_abort_after_horovod_check(env);
    return std::nullopt;
  };
}

std::vector<std::string> horovod_variables_read(const EnvLookup& env) {
  std::vector<std::string> read;
  const EnvLookup answered = with_horovod_variables(env);
  for (const auto& row : kHorovodVariables) {
    const std::string ringfuse(row.ringfuse);
    if (env(ringfuse)) continue;
    if (const auto value = answered(ringfuse)) {
      const std::string horovod(row.horovod);
      read.push_back(env(horovod) ? fmt::format("{}='{}' as {}={}", horovod, *env(horovod),
                                                ringfuse, *value)
                                  : fmt::format("{}={} (not below HOROVOD_STALL_CHECK_TIME_"
                                                "SECONDS)",
                                                ringfuse, *value));
    }
  }
  return read;
}

std::vector<std::string> horovod_variables_not_honoured(const EnvLookup& env) {
  std::vector<std::string> found;
  for (const auto& row : kHorovodVariables) {
    const std::string horovod(row.horovod);
    const std::string ringfuse(row.ringfuse);
    const auto theirs = env(horovod);
    const auto ours = env(ringfuse);
    if (theirs && ours) {
      found.push_back(fmt::format("{}='{}' is not used: {}='{}' is set and wins", horovod,
                                  *theirs, ringfuse, *ours));
    }
  }
  if (const auto value = env("HOROVOD_STALL_SHUTDOWN_TIME_SECONDS");
      value && *value == "0" && !env("RINGFUSE_STALL_ABORT_S")) {
    found.push_back(
        "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS=0 (never) is not honoured: a stalled collective "
        "still fails on every rank after RINGFUSE_STALL_ABORT_S (300 s unless set)");
  }
  if (const auto value = env("HOROVOD_AUTOTUNE"); value && *switch_value(*value) == "1") {
    found.push_back(
        "HOROVOD_AUTOTUNE is not honoured: ringfuse has no autotuner; set "
        "RINGFUSE_FUSION_THRESHOLD and RINGFUSE_CYCLE_TIME_MS (or their Horovod names) instead");
  }
  if (const auto value = env("HOROVOD_STALL_CHECK_DISABLE"); value && *switch_value(*value) == "1") {
    found.push_back(
        "HOROVOD_STALL_CHECK_DISABLE is not honoured: stalled collectives are still reported "
        "after RINGFUSE_STALL_TIMEOUT_S (60 s unless set)");
  }
  return found;
}

}  // namespace ringfuse::core
