#include "rendezvous/rank_exits.hpp"

#include <chrono>

#include <fmt/format.h>

namespace ringfuse::rendezvous {
namespace {

constexpr std::string_view kAnyRankExited = "ringfuse-run/exited/any";

std::string exit_key(int rank) { return fmt::format("ringfuse-run/exited/{}", rank); }

}  // namespace

std::vector<std::pair<std::string, std::string>> rank_exit_records(int rank,
                                                                   std::string_view description) {
  return {{exit_key(rank), std::string(description)}, {std::string(kAnyRankExited), "1"}};
}

bool any_rank_exit_recorded(Store& root) { return root.check({std::string(kAnyRankExited)}); }

std::optional<std::string> recorded_exit(Store& root, int rank) {
  const auto key = exit_key(rank);
  // Set before kAnyRankExited, and never removed: a record that exists is complete.
  if (!root.check({key})) return std::nullopt;
  return root.get(key, std::chrono::seconds(1));
}

}  // namespace ringfuse::rendezvous
