// "rank 2" / "ranks {0,1,3}" for messages.
#pragma once

#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ringfuse::engine {

inline std::string describe_ranks(const std::vector<int>& ranks) {
  if (ranks.size() == 1) return fmt::format("rank {}", ranks.front());
  return fmt::format("ranks {{{}}}", fmt::join(ranks, ","));
}

/// How an engine names its ranks and itself in messages. An engine over a child Context
/// (a process set, a split) counts its ranks 0..n-1 among its members; users know the ranks of
/// the world, and which group it was, so every message goes through this.
struct RankNames {
  std::vector<int> global;  // by engine rank; empty: the engine's ranks are global ranks
  std::string label;        // the group ("process set 1"); empty for a world

  int operator()(int rank) const {
    if (rank < 0 || static_cast<std::size_t>(rank) >= global.size()) return rank;
    return global[static_cast<std::size_t>(rank)];
  }
  /// describe_ranks() of the global ranks of `ranks`.
  std::string describe(const std::vector<int>& ranks) const {
    std::vector<int> named;
    named.reserve(ranks.size());
    for (const int rank : ranks) named.push_back((*this)(rank));
    return describe_ranks(named);
  }
  /// "ringfuse engine", or "ringfuse engine (process set 1)": how messages start.
  std::string engine() const {
    return label.empty() ? std::string("ringfuse engine") : "ringfuse engine (" + label + ")";
  }
};

}  // namespace ringfuse::engine
