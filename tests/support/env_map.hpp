// For tests of the environment contract: a variable lookup (core::EnvLookup) answered from a
// map instead of the process environment.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "core/environment.hpp"

namespace ringfuse::test_support {

/// Answers each variable `vars` holds, and unset for every other one.
inline core::EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace ringfuse::test_support
