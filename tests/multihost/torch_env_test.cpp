// torch.distributed's default rendezvous (env://) across namespace hosts under ringfuse-run:
// MASTER_ADDR:MASTER_PORT must be where rank 0 serves torch's TCPStore, reachable from the
// other hosts, whether rank 0 runs on the launcher's host or on another one.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <vector>

#include "namespace_hosts_test.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::count_of;
using ringfuse::testing::NamespaceHostsTest;

#ifdef ENV_INIT_SCRIPT
TEST_F(NamespaceHostsTest, TorchEnvInitMeetsAtRankZerosHost) {
  make_hosts({"rfhost0", "rfhost1", "rfhost2"});
  if (!hosts_) return;
  struct Layout {
    std::string hosts;
    std::string backend;
    std::string master;
  };
  // Rank 0 on another host (told by the address it was given), then on the launcher's (told by
  // the address of the launcher's host that routes to the others).
  for (const auto& [hosts, backend, master] :
       {Layout{hosts_->address(1) + ":1," + hosts_->address(2) + ":1", "gloo",
               hosts_->address(1)},
        Layout{"localhost:1," + hosts_->address(2) + ":1", "ringfuse", hosts_->address(0)}}) {
    const auto r = launch_on_host0(
        {"-H", hosts, "--rsh-agent", hosts_->agent(), "-x", "PYTHONPATH=" PYTHON_BUILD_DIR,
         "-x", "RINGFUSE_LOG_LEVEL=warn",
         // Gloo finds its own address from the hostname, which each host's /etc/hosts maps to
         // 127.0.1.1 (as Debian's does): Gloo's users name the interface.
         "-x", "GLOO_SOCKET_IFNAME=eth0", "--", PYTHON_PATH, ENV_INIT_SCRIPT, backend},
        90s);
    EXPECT_EQ(r.exit_code, 0) << hosts << "\n" << r.output;
    EXPECT_EQ(count_of(r.output, backend + " from env:// at " + master + ":"), 2u)
        << hosts << "\n" << r.output;
  }
}

// As a PyTorchJob starts its pods: no launcher, torchrun's variables, MASTER_ADDR the first
// pod's address; two ranks on each of two hosts. The "ringfuse" group's ranks must advertise
// addresses the other host reaches, and sum right.
TEST_F(NamespaceHostsTest, TorchEnvInitAcrossHostsWithoutALauncher) {
  make_hosts({"rfhost0", "rfhost1"});
  if (!hosts_) return;
  std::vector<std::unique_ptr<ringfuse::testing::Process>> ranks;
  for (int rank = 0; rank < 4; ++rank) {
    ranks.push_back(std::make_unique<ringfuse::testing::Process>(
        hosts_->on_host(rank / 2, {PYTHON_PATH, ENV_INIT_SCRIPT, "ringfuse"}),
        std::map<std::string, std::string>{
            {"RANK", std::to_string(rank)}, {"WORLD_SIZE", "4"},
            {"LOCAL_RANK", std::to_string(rank % 2)}, {"LOCAL_WORLD_SIZE", "2"},
            {"GROUP_RANK", std::to_string(rank / 2)}, {"GROUP_WORLD_SIZE", "2"},
            {"MASTER_ADDR", hosts_->address(0)}, {"MASTER_PORT", "29531"},
            {"PYTHONPATH", PYTHON_BUILD_DIR}, {"RINGFUSE_LOG_LEVEL", "warn"}}));
  }
  for (int rank = 0; rank < 4; ++rank) {
    const auto r = ranks[rank]->wait(90s);
    EXPECT_EQ(r.exit_code, 0) << "rank " << rank << ":\n" << r.output;
    EXPECT_NE(r.output.find("all_reduce of 4 ranks right"), std::string::npos) << r.output;
  }
}
#else
TEST_F(NamespaceHostsTest, TorchEnvInitMeetsAtRankZerosHost) {
  GTEST_SKIP() << "built without the Python front-ends (RINGFUSE_WITH_PYTHON)";
}
#endif

}  // namespace
