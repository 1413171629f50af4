// Issue #17.4: whether ranks share memory is proven, not guessed from hostname and boot id.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "namespace_hosts_test.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::count_of;
using ringfuse::testing::NamespaceHostsTest;
using ringfuse::testing::Process;

// Issue #17.4: "hosts" with one hostname (and, on one kernel, one boot id) but a /dev/shm
// each, as two containers: shared memory must be proven, not guessed from the names; the
// world falls back to TCP and says why, while each host's own ranks still share memory.
TEST_F(NamespaceHostsTest, SameHostnameButSeparateDevShmIsProvenAndFallsBackToTcp) {
  make_hosts({"rfsame", "rfsame"});
  if (!hosts_) return;
  const auto r = launch_on_host0(
      {"-H", hosts_->host_list(2), "--rsh-agent", hosts_->agent(), "--store-addr",
       hosts_->address(0), "--hierarchical", "1", "--start-timeout", "20", "--",
       COLLECTIVE_CHECK_PATH, "--collective", "allreduce", "--counts", "1,1009,65537",
       "--algos", "ring"},
      60s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count_of(r.output, "checks, 0 failed"), 4u) << r.output;
  EXPECT_NE(r.output.find("cannot open each other's shared memory: 0-2, 0-3, 1-2, 1-3"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("2 ranks per host over shared memory, 2 hosts over tcp"),
            std::string::npos)
      << r.output;
}

// Issue #17.4, per pair: two "containers" with one hostname but a /dev/shm each, the first
// running ranks 0 and 1, the second rank 2. Ranks 0 and 1 share memory, rank 2 talks TCP to
// both (a ring mixes the two in one step: rank 1 receives from 0 over shared memory while it
// sends to 2 over TCP), every collective's results exact, and rank 0 logs which pairs use what.
TEST_F(NamespaceHostsTest, SharedMemoryIsDecidedPerPairAndTheOtherPairsUseTcp) {
  make_hosts({"rfsame", "rfsame"});
  if (!hosts_) return;
  const std::string hosts = hosts_->address(0) + ":2," + hosts_->address(1) + ":1";
  for (const char* collective :
       {"allreduce", "broadcast", "allgatherv", "reducescatter", "alltoallv", "barrier"}) {
    const auto r = launch_on_host0(
        {"-H", hosts, "--rsh-agent", hosts_->agent(), "--store-addr", hosts_->address(0),
         "--start-timeout", "20", "--log-level", "debug", "--", COLLECTIVE_CHECK_PATH,
         "--collective", collective,
         "--counts", "1,1009,65537", "--algos", "ring,tree,rhd"},
        60s);
    EXPECT_EQ(r.exit_code, 0) << collective << ":\n" << r.output;
    EXPECT_EQ(count_of(r.output, "checks, 0 failed"), 3u) << collective << ":\n" << r.output;
    EXPECT_NE(r.output.find("cannot open each other's shared memory: 0-2, 1-2"),
              std::string::npos)
        << collective << ":\n" << r.output;
    EXPECT_NE(r.output.find("these pairs use TCP, and shared memory joins ranks [0,1]"),
              std::string::npos)
        << collective << ":\n" << r.output;
    // The rings exist: ranks 0 and 1 each set up one to the other (ShmTransport's debug line).
    for (const char* rank : {"rank 0: ", "rank 1: "}) {
      EXPECT_NE(r.output.find(std::string(rank) + "shared-memory rings to 1 peers"),
                std::string::npos)
          << collective << ":\n" << r.output;
    }
  }
#ifdef ASYNC_FUSION_PATH
  // The engine too: its control channel waits for each peer's bytes on either transport.
  const auto r = launch_on_host0({"-H", hosts, "--rsh-agent", hosts_->agent(), "--store-addr",
                                  hosts_->address(0), "--start-timeout", "20", "--",
                                  ASYNC_FUSION_PATH},
                                 60s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count_of(r.output, ": ok; "), 3u) << r.output;
  EXPECT_NE(r.output.find("these pairs use TCP, and shared memory joins ranks [0,1]"),
            std::string::npos)
      << r.output;
#endif
}

// Issue #17.4 inside a hierarchy: two hosts of three ranks, all-reducing hierarchically; on
// host 0, rank 2 runs in a mount namespace of its own with its own /dev/shm (a container
// beside two others, with the same hostname and address). Host 0's group must still put
// ranks 0 and 1 on shared-memory rings and only the pairs with rank 2 on TCP, as a flat world
// does, with every result exact and the decision logged.
TEST_F(NamespaceHostsTest, AHostGroupDecidesSharedMemoryPerPair) {
  make_hosts({"rfhost0", "rfhost1"});
  if (!hosts_) return;
  const std::filesystem::path wrapper = hosts_->dir() / "own-dev-shm-for-rank-2.sh";
  std::ofstream(wrapper) << "#!/bin/sh\n"
                            "if [ \"$RINGFUSE_RANK\" = 2 ]; then\n"
                            "  exec unshare --mount sh -c 'mount -t tmpfs -o size=256m tmpfs "
                            "/dev/shm && exec \"$0\" \"$@\"' \"$@\"\n"
                            "fi\n"
                            "exec \"$@\"\n";
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
  const auto r = launch_on_host0(
      {"-H", hosts_->host_list(3), "--rsh-agent", hosts_->agent(), "--store-addr",
       hosts_->address(0), "--hierarchical", "1", "--start-timeout", "20", "--log-level",
       "debug", "--", wrapper.string(), COLLECTIVE_CHECK_PATH, "--collective", "allreduce",
       "--counts", "1,1009,65537", "--algos", "ring,rhd"},
      90s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count_of(r.output, "checks, 0 failed"), 6u) << r.output;
  // Host 0's group proves which pairs share memory and says so, naming global ranks.
  EXPECT_NE(r.output.find("cannot open each other's shared memory: 0-2, 1-2"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("these pairs use TCP, and shared memory joins ranks [0,1]"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("3 ranks per host over shared memory where they proved they share "
                          "it, tcp between the others, 2 hosts over tcp"),
            std::string::npos)
      << r.output;
  // The rings exist: ranks 0 and 1 each to the other; host 1's three ranks to each other.
  for (const char* ring : {"rank 0: shared-memory rings to 1 peers",
                           "rank 1: shared-memory rings to 1 peers",
                           "rank 3: shared-memory rings to 2 peers",
                           "rank 4: shared-memory rings to 2 peers",
                           "rank 5: shared-memory rings to 2 peers"}) {
    EXPECT_NE(r.output.find(ring), std::string::npos) << ring << ":\n" << r.output;
  }
  EXPECT_EQ(r.output.find("rank 2: shared-memory rings"), std::string::npos) << r.output;
  // The proof's own log names global ranks, not positions in the host group.
  EXPECT_NE(r.output.find("rank 0: the shared memory of rank 2 is not visible here"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("rank 2: the shared memory of rank 1 is not visible here"),
            std::string::npos)
      << r.output;
}

}  // namespace
