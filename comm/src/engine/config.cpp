#include "engine/config.hpp"

#include <fmt/format.h>

namespace ringfuse::engine {

std::string describe_config(const EngineConfig& config, const core::EnvLookup& env) {
  const auto source = [&](const char* name) {
    return env(name) ? std::string(name) : std::string("default");
  };
  return fmt::format(
      "fusion threshold {} B ({}), cycle time {} ms ({}), cache capacity {} ({}), fusion "
      "look-ahead {} ({}), in place from {} B ({}), shared memory {} ({}), stall warning {} s ({}), stall abort {} s ({}), timeline {} ({})",
      config.fusion_threshold, source("RINGFUSE_FUSION_THRESHOLD"),
      config.cycle_time.count() / 1000.0, source("RINGFUSE_CYCLE_TIME_MS"),
      config.cache_capacity, source("RINGFUSE_CACHE_CAPACITY"), config.fusion_lookahead,
      source("RINGFUSE_FUSION_LOOKAHEAD"), config.fusion_inplace_min,
      source("RINGFUSE_FUSION_INPLACE_MIN"), config.fusion_shared_memory ? "on" : "off",
      source("RINGFUSE_FUSION_SHM"), config.stall_warning.count() / 1000.0,
      source("RINGFUSE_STALL_TIMEOUT_S"), config.stall_abort.count() / 1000.0,
      source("RINGFUSE_STALL_ABORT_S"),
      config.timeline_path.empty() ? std::string("off") : config.timeline_path,
      source("RINGFUSE_TIMELINE"));
}

}  // namespace ringfuse::engine
