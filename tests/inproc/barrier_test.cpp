// Dissemination barrier: with ranks as threads, what a barrier promises can be observed
// directly. Every rank counts its arrival in a shared counter before each barrier, so after
// the k-th barrier every rank must see at least k·N arrivals.
#include <atomic>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

constexpr int kRounds = 50;

class Barrier : public ::testing::TestWithParam<WorldParam> {};

TEST_P(Barrier, NoRankLeavesBeforeEveryRankArrived) {
  const auto world = GetParam();
  std::atomic<int> arrivals{0};
  run_ranks(world.size, [&](Rank& rank) {
    auto transport = rank.connect({world.kind});
    for (int round = 1; round <= kRounds; ++round) {
      arrivals.fetch_add(1);
      algo::barrier(*transport);
      const int seen = arrivals.load();
      rank.expect(seen >= round * rank.size(),
                  fmt::format("left barrier {} having seen {} arrivals of {}", round, seen,
                              round * rank.size()));
    }
  });
}

INSTANTIATE_TEST_SUITE_P(InProcess, Barrier, ::testing::ValuesIn(worlds(1, 8)), world_name);

}  // namespace
}  // namespace ringfuse::inproc
