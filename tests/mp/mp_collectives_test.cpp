// Every collective × dtype × op × algorithm × count, for N in {1, 2, 3, 4, 5, 8} real ranks
// launched by ringfuse-run on loopback; each rank checks its result against a reference
// (collective_check.cpp).
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "subprocess.hpp"

namespace {

// (ranks, collective, RINGFUSE_TRANSPORT)
using Params = std::tuple<int, std::string, std::string>;

class CollectiveMatrix : public ::testing::TestWithParam<Params> {};

TEST_P(CollectiveMatrix, EveryRankMatchesTheReference) {
  const auto& [ranks, collective, transport] = GetParam();
  const auto result = ringfuse::testing::run_process(
      {RINGFUSE_RUN_PATH, "-np", std::to_string(ranks), "--", COLLECTIVE_CHECK_PATH,
       "--collective", collective},
      {{"RINGFUSE_TIMEOUT_S", "60"}, {"RINGFUSE_TRANSPORT", transport}},
      std::chrono::minutes(4));
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < ranks; ++rank) {
    EXPECT_NE(result.output.find("rank " + std::to_string(rank) + ": " + collective + " "),
              std::string::npos)
        << "rank " << rank << " did not report\n"
        << result.output;
  }
  EXPECT_EQ(result.output.find("MISMATCH"), std::string::npos) << result.output;
}

std::string name(const ::testing::TestParamInfo<Params>& info) {
  return std::get<1>(info.param) + "_np" + std::to_string(std::get<0>(info.param));
}

const auto kCollectives = ::testing::Values("allreduce", "broadcast", "allgather", "allgatherv",
                                            "reducescatter", "alltoall", "alltoallv", "barrier");

// Pinned to TCP: every rank here is on one host, so `auto` would pick shared memory.
INSTANTIATE_TEST_SUITE_P(AllCollectives, CollectiveMatrix,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4, 5, 8), kCollectives,
                                            ::testing::Values("tcp")),
                         name);

// The shared-memory data plane on fewer world sizes, to keep the suite's run time modest.
INSTANTIATE_TEST_SUITE_P(Shm, CollectiveMatrix,
                         ::testing::Combine(::testing::Values(2, 3, 4, 8), kCollectives,
                                            ::testing::Values("shm")),
                         name);

}  // namespace
