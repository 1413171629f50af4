// Every example runs as its README says and reports success; and a world described only by
// torchrun's variables (what a PyTorchJob pod sees) works without our launcher.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dns_server.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::Process;
using ringfuse::testing::run_process;

TEST(Examples, HelloAllreduceUnderRingfuseRun) {
  const auto result =
      run_process({RINGFUSE_RUN_PATH, "-np", "4", "--", HELLO_ALLREDUCE_PATH}, {}, 2min);
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_NE(result.output.find("rank " + std::to_string(rank) +
                                 " of 4: allreduce of 1048576 floats = 10.0 (expected 10.0): OK"),
              std::string::npos)
        << result.output;
  }
}

TEST(Examples, AsyncFusionUnderRingfuseRun) {
  const auto result =
      run_process({RINGFUSE_RUN_PATH, "-np", "3", "--", ASYNC_FUSION_PATH}, {}, 2min);
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
}

TEST(Examples, AWorldDescribedOnlyByTorchrunVariables) {
  // As a PyTorchJob starts its pods: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and nothing of
  // ours; rank 0 serves the store on MASTER_PORT.
  constexpr int kRanks = 3;
  const std::string port = std::to_string(ringfuse::testing::free_port(SOCK_STREAM));
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < kRanks; ++rank) {
    ranks.push_back(std::make_unique<Process>(
        std::vector<std::string>{HELLO_ALLREDUCE_PATH},
        std::map<std::string, std::string>{{"RANK", std::to_string(rank)},
                                           {"WORLD_SIZE", std::to_string(kRanks)},
                                           {"MASTER_ADDR", "localhost"},
                                           {"MASTER_PORT", port}}));
  }
  for (int rank = 0; rank < kRanks; ++rank) {
    const auto result = ranks[rank]->wait(60s);
    ASSERT_FALSE(result.timed_out) << result.output;
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find("rank " + std::to_string(rank) + " of 3: allreduce of 1048576 "
                                 "floats = 6.0 (expected 6.0): OK"),
              std::string::npos)
        << result.output;
  }
}

}  // namespace
