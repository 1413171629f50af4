// The trainers end to end: data-parallel equivalence with a single replica, and a resumed
// training that continues from its checkpoint.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>

#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::run_process;

class Equivalence : public ::testing::TestWithParam<int> {};

TEST_P(Equivalence, NRanksMatchOneReplicaOnTheGlobalBatch) {
  const int ranks = GetParam();
  const auto result = run_process({RINGFUSE_RUN_PATH, "-np", std::to_string(ranks), "--",
                                   EQUIVALENCE_CHECK_PATH},
                                  {}, 3min);
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < ranks; ++rank) {
    EXPECT_NE(result.output.find("rank " + std::to_string(rank) + " of " +
                                 std::to_string(ranks)),
              std::string::npos)
        << result.output;
  }
  EXPECT_EQ(result.output.find("DIFFERENT"), std::string::npos) << result.output;
}

INSTANTIATE_TEST_SUITE_P(Ranks, Equivalence, ::testing::Values(1, 2, 3, 4));

double last_epoch_loss(const std::string& output) {
  const std::regex epoch_line(R"(epoch \d+/\d+: loss ([0-9.]+))");
  double loss = -1;
  for (auto it = std::sregex_iterator(output.begin(), output.end(), epoch_line);
       it != std::sregex_iterator(); ++it) {
    loss = std::stod((*it)[1]);
  }
  return loss;
}

TEST(Trainer, ResumeContinuesFromTheCheckpoint) {
  if (!std::filesystem::exists(DIGITS_CSV)) GTEST_SKIP() << DIGITS_CSV << " missing";
  const auto dir = std::filesystem::temp_directory_path() / "ringfuse-resume-test";
  std::filesystem::remove_all(dir);
  const std::vector<std::string> base{RINGFUSE_RUN_PATH, "-np", "2", "--", RINGFUSE_TRAIN_PATH,
                                      "--model", "mlp", "--dataset", "digits", "--digits-csv",
                                      DIGITS_CSV, "--batch-size", "32", "--progress-every", "0",
                                      "--checkpoint-dir", dir.string()};
  auto first_args = base;
  first_args.insert(first_args.end(), {"--epochs", "2"});
  const auto first = run_process(first_args, {}, 3min);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_TRUE(std::filesystem::exists(dir / "checkpoint.pt")) << first.output;
  const double loss_after_two = last_epoch_loss(first.output);

  auto resumed_args = base;
  resumed_args.insert(resumed_args.end(), {"--epochs", "4", "--resume"});
  const auto resumed = run_process(resumed_args, {}, 3min);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  EXPECT_EQ(resumed.output.find("epoch 1/4"), std::string::npos)
      << "the resumed run repeated epoch 1:\n" << resumed.output;
  EXPECT_NE(resumed.output.find("epoch 3/4"), std::string::npos) << resumed.output;
  // The loss curve goes on from where it stopped instead of starting over (~2.3 at first).
  const double loss_after_four = last_epoch_loss(resumed.output);
  EXPECT_GT(loss_after_two, 0);
  EXPECT_LT(loss_after_four, loss_after_two) << first.output << resumed.output;
  EXPECT_LT(loss_after_four, 1.0) << resumed.output;
  std::filesystem::remove_all(dir);
}

TEST(Trainer, DeviceCudaTrainsOnTheGpuOrSaysWhyNot) {
  if (!std::filesystem::exists(DIGITS_CSV)) GTEST_SKIP() << DIGITS_CSV << " missing";
  const std::vector<std::string> base{RINGFUSE_TRAIN_PATH, "--model", "mlp", "--dataset",
                                      "digits", "--digits-csv", DIGITS_CSV, "--epochs", "1",
                                      "--progress-every", "0", "--device"};
  auto cuda_args = base;
  cuda_args.push_back("cuda");
  const auto cuda = run_process(cuda_args, {}, 3min);
  auto auto_args = base;
  auto_args.push_back("auto");
  const auto automatic = run_process(auto_args, {}, 3min);
  ASSERT_EQ(automatic.exit_code, 0) << automatic.output;
  if (cuda.exit_code == 0) {  // a CUDA libtorch and a GPU: both runs train there
    EXPECT_NE(cuda.output.find("on cuda"), std::string::npos) << cuda.output;
    EXPECT_NE(automatic.output.find("on cuda"), std::string::npos) << automatic.output;
  } else {
    EXPECT_EQ(cuda.exit_code, 1) << cuda.output;
    EXPECT_NE(cuda.output.find("--device cuda, but"), std::string::npos) << cuda.output;
    EXPECT_NE(automatic.output.find("on cpu"), std::string::npos) << automatic.output;
  }
  EXPECT_NE(automatic.output.find("final test accuracy"), std::string::npos) << automatic.output;
}

TEST(Trainer, TorchDataParallelExampleRuns) {
  const auto result =
      run_process({RINGFUSE_RUN_PATH, "-np", "2", "--", TORCH_EXAMPLE_PATH}, {}, 3min);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("replicas agree: yes"), std::string::npos) << result.output;
}

}  // namespace
