// Horovod's names for the engine's tunables (HOROVOD_FUSION_THRESHOLD, HOROVOD_CYCLE_TIME,
// HOROVOD_TIMELINE, ...), which Horovod scripts, their launch commands and their job specs
// set. The Horovod API (ringfuse.torch) honours each in place of its RINGFUSE_* variable when
// that one is unset, so that a Horovod job moved onto Ringfuse keeps its settings.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/environment.hpp"

namespace ringfuse::core {

/// One Horovod variable and the RINGFUSE_* variable it stands for.
struct HorovodVariable {
  std::string_view horovod;   // HOROVOD_CYCLE_TIME
  std::string_view ringfuse;  // RINGFUSE_CYCLE_TIME_MS
  /// The RINGFUSE_* value that means what Horovod's `value` means; nullopt for a value that
  /// asks for what Ringfuse does unset (HOROVOD_TIMELINE=DYNAMIC: no timeline until
  /// start_timeline()).
  std::optional<std::string> (*translate)(const std::string& value);
};

/// Every Horovod variable honoured, in the order the README lists them.
std::span<const HorovodVariable> horovod_variables();

/// `env`, answering each RINGFUSE_* variable of horovod_variables() that `env` leaves unset
/// from its Horovod variable. A Horovod value that the RINGFUSE_* variable would refuse throws
/// Error(ErrorKind::invalid_config) naming the Horovod variable, its value and what was
/// expected, at the lookup (parse_options makes them all).
EnvLookup with_horovod_variables(EnvLookup env);

/// "HOROVOD_CYCLE_TIME='1' as RINGFUSE_CYCLE_TIME_MS=1": each RINGFUSE_* value that
/// with_horovod_variables(env) answers and `env` does not, for the start-up log.
std::vector<std::string> horovod_variables_read(const EnvLookup& env);

/// What `env` asks of Horovod that Ringfuse does differently, one sentence each naming the
/// variable and what to do instead (HOROVOD_AUTOTUNE=1: no autotuner; a Horovod variable
/// shadowed by its RINGFUSE_* variable). Empty when nothing.
std::vector<std::string> horovod_variables_not_honoured(const EnvLookup& env);

}  // namespace ringfuse::core
