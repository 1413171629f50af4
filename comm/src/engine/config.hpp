// The engine's effective configuration, logged once by rank 0 with where each value came from.
#pragma once

#include "core/environment.hpp"
#include "ringfuse/engine.hpp"

namespace ringfuse::engine {

/// "RINGFUSE_FUSION_THRESHOLD=128M (default), RINGFUSE_CYCLE_TIME_MS=2 (environment), ...":
/// every engine row of core/tunables.hpp's table, spelled as its variable takes it.
std::string describe_config(const EngineConfig& config, const core::EnvLookup& env);

}  // namespace ringfuse::engine
