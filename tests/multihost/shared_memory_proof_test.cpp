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

}  // namespace
