// Issue #17.4: whether ranks share memory is proven, not guessed from hostname and boot id.
#include <gtest/gtest.h>

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

}  // namespace
