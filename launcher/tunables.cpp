#include "tunables.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/tunables.hpp"

namespace ringfuse::launcher {

void Tunables::add_to(CLI::App& app) {
  const Options defaults;
  for (const auto& row : core::tunables()) {
    if (!row.flag_is_value) continue;  // the launcher sets it itself (--health-port)
    const core::Tunable* tunable = &row;
    app.add_option_function<std::string>(
           std::string(row.flag),
           [this, tunable](const std::string& value) {
             // Checked already by the validator below, so this cannot fail.
             (void)tunable->parse(value, options_);
             values_[std::string(tunable->variable)] = value;
           },
           fmt::format("{} (sets {})", row.help, row.variable))
        ->type_name(std::string(row.value_name))
        ->default_str(core::shown_value(row, defaults))
        ->check(CLI::Validator(
            [tunable](std::string& value) -> std::string {
              Options scratch;
              if (const auto want = tunable->parse(value, scratch)) {
                return fmt::format("'{}' is invalid (it sets {}): expected {}", value,
                                   tunable->variable, *want);
              }
              return {};
            },
            ""))
        ->group("Tunables (for every rank)");
  }
}

std::optional<std::string> Tunables::inconsistency() const {
  auto problem = core::inconsistency(options_);
  if (!problem) return std::nullopt;
  // The library names variables; the user typed flags.
  for (const auto& row : core::tunables()) {
    const std::string variable(row.variable);
    for (auto at = problem->find(variable); at != std::string::npos;
         at = problem->find(variable, at + row.flag.size())) {
      problem->replace(at, variable.size(), row.flag);
    }
  }
  return problem;
}

}  // namespace ringfuse::launcher
