// Every collective × dtype × op × algorithm × count, for N in {1, 2, 3, 4, 5, 8} real ranks
// launched by ringfuse-run on loopback; each rank checks its result against a reference
// (collective_check.cpp).
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "subprocess.hpp"

namespace {

using Params = std::tuple<int, std::string>;

class CollectiveMatrix : public ::testing::TestWithParam<Params> {};

TEST_P(CollectiveMatrix, EveryRankMatchesTheReference) {
  const auto& [ranks, collective] = GetParam();
  const auto result = ringfuse::testing::run_process(
      {RINGFUSE_RUN_PATH, "-np", std::to_string(ranks), "--", COLLECTIVE_CHECK_PATH,
       "--collective", collective},
      {{"RINGFUSE_TIMEOUT_S", "60"}}, std::chrono::minutes(4));
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

INSTANTIATE_TEST_SUITE_P(
    AllCollectives, CollectiveMatrix,
    ::testing::Combine(::testing::Values(1, 2, 3, 4, 5, 8),
                       ::testing::Values("allreduce", "broadcast", "allgather", "allgatherv",
                                         "reducescatter", "alltoall", "alltoallv", "barrier")),
    name);

}  // namespace
