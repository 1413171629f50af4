// The library's tunables as ringfuse-run flags (--algo ring -> RINGFUSE_ALGO=ring for every
// rank): one flag per row of the library's table (comm/src/core/tunables.hpp), its default and
// help from that row, and its value checked by the row's own parser as the flag is read, so a
// bad value is a usage error (exit 2) before any rank starts. A flag not given leaves the
// variable as the launcher's environment has it.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "ringfuse/context.hpp"

namespace CLI {
class App;
}

namespace ringfuse::launcher {

class Tunables {
 public:
  /// Adds one option per tunable whose flag carries its value to `app`, in the group
  /// "Tunables (for every rank)".
  void add_to(CLI::App& app);
  /// What the rules between the given values forbid (--stall-abort below --stall-timeout),
  /// naming the flags; nullopt when they hold.
  std::optional<std::string> inconsistency() const;
  /// The given flags as variable -> value, as the user spelled them.
  const std::map<std::string, std::string>& variables() const { return values_; }
  /// The library's defaults with the given flags applied (--start-timeout for discovery).
  const Options& options() const { return options_; }

 private:
  std::map<std::string, std::string> values_;  // variable -> value, given flags only
  Options options_;
};

}  // namespace ringfuse::launcher
