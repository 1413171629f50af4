// A rank that dies during shared-memory set-up, after its peers created their segments and
// before every rank mapped them, must leave nothing in /dev/shm (issue #22.2). The shim
// (shm_open_exit_shim.cpp, LD_PRELOAD) makes the victim exit at its first shm_open.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>

#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "rendezvous/tcp_store.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::Process;
using Env = std::map<std::string, std::string>;

/// The /dev/shm names of job `job` ("ringfuse-<job>_<generation>_...").
std::vector<std::string> segments_of(const std::string& job) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("ringfuse-" + job + "_")) names.push_back(name);
  }
  return names;
}

/// Checks that nothing of `job` is left, and removes what is, so a failure does not outlive
/// the test in /dev/shm.
void expect_nothing_left(const std::string& job) {
  for (const auto& name : segments_of(job)) {
    ADD_FAILURE() << "left behind in /dev/shm: " << name;
    ::shm_unlink(("/" + name).c_str());
  }
}

Env shim(int victim, int delay_ms) {
  return Env{{"LD_PRELOAD", SHM_EXIT_SHIM_PATH},
             {"RINGFUSE_TEST_SHM_EXIT_RANK", std::to_string(victim)},
             {"RINGFUSE_TEST_SHM_EXIT_DELAY_MS", std::to_string(delay_ms)}};
}

TEST(ShmSetUpLeak, SigtermWhileWaitingForPeersRemovesTheRanksSegment) {
  // No launcher: rank 1 dies at its shm_open, rank 0 has created its segment and waits for
  // rank 1's in the store; SIGTERM (what a launcher sends) must not leave rank 0's name.
  const std::string job = "leak-sigterm-" + std::to_string(::getpid());
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    Env env{{"RINGFUSE_RANK", std::to_string(rank)},
            {"RINGFUSE_SIZE", "2"},
            {"RINGFUSE_STORE_ADDR", "127.0.0.1:" + std::to_string(store.port())},
            {"RINGFUSE_JOB_ID", job},
            {"RINGFUSE_TRANSPORT", "shm"},
            {"RINGFUSE_CONNECT_TIMEOUT_S", "60"}};
    if (rank == 1) env.merge(shim(1, 0));
    ranks.push_back(std::make_unique<Process>(std::vector<std::string>{HELLO_ALLREDUCE_PATH}, env));
  }
  const auto victim = ranks[1]->wait(30s);
  ASSERT_EQ(victim.exit_code, 7) << victim.output;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (segments_of(job).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_FALSE(segments_of(job).empty()) << "rank 0 never created its segment:\n"
                                         << ranks[0]->output();
  std::this_thread::sleep_for(200ms);  // into the store wait, past creating the segment
  ASSERT_EQ(::kill(ranks[0]->pid(), SIGTERM), 0);
  const auto survivor = ranks[0]->wait(20s);
  EXPECT_EQ(survivor.exit_code, 128 + SIGTERM) << survivor.output;
  expect_nothing_left(job);
}

/// Runs `ringfuse-run -np 3 --transport shm -- hello_allreduce` with rank 2 exiting at its
/// first shm_open; returns the job id the launcher reported.
std::string run_job_whose_rank_dies_in_set_up(const Env& extra) {
  Env env = shim(2, 1000);  // a second for ranks 0 and 1 to create theirs and wait
  env.merge(Env(extra));
  const auto result = ringfuse::testing::run_process(
      {RINGFUSE_RUN_PATH, "-np", "3", "--transport", "shm", "--verbose", "--",
       HELLO_ALLREDUCE_PATH},
      env, 60s);
  EXPECT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 7) << result.output;
  EXPECT_NE(result.output.find("rank 2"), std::string::npos) << result.output;
  std::smatch match;
  if (!std::regex_search(result.output, match, std::regex("job ([0-9a-f]+): 3 ranks"))) {
    ADD_FAILURE() << "no job id in the launcher's output:\n" << result.output;
    return "no-such-job";
  }
  return match[1];
}

TEST(ShmSetUpLeak, LauncherJobWhoseRankDiesDuringSetUpLeavesNothing) {
  // Issue #22.2 as reported: the launcher stops ranks 0 and 1 with SIGTERM while they wait.
  const std::string job = run_job_whose_rank_dies_in_set_up({});
  expect_nothing_left(job);
}

TEST(ShmSetUpLeak, LauncherRemovesTheSegmentsOfRanksItHadToKill) {
  // Ranks 0 and 1 ignore SIGTERM (as a program with its own handling may), so the launcher
  // ends them with SIGKILL after its grace period: only the launcher can remove their names.
  const std::string job = run_job_whose_rank_dies_in_set_up({{"RINGFUSE_TEST_IGNORE_SIGTERM", "1"}});
  expect_nothing_left(job);
}

}  // namespace
