// Parsing of the environment contract (DESIGN.md §3) from any variable source, so tests can
// feed a map instead of the process environment.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "ringfuse/context.hpp"

namespace ringfuse::core {

/// Returns the value of a variable, or std::nullopt when it is unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

EnvLookup process_environment();

/// The world described by RINGFUSE_* (preferred), else torchrun's RANK/WORLD_SIZE/MASTER_*,
/// else Open MPI's OMPI_COMM_WORLD_*, else a world of one. Throws
/// Error(ErrorKind::invalid_config) naming the variable, also where a launcher Ringfuse cannot
/// join says this process is one of several (MPICH's PMI_SIZE, MVAPICH's MV2_COMM_WORLD_SIZE,
/// horovodrun's HOROVOD_SIZE above 1) rather than let each rank train alone.
WorldSpec parse_world(const EnvLookup& env);

/// The launcher's store to watch (WorldSpec::watch_launcher) when ringfuse-run asked for it
/// (RINGFUSE_WATCH_LAUNCHER=1, its rsh agent's ranks) and said where it is
/// (RINGFUSE_STORE_ADDR); std::nullopt otherwise. For worlds that meet elsewhere (a
/// torch.distributed group at torch's store) but still belong to ringfuse-run.
std::optional<std::pair<std::string, std::uint16_t>> launcher_store_to_watch(
    const EnvLookup& env);

/// Every tunable of core/tunables.hpp's table that `env` sets (RINGFUSE_ALGO,
/// RINGFUSE_TIMEOUT_S, RINGFUSE_HOST_ADDR, RINGFUSE_LOG_LEVEL, the engine's, ...). Throws
/// Error(ErrorKind::invalid_config) naming the variable, the value and what was expected.
Options parse_options(const EnvLookup& env);

/// The engine's rows of that table only (RINGFUSE_FUSION_THRESHOLD, RINGFUSE_CYCLE_TIME_MS, ...).
EngineConfig parse_engine_config(const EnvLookup& env);

}  // namespace ringfuse::core
