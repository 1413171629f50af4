#include "exported_variables.hpp"

#include <algorithm>
#include <cctype>

#include "job_environment.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

bool is_variable_name(const std::string& name) {
  const auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  return !name.empty() && !std::isdigit(static_cast<unsigned char>(name.front())) &&
         std::all_of(name.begin(), name.end(), word);
}

}  // namespace

std::map<std::string, std::string> exported_variables(const std::vector<std::string>& specs,
                                                      const EnvironmentLookup& lookup) {
  std::map<std::string, std::string> variables;
  for (const auto& spec : specs) {
    const auto eq = spec.find('=');
    const std::string name = spec.substr(0, eq);
    if (!is_variable_name(name)) {
      throw Error(ErrorKind::invalid_argument,
                  "-x " + spec + ": '" + name + "' is not an environment variable's name "
                  "(letters, digits and '_', not starting with a digit)");
    }
    if (is_contract_variable(name)) {
      throw Error(ErrorKind::invalid_argument,
                  "-x " + spec + ": ringfuse-run sets " + name + " for each rank itself");
    }
    if (eq != std::string::npos) {
      variables[name] = spec.substr(eq + 1);
    } else if (auto value = lookup(name)) {
      variables[name] = std::move(*value);
    } else {
      throw Error(ErrorKind::invalid_argument,
                  "-x " + name + ": " + name + " is not set in ringfuse-run's environment; "
                  "set it, or give -x " + name + "=VALUE");
    }
  }
  return variables;
}

}  // namespace ringfuse::launcher
