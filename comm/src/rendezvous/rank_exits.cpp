#include "rendezvous/rank_exits.hpp"

#include <chrono>

#include <fmt/format.h>

namespace ringfuse::rendezvous {

std::string rank_exit_key(int rank) { return fmt::format("ringfuse-run/exited/{}", rank); }

bool any_rank_exit_recorded(Store& root) { return root.check({std::string(kAnyRankExitKey)}); }

std::optional<std::string> recorded_exit(Store& root, int rank) {
  const auto key = rank_exit_key(rank);
  // Set before kAnyRankExitKey, and never removed: a record that exists is complete.
  if (!root.check({key})) return std::nullopt;
  return root.get(key, std::chrono::seconds(1));
}

}  // namespace ringfuse::rendezvous
