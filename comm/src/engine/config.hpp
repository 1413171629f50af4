// The engine's effective configuration, logged once by rank 0 with where each value came from.
#pragma once

#include "core/environment.hpp"
#include "ringfuse/engine.hpp"

namespace ringfuse::engine {

/// "fusion threshold 134217728 B (default), cycle time 5 ms (RINGFUSE_CYCLE_TIME_MS), ..."
std::string describe_config(const EngineConfig& config, const core::EnvLookup& env);

}  // namespace ringfuse::engine
