// Sub-communicators between real processes: Context::split by parity at N = 4 under
// ringfuse-run, every collective checked on the child against the reference of a world of its
// size (collective_check --split parity); and a rank killed while a world and its children
// all-reduce, reported by every group it belonged to (world, child, process set), by its
// global rank, with the other
// child working on only when RINGFUSE_GROUP_FAILURES=contain asked for it.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "rendezvous/tcp_store.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::Process;

class SplitByParity : public ::testing::TestWithParam<std::string> {};

TEST_P(SplitByParity, EveryCollectiveOnTheChildMatchesTheReference) {
  const std::string collective = GetParam();
  const auto result = ringfuse::testing::run_process(
      {RINGFUSE_RUN_PATH, "-np", "4", "--", COLLECTIVE_CHECK_PATH, "--collective", collective,
       "--counts", "0,1,1009", "--algos", "ring", "--split", "parity"},
      {{"RINGFUSE_TIMEOUT_S", "60"}}, std::chrono::minutes(2));
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_NE(result.output.find(fmt::format("rank {}: split 1 (color {}) of world is rank {} of 2",
                                             rank, rank % 2, rank / 2)),
              std::string::npos)
        << result.output;
    EXPECT_TRUE(std::regex_search(
        result.output, std::regex(fmt::format("rank {}: {} [1-9][0-9]* checks, 0 failed", rank,
                                              collective))))
        << result.output;
  }
  EXPECT_EQ(result.output.find("MISMATCH"), std::string::npos) << result.output;
}

INSTANTIATE_TEST_SUITE_P(Collectives, SplitByParity,
                         ::testing::Values("allreduce", "broadcast", "allgather", "allgatherv",
                                           "reducescatter", "alltoall", "alltoallv", "barrier"),
                         [](const auto& info) { return info.param; });

// The test hosts the store and starts the ranks itself: ringfuse-run would stop the
// survivors as soon as the victim died, and only the library's own reports are under test.
std::vector<std::unique_ptr<Process>> start_ranks(int size, std::uint16_t port,
                                                  const std::string& job,
                                                  const std::string& group_failures) {
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.push_back(std::make_unique<Process>(
        std::vector<std::string>{SPLIT_WORKER_PATH},
        std::map<std::string, std::string>{{"RINGFUSE_RANK", std::to_string(rank)},
                                           {"RINGFUSE_SIZE", std::to_string(size)},
                                           {"RINGFUSE_STORE_ADDR", fmt::format("127.0.0.1:{}", port)},
                                           {"RINGFUSE_JOB_ID", job},
                                           {"RINGFUSE_TIMEOUT_S", "30"},
                                           {"RINGFUSE_GROUP_FAILURES", group_failures}}));
  }
  return ranks;
}

bool all_running(const std::vector<std::unique_ptr<Process>>& ranks) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    for (const auto& rank : ranks) all = all && rank->output().find("running") != std::string::npos;
    if (all) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

class KilledRank : public ::testing::TestWithParam<std::string> {};

TEST_P(KilledRank, IsReportedByEveryGroupItBelongedTo) {
  const std::string mode = GetParam();  // RINGFUSE_GROUP_FAILURES
  constexpr int kSize = 4;
  constexpr int kVictim = 3;  // in the world and in the odd child {1, 3}
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  const std::string job = "split-kill-" + mode;
  auto ranks = start_ranks(kSize, store.port(), job, mode);
  ASSERT_TRUE(all_running(ranks)) << ranks[0]->output();
  ASSERT_EQ(::kill(ranks[kVictim]->pid(), SIGKILL), 0);

  const std::regex world_names_victim("GROUP world FAILED: rank [0-9]+: .*rank 3");
  for (int rank = 0; rank < kSize; ++rank) {
    if (rank == kVictim) continue;
    const auto result = ranks[rank]->wait(60s);
    ASSERT_FALSE(result.timed_out) << "rank " << rank << " hung:\n" << result.output;
    EXPECT_EQ(result.exit_code, 0) << result.output;
    const std::string& out = result.output;
    EXPECT_TRUE(std::regex_search(out, world_names_victim)) << "rank " << rank << ":\n" << out;
    const std::string child = fmt::format("split 1 (color {}) of world", rank % 2);
    if (rank % 2 == 1) {
      // The process set of the odd ranks, which the victim was in, names it and itself.
      EXPECT_TRUE(std::regex_search(
          out, std::regex(fmt::format("GROUP process set 1 FAILED: rank {}: ringfuse engine "
                                      "\\(process set 1\\): .*rank 3",
                                      rank))))
          << "rank " << rank << ":\n" << out;
      // The victim's own child reports it by its global rank, naming the child.
      EXPECT_TRUE(std::regex_search(
          out, std::regex(fmt::format("GROUP {} FAILED: rank {}: {}: .*rank 3", 
                                      std::regex_replace(child, std::regex("[()]"), "\\$&"), rank,
                                      std::regex_replace(child, std::regex("[()]"), "\\$&")))))
          << "rank " << rank << ":\n" << out;
    } else if (mode == "contain") {
      EXPECT_NE(out.find(fmt::format("GROUP {} WORKS after the world failed", child)),
                std::string::npos)
          << "rank " << rank << ":\n" << out;
    } else {
      EXPECT_NE(out.find(fmt::format("GROUP {} FAILED: rank {}: {}: allreduce: this job was "
                                     "aborted earlier",
                                     child, rank, child)),
                std::string::npos)
          << "rank " << rank << ":\n" << out;
    }
    std::cerr << "rank " << rank << ":\n" << out;
  }
  ranks[kVictim]->wait(5s);
}

INSTANTIATE_TEST_SUITE_P(GroupFailures, KilledRank, ::testing::Values("job", "contain"),
                         [](const auto& info) { return info.param; });

}  // namespace
