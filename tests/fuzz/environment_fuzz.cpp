// Fuzz target: the environment contract (core::parse_world, core::parse_options). The input is
// "NAME=VALUE" lines; the lookup answers from them (a name given twice: the last one wins, a
// line without '=' sets NAME to the empty string). Only ringfuse::Error may escape the parsers.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "common.hpp"
#include "core/environment.hpp"
#include "ringfuse/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = ringfuse::fuzz::as_text(data, size);
  std::map<std::string, std::string> vars;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const auto line = text.substr(start, end - start);
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      vars[std::string(line)] = "";
    } else {
      vars[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    }
    start = end + 1;
  }
  const ringfuse::core::EnvLookup lookup =
      [&](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
  try {
    const auto world = ringfuse::core::parse_world(lookup);
    // Invariants every accepted world must satisfy (init() relies on them).
    if (world.size < 1 || world.rank < 0 || world.rank >= world.size ||
        world.local_rank < 0 || world.local_rank >= world.local_size ||
        world.cross_rank < 0 || world.cross_rank >= world.cross_size) {
      __builtin_trap();
    }
  } catch (const ringfuse::Error&) {
  }
  try {
    const auto options = ringfuse::core::parse_options(lookup);
    if (options.op_timeout.count() <= 0 || options.connect_timeout.count() <= 0) __builtin_trap();
  } catch (const ringfuse::Error&) {
  }
  return 0;
}
