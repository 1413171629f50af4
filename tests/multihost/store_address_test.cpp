// Issue #17.1: the address remote ranks are told to reach the store at (store_address.hpp).
#include <gtest/gtest.h>

#include "namespace_hosts_test.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::count_of;
using ringfuse::testing::NamespaceHostsTest;
using ringfuse::testing::Process;

// Issue #17.1: without --store-addr, the ranks on other hosts must be told an address of the
// launcher's host that they can reach, not its name (127.0.1.1 in its /etc/hosts).
TEST_F(NamespaceHostsTest, DefaultStoreAddressIsTheOneThatRoutesToTheHosts) {
  make_hosts({"rfhost0", "rfhost1", "rfhost2"});
  if (!hosts_) return;
  const std::string script =
      "echo store=$RINGFUSE_STORE_ADDR; exec \"$0\" --collective allreduce --counts 1009 "
      "--algos ring";
  const auto r = launch_on_host0(
      {"-H", hosts_->address(1) + ":1," + hosts_->address(2) + ":1", "--rsh-agent",
       hosts_->agent(), "--start-timeout", "15", "--", "sh", "-c", script,
       COLLECTIVE_CHECK_PATH},
      40s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[1] store=10.99.0.1:"), std::string::npos) << r.output;
  EXPECT_EQ(count_of(r.output, "checks, 0 failed"), 2u) << r.output;
}

// The usual mpirun layout: launched on one of the hosts, with ranks there too. Those ranks
// advertise to their peers the address they reach the store at, so it must be one the other
// hosts reach, not 127.0.0.1 (their peers once failed to connect to rank 0 at 127.0.0.1).
TEST_F(NamespaceHostsTest, RanksOnTheLaunchersHostAreReachableFromTheOthers) {
  make_hosts({"rfhost0", "rfhost1"});
  if (!hosts_) return;
  const std::string script =
      "echo store=$RINGFUSE_STORE_ADDR; exec \"$0\" --collective allreduce --counts 1009 "
      "--algos ring";
  const auto r = launch_on_host0(
      {"-H", "localhost:2," + hosts_->address(1) + ":2", "--rsh-agent", hosts_->agent(),
       "--start-timeout", "15", "--", "sh", "-c", script, COLLECTIVE_CHECK_PATH},
      40s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count_of(r.output, "] store=10.99.0.1:"), 4u) << r.output;
  EXPECT_EQ(count_of(r.output, "checks, 0 failed"), 4u) << r.output;
}

// Issue #17.1: a remote host this host has no route to (a name only the rsh agent knows), and
// this host's name on loopback: refused at once, saying what to do.
TEST_F(NamespaceHostsTest, RemoteHostWithOnlyALoopbackAddressKnownIsRefusedAtOnce) {
  make_hosts({"rfhost0", "rfhost1"});
  if (!hosts_) return;
  const auto r = launch_on_host0({"-H", "rfhost1:1", "--rsh-agent", hosts_->agent(),
                                  "--start-timeout", "30", "--", "true"},
                                 25s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_LT(r.elapsed, 15s) << r.output;
  EXPECT_NE(r.output.find("'rfhost0' resolves to the loopback address 127.0.1.1; give "
                          "--store-addr ADDR"),
            std::string::npos)
      << r.output;
}

}  // namespace
