// Issue #17.2, during set-up: when a hierarchical Context is being built (each host's group,
// then the cross-host groups) and a peer dies or its host becomes unreachable, every
// survivor's error names global ranks (its own prefix and the peer), with the peer's host and
// address, not positions inside the host group or the cross-host group.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <thread>

#include "namespace_hosts_test.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::NamespaceHostsTest;
using ringfuse::testing::Process;
using ringfuse::testing::ProcessResult;

// Two hosts of two ranks, started as torchrun starts them (rank 0 serves the store, so the
// store outlives any other rank), all-reducing hierarchically. Set-up waits 5 s for a peer,
// rank 0 8 s, so that the store is still up when the others give up.
class HierarchySetUp : public NamespaceHostsTest {
 protected:
  void start_ranks(const std::map<int, std::string>& at_shm_open) {
    for (int rank = 0; rank < 4; ++rank) {
      std::map<std::string, std::string> env{
          {"RANK", std::to_string(rank)}, {"WORLD_SIZE", "4"},
          {"LOCAL_RANK", std::to_string(rank % 2)}, {"LOCAL_WORLD_SIZE", "2"},
          {"GROUP_RANK", std::to_string(rank / 2)}, {"GROUP_WORLD_SIZE", "2"},
          {"MASTER_ADDR", hosts_->address(0)}, {"MASTER_PORT", "29517"},
          {"RINGFUSE_HIERARCHICAL", "1"}, {"RINGFUSE_CONNECT_TIMEOUT_S", rank == 0 ? "8" : "5"},
          {"RINGFUSE_JOB_SECRET", "hierarchy-set-up-secret"}};
      if (const auto it = at_shm_open.find(rank); it != at_shm_open.end()) {
        env["LD_PRELOAD"] = STOP_AT_SHM_OPEN_PATH;
        env["RINGFUSE_TEST_AT_SHM_OPEN"] = it->second;
      }
      ranks_.push_back(std::make_unique<Process>(
          hosts_->on_host(rank / 2, {ALLREDUCE_LOOP_PATH, "1", "5"}), env));
    }
  }

  // Whether `rank`'s process has stopped itself (state T in /proc/PID/stat).
  bool stopped(int rank) const {
    std::ifstream stat("/proc/" + std::to_string(ranks_[rank]->pid()) + "/stat");
    std::string pid, command, state;
    stat >> pid >> command >> state;
    return state == "T";
  }

  // `rank` failed in set-up with a message of its own ("rank R: ...") that names `peer`, and
  // no message of another rank's prefix (a position taken for a global rank).
  void expect_names(int rank, const ProcessResult& r, const std::string& peer) {
    EXPECT_EQ(r.exit_code, 3) << "rank " << rank << ":\n" << r.output;
    EXPECT_NE(r.output.find("rank " + std::to_string(rank) + ": "), std::string::npos)
        << "rank " << rank << ":\n" << r.output;
    EXPECT_NE(r.output.find(peer), std::string::npos) << "rank " << rank << ":\n" << r.output;
    for (int other = 0; other < 4; ++other) {
      if (other == rank) continue;
      EXPECT_EQ(r.output.find("rank " + std::to_string(other) + ": "), std::string::npos)
          << "rank " << rank << " speaks as rank " << other << ":\n" << r.output;
    }
  }

  std::vector<std::unique_ptr<Process>> ranks_;
};

// Global rank 3 dies at its first shared-memory call: inside the hierarchy's set-up, after the
// flat mesh is up. Rank 2 (its host group) and rank 1 (its cross-host group) name rank 3 and
// where it ran; rank 0, whose cross-host peer rank 2 is stuck waiting for rank 3, names rank 2.
TEST_F(HierarchySetUp, ARankKilledDuringSetUpIsNamedByGlobalRankAndHost) {
  make_hosts({"rfhost0", "rfhost1"});
  if (!hosts_) return;
  start_ranks({{3, "kill"}});
  const ProcessResult victim = ranks_[3]->wait(30s);
  EXPECT_EQ(victim.exit_code, 128 + SIGKILL) << victim.output;
  expect_names(2, ranks_[2]->wait(30s), "rank 3 on rfhost1 (10.99.0.2)");
  expect_names(1, ranks_[1]->wait(30s), "rank 3 on rfhost1 (10.99.0.2)");
  expect_names(0, ranks_[0]->wait(30s), "rank 2 on rfhost1 (10.99.0.2)");
}

