// Issue #17.2 and #17.3 on loopback (no root): what the survivors of a rank killed during
// hierarchical all-reduces say themselves: global ranks, and no orderly shutdown.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <thread>

#include "detached_agent.hpp"
#include "dns_server.hpp"

#include "namespace_hosts_test.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ringfuse::testing::DetachedAgent;
using ringfuse::testing::Process;
using ringfuse::testing::ProcessResult;

// What `rank` said itself in `log`: its first error line, without the first failure it quotes.
std::string own_message(const std::string& log, int rank) {
  const auto start = log.find("rank " + std::to_string(rank) + ": allreduce");
  if (start == std::string::npos) return {};
  const auto end = std::min(log.find('\n', start), log.find("(first failure", start));
  return log.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// This machine's host name: every loopback "host" is this machine, so a lost rank is named
// with it next to the address of its "host".
std::string hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

// Issue #17.2 and #17.3, on loopback (no root): global rank 3 is killed in the middle of
// hierarchical all-reduces; the survivors, kept alive by an agent like ssh without -tt, must
// name global ranks (not their positions inside the host or cross-host group), and none may
// call the failure an orderly shutdown.
TEST(LoopbackHosts, SurvivorsOfAKilledRankNameGlobalRanksAndNoOrderlyShutdown) {
  const fs::path dir = fs::temp_directory_path() / ("ringfuse-mh-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    DetachedAgent agent(dir);
    Process launcher({RINGFUSE_RUN_PATH, "-H", "127.0.0.2:2,127.0.0.3:2", "--rsh-agent",
                      agent.path(), "--hierarchical", "1", "--timeout", "30", "--",
                      ALLREDUCE_LOOP_PATH, "8", "60"},
                     {});
    const auto deadline = std::chrono::steady_clock::now() + 40s;
    for (int rank = 0; rank < 4; ++rank) {
      while (agent.log_of(rank).find("looping") == std::string::npos &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
      }
    }
    const int victim = agent.pid_of(3, 1s);
    ASSERT_GT(victim, 0) << launcher.output();
    ASSERT_NE(agent.log_of(3).find("looping"), std::string::npos) << launcher.output();
    ::kill(victim, SIGKILL);
    launcher.wait(40s);
    EXPECT_TRUE(agent.wait_all_exited(45s)) << "survivors still running";

    for (int rank = 0; rank < 3; ++rank) {
      const std::string log = agent.log_of(rank);
      const std::string self = "rank " + std::to_string(rank);
      EXPECT_NE(log.find(self + ": "), std::string::npos) << "rank " << rank << ":\n" << log;
      EXPECT_EQ(log.find("lost " + self + ":"), std::string::npos)
          << "rank " << rank << " says it lost itself:\n" << log;
      EXPECT_EQ(log.find("shut Ringfuse down in order"), std::string::npos)
          << "rank " << rank << ":\n" << log;
    }
    // Rank 2 shares a host with rank 3: its own message names the rank that died.
    EXPECT_NE(agent.log_of(2).find("rank 2: "), std::string::npos) << agent.log_of(2);
    EXPECT_NE(agent.log_of(2).find("lost rank 3"), std::string::npos) << agent.log_of(2);
    // Ranks 0 and 1 (host 127.0.0.2) name a rank they lost across hosts with the address of
    // its host (127.0.0.3), not the address its connections happened to leave from.
    for (int rank = 0; rank < 2; ++rank) {
      const std::string own = own_message(agent.log_of(rank), rank);
      for (int lost = 2; lost < 4; ++lost) {
        if (own.find("[across hosts]: lost rank " + std::to_string(lost) + ":") ==
            std::string::npos) {
          continue;
        }
        EXPECT_NE(own.find("(rank " + std::to_string(lost) + " is at 127.0.0.3 on " + hostname() +
                           ")"),
                  std::string::npos)
            << "rank " << rank << ":\n" << agent.log_of(rank);
      }
    }
  }
  fs::remove_all(dir);
}

// Across hosts a lost rank is named with the address of its host. Loopback "hosts" (no root):
// a connection to 127.0.0.2 leaves from 127.0.0.1 unless the rank binds it to the address it
// advertises, as a multi-homed host's may leave from another interface; rank 0 must say where
// rank 1 runs (127.0.0.3), not where its connection came from.
TEST(LoopbackHosts, ARankLostAcrossHostsIsNamedWithItsHostsAddress) {
  const fs::path dir = fs::temp_directory_path() / ("ringfuse-mh-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    DetachedAgent agent(dir);
    // TCP: both "hosts" are this machine, so shared memory would otherwise join them.
    Process launcher({RINGFUSE_RUN_PATH, "-H", "127.0.0.2:1,127.0.0.3:1", "--rsh-agent",
                      agent.path(), "--transport", "tcp", "--timeout", "30", "--",
                      ALLREDUCE_LOOP_PATH, "1", "60"},
                     {});
    const auto deadline = std::chrono::steady_clock::now() + 40s;
    for (int rank = 0; rank < 2; ++rank) {
      while (agent.log_of(rank).find("looping") == std::string::npos &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
      }
    }
    const int victim = agent.pid_of(1, 1s);
    ASSERT_GT(victim, 0) << launcher.output();
    ASSERT_NE(agent.log_of(1).find("looping"), std::string::npos) << launcher.output();
    ::kill(victim, SIGKILL);
    launcher.wait(40s);
    EXPECT_TRUE(agent.wait_all_exited(45s)) << "rank 0 still running";
    const std::string log = agent.log_of(0);
    EXPECT_NE(log.find("rank 0: allreduce"), std::string::npos) << log;
    EXPECT_NE(log.find("lost rank 1: "), std::string::npos) << log;
    EXPECT_NE(log.find("(rank 1 is at 127.0.0.3 on " + hostname() + ")"), std::string::npos)
        << log;
  }
  fs::remove_all(dir);
}

// Issue #17.3, on loopback (no root): ranks started as torchrun starts them, so that rank 0
// serves the store and it outlives the failure. Global rank 3 is killed during hierarchical
// all-reduces; ranks 1 and 2 fail on one of their channels (across hosts, within the host) and
// exit. Their other, healthy channel must not tell rank 0 that they shut down in order.
TEST(LoopbackHosts, ARankThatFailedOnOneChannelIsNotReportedAsLeavingInOrder) {
  const auto port = ringfuse::testing::free_port(SOCK_STREAM);
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < 4; ++rank) {
    ranks.push_back(std::make_unique<Process>(
        std::vector<std::string>{ALLREDUCE_LOOP_PATH, "8", "60"},
        std::map<std::string, std::string>{
            {"RANK", std::to_string(rank)}, {"WORLD_SIZE", "4"},
            {"LOCAL_RANK", std::to_string(rank % 2)}, {"LOCAL_WORLD_SIZE", "2"},
            {"GROUP_RANK", std::to_string(rank / 2)}, {"GROUP_WORLD_SIZE", "2"},
            {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)},
            {"RINGFUSE_HIERARCHICAL", "1"}, {"RINGFUSE_TIMEOUT_S", "30"},
            {"RINGFUSE_JOB_SECRET", "loopback-test-secret"}}));
  }
  const auto deadline = std::chrono::steady_clock::now() + 40s;
  for (auto& rank : ranks) {
    while (rank->output().find("looping") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_NE(rank->output().find("looping"), std::string::npos) << rank->output();
  }
  ::kill(ranks[3]->pid(), SIGKILL);
  for (int rank = 0; rank < 3; ++rank) {
    const ProcessResult r = ranks[rank]->wait(45s);
    EXPECT_EQ(r.exit_code, 3) << "rank " << rank << ":\n" << r.output;
    EXPECT_NE(r.output.find("rank " + std::to_string(rank) + ": allreduce"), std::string::npos)
        << "rank " << rank << ":\n" << r.output;
    EXPECT_EQ(r.output.find("shut Ringfuse down in order"), std::string::npos)
        << "rank " << rank << ":\n" << r.output;
  }
}

}  // namespace
