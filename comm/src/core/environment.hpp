// Parsing of the environment contract (DESIGN.md §3) from any variable source, so tests can
// feed a map instead of the process environment.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "ringfuse/context.hpp"

namespace ringfuse::core {

/// Returns the value of a variable, or std::nullopt when it is unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

EnvLookup process_environment();

/// The world described by RINGFUSE_* (preferred), else torchrun's RANK/WORLD_SIZE/MASTER_*,
/// else a world of one. Throws Error(ErrorKind::invalid_config) naming the variable.
WorldSpec parse_world(const EnvLookup& env);

/// RINGFUSE_ALGO, RINGFUSE_TRANSPORT, RINGFUSE_BACKEND, RINGFUSE_HIERARCHICAL, RINGFUSE_TIMEOUT_S,
/// RINGFUSE_CONNECT_TIMEOUT_S, and the engine's below.
Options parse_options(const EnvLookup& env);

/// RINGFUSE_FUSION_THRESHOLD, RINGFUSE_CYCLE_TIME_MS, RINGFUSE_CACHE_CAPACITY,
/// RINGFUSE_TIMELINE, RINGFUSE_STALL_TIMEOUT_S, RINGFUSE_STALL_ABORT_S,
/// RINGFUSE_FUSION_LOOKAHEAD, RINGFUSE_FUSION_INPLACE_MIN, RINGFUSE_FUSION_SHM.
EngineConfig parse_engine_config(const EnvLookup& env);

}  // namespace ringfuse::core