// Host 1 becomes unreachable in the middle of the hierarchy's set-up: its ranks stop at their
// first shared-memory call (the flat mesh is up), the test cuts host 1's link, and lets them
// go on. The ranks of host 0 wait for their cross-host peers in vain, and name them by global
// rank, host and address.
TEST_F(HierarchySetUp, ARankWhoseHostIsUnreachableIsNamedByGlobalRankAndHost) {
  make_hosts({"rfhost0", "rfhost1"});
  if (!hosts_) return;
  start_ranks({{2, "stop"}, {3, "stop"}});
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!(stopped(2) && stopped(3)) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(stopped(2) && stopped(3)) << ranks_[2]->output() << ranks_[3]->output();
  hosts_->set_link(1, false);
  ::kill(ranks_[2]->pid(), SIGCONT);
  ::kill(ranks_[3]->pid(), SIGCONT);
  expect_names(1, ranks_[1]->wait(30s), "rank 3 on rfhost1 (10.99.0.2)");
  expect_names(0, ranks_[0]->wait(30s), "rank 2 on rfhost1 (10.99.0.2)");
}

// A host group where only some pairs share memory (rank 2 of host 0 has a /dev/shm of its
// own): global rank 1 dies while the rings of ranks 0 and 1 are set up. Rank 0 names rank 1
// by its global rank and where it ran, as for a host group that shares memory throughout.
TEST_F(HierarchySetUp, ARankKilledWhileAMixedHostGroupSetsUpIsNamedByGlobalRankAndHost) {
  make_hosts({"rfhost0", "rfhost1"});
  if (!hosts_) return;
  for (int rank = 0; rank < 6; ++rank) {
    std::map<std::string, std::string> env{
        {"RANK", std::to_string(rank)}, {"WORLD_SIZE", "6"},
        {"LOCAL_RANK", std::to_string(rank % 3)}, {"LOCAL_WORLD_SIZE", "3"},
        {"GROUP_RANK", std::to_string(rank / 3)}, {"GROUP_WORLD_SIZE", "2"},
        {"MASTER_ADDR", hosts_->address(0)}, {"MASTER_PORT", "29519"},
        {"RINGFUSE_HIERARCHICAL", "1"}, {"RINGFUSE_CONNECT_TIMEOUT_S", rank == 0 ? "8" : "5"},
        {"RINGFUSE_JOB_SECRET", "hierarchy-set-up-secret"}};
    if (rank == 1) {
      env["LD_PRELOAD"] = STOP_AT_SHM_OPEN_PATH;
      env["RINGFUSE_TEST_AT_SHM_OPEN"] = "kill";
      env["RINGFUSE_TEST_AT_SHM_OPEN_NAME"] = "shm-group";
    }
    std::vector<std::string> argv{ALLREDUCE_LOOP_PATH, "1", "5"};
    if (rank == 2) {
      argv.insert(argv.begin(),
                  {"unshare", "--mount", "sh", "-c",
                   "mount -t tmpfs -o size=64m tmpfs /dev/shm && exec \"$0\" \"$@\""});
    }
    ranks_.push_back(std::make_unique<Process>(hosts_->on_host(rank / 3, argv), env));
  }
  const ProcessResult victim = ranks_[1]->wait(30s);
  EXPECT_EQ(victim.exit_code, 128 + SIGKILL) << victim.output;
  const ProcessResult r = ranks_[0]->wait(30s);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("rank 0: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1 on rfhost0 (10.99.0.1)"), std::string::npos) << r.output;
}

}  // namespace
