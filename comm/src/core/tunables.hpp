// The one table of Ringfuse's tunables. Each RINGFUSE_* variable is described once — its
// ringfuse-run flag, parser, help and the Options field it sets — and that row is what the
// environment parser (core/environment), the start-up log of effective values
// (describe_tunables) and ringfuse-run --help (launcher/tunables) walk, so the three cannot
// drift apart.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/environment.hpp"
#include "ringfuse/context.hpp"

namespace ringfuse::core {

/// Which start-up log lists a tunable: the Context's (rank 0, at init()) or the engine's.
enum class TunableScope : std::uint8_t { context, engine };

struct Tunable {
  std::string_view variable;  // RINGFUSE_ALGO
  std::string_view flag;      // the ringfuse-run flag that sets it: --algo
  /// True when the flag's value is the variable's value. False when the launcher derives the
  /// variable from its flag for each rank (RINGFUSE_PROGRESS_FILE from --health-port).
  bool flag_is_value;
  std::string_view value_name;  // --help's placeholder: auto|ring|tree|rhd, S, BYTES, ...
  std::string_view help;        // what it does, one sentence
  /// Shown for an empty field (log and --help), e.g. "(none)" for an unset timeline.
  std::string_view when_empty;
  TunableScope scope;
  /// Sets the field of `options` this variable describes from `value`; on an invalid value,
  /// leaves `options` alone and returns what was expected instead ("one of auto, ring, tree,
  /// rhd"), for the caller to put in an error that names the variable or the flag.
  std::optional<std::string> (*parse)(const std::string& value, Options& options);
  /// The field's value as the variable would spell it ("ring", "128M", "2.5"); empty for an
  /// unset one.
  std::string (*show)(const Options& options);
};

/// Every tunable, in the order the logs and --help list them.
std::span<const Tunable> tunables();

/// The row of `variable`, or null.
const Tunable* find_tunable(std::string_view variable);

/// What --help and the log show for the row's value in `options` (its when_empty text when
/// the field is empty).
std::string shown_value(const Tunable& row, const Options& options);

/// What the rules between tunables forbid in `options` (the stall abort before the stall
/// warning), naming the variables; nullopt when nothing.
std::optional<std::string> inconsistency(const Options& options);

/// "RINGFUSE_ALGO=ring (environment), RINGFUSE_TIMEOUT_S=300 (default), ...": the effective
/// value of every tunable of `scope`, and where it came from: `env`, the default, Horovod's
/// name for the variable in `env` (HOROVOD_CYCLE_TIME, as ringfuse.torch honours it), or else
/// the Options the program or a front-end passed ("set in code").
std::string describe_tunables(const Options& options, const EnvLookup& env, TunableScope scope);

}  // namespace ringfuse::core
