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

}  // namespace ringfuse::engine
