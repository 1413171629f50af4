// Ranks that ringfuse-run started through an rsh agent that does not pass signals on (ssh
// without -tt; here DetachedAgent) used to outlive the launcher, whether it was stopped with
// Ctrl-C or killed outright: they kept training, and holding their devices, with nobody left
// to stop them. They now watch the launcher's store and stop themselves when it goes away.
// Loopback "hosts", no root.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "detached_agent.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ringfuse::testing::DetachedAgent;
using ringfuse::testing::Process;

class OrphanedRanks : public ::testing::TestWithParam<int> {
 protected:
  /// Starts `program` on two loopback hosts through a detached agent, waits until both ranks
  /// print "looping", sends the launcher `signal`, and expects both ranks to stop themselves
  /// within 15 s, each saying why.
  void expect_ranks_stop_after_the_launcher(const std::string& name,
                                            const std::vector<std::string>& program);
};

void OrphanedRanks::expect_ranks_stop_after_the_launcher(
    const std::string& name, const std::vector<std::string>& program) {
  const int signal = GetParam();
  const fs::path dir = fs::temp_directory_path() /
                       ("ringfuse-orphans-" + name + "-" + std::to_string(::getpid()) + "-" +
                        std::to_string(signal));
  fs::create_directories(dir);
  {
    DetachedAgent agent(dir);
    std::vector<std::string> command{RINGFUSE_RUN_PATH, "-H", "127.0.0.2:1,127.0.0.3:1",
                                     "--rsh-agent", agent.path(), "--transport", "tcp", "--"};
    command.insert(command.end(), program.begin(), program.end());
    Process launcher(command, {});
    const auto deadline = std::chrono::steady_clock::now() + 40s;
    for (int rank = 0; rank < 2; ++rank) {
      while (agent.log_of(rank).find("looping") == std::string::npos &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
      }
      ASSERT_NE(agent.log_of(rank).find("looping"), std::string::npos)
          << launcher.output() << agent.log_of(rank);
    }
    ::kill(launcher.pid(), signal);
    launcher.wait(20s);
    // The launcher stops within its grace period (5 s); each rank 2 s after it.
    EXPECT_TRUE(agent.wait_all_exited(15s))
        << "ranks outlived ringfuse-run:\n" << agent.log_of(0) << agent.log_of(1);
    for (int rank = 0; rank < 2; ++rank) {
      EXPECT_NE(agent.log_of(rank).find("rank " + std::to_string(rank) +
                                        ": ringfuse-run (its rendezvous store at "),
                std::string::npos)
          << agent.log_of(rank);
    }
  }
  fs::remove_all(dir);
}

TEST_P(OrphanedRanks, StopThemselvesWhenTheLauncherIsGone) {
  expect_ranks_stop_after_the_launcher("loop", {ALLREDUCE_LOOP_PATH, "1", "60"});
}

#ifdef ENV_INIT_SCRIPT
// The same ranks in a torch.distributed "ringfuse" group, which meets at torch's store (rank
// 0's TCPStore) rather than at the launcher's: they watch the launcher all the same.
TEST_P(OrphanedRanks, InATorchDistributedGroupStopThemselvesToo) {
  expect_ranks_stop_after_the_launcher(
      "c10d", {"/usr/bin/env", "PYTHONPATH=" PYTHON_BUILD_DIR, PYTHON_PATH, ENV_INIT_SCRIPT,
               "ringfuse", "loop"});
}
#endif

INSTANTIATE_TEST_SUITE_P(CtrlCOrKill, OrphanedRanks, ::testing::Values(SIGINT, SIGKILL),
                         [](const auto& info) { return info.param == SIGINT ? "SIGINT" : "SIGKILL"; });

}  // namespace
