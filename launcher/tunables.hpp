// The library's tunables as ringfuse-run flags (--algo ring -> RINGFUSE_ALGO=ring for every
// rank), with the library's defaults in --help. A flag not given leaves the variable as the
// launcher's environment has it.
#pragma once

#include <map>
#include <string>

namespace CLI {
class App;
}

namespace ringfuse::launcher {

class Tunables {
 public:
  /// Adds one option per tunable to `app`.
  void add_to(CLI::App& app);
  /// Validates the given values with the library's own parser (an error names the variable)
  /// and returns them as variable -> value.
  std::map<std::string, std::string> variables() const;

 private:
  std::map<std::string, std::string> values_;  // variable -> value, given flags only
};

}  // namespace ringfuse::launcher
