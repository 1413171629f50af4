// Issue #17.5 on loopback (no root): pods resolving a headless Service through a dnsmasq the
// test starts, one of them in DNS but never started.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <filesystem>
#include <map>
#include <thread>

#include "dns_server.hpp"

#include "namespace_hosts_test.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ringfuse::testing::Process;
using ringfuse::testing::ProcessResult;

// Issue #17.5, on loopback (no root): four pods in the headless Service's DNS, pod 3 never
// starts, pods 1 and 2 start a second after pod 0. Every pod that started must name the pod
// that did not join, by index and address, not an internal store key or a lost connection.
TEST(LoopbackPods, APodInDnsThatNeverStartsIsNamedByEveryPod) {
  if (!fs::exists(ringfuse::testing::kDnsmasqPath)) {
    GTEST_SKIP() << ringfuse::testing::kDnsmasqPath << " is missing: install dnsmasq-base";
  }
  const std::string service = "trainer.default.svc.cluster.local";
  ringfuse::testing::Dnsmasq dns(service);
  ASSERT_TRUE(dns.ready()) << dns.log();
  for (int k = 0; k < 4; ++k) {
    const std::string ip = "127.0.0." + std::to_string(k + 2);
    dns.add_record("pod-" + std::to_string(k),
                   ip + " trainer-" + std::to_string(k) + "." + service + " " + service);
  }
  const auto port = ringfuse::testing::free_port(SOCK_STREAM);
  std::vector<std::unique_ptr<Process>> pods;
  for (int k = 0; k < 3; ++k) {
    if (k == 1) std::this_thread::sleep_for(1s);
    pods.push_back(std::make_unique<Process>(
        std::vector<std::string>{RINGFUSE_RUN_PATH, "--k8s-service", "trainer", "-np", "4",
                                 "--dns-server", dns.server(), "--port", std::to_string(port),
                                 "--start-timeout", "4", "--", "true"},
        std::map<std::string, std::string>{{"POD_IP", "127.0.0." + std::to_string(k + 2)},
                                           {"HOSTNAME", "trainer-" + std::to_string(k)},
                                           {"RINGFUSE_JOB_SECRET", "k8s-test-secret"}}));
  }
  for (int k = 0; k < 3; ++k) {
    const ProcessResult r = pods[k]->wait(30s);
    EXPECT_EQ(r.exit_code, 1) << "pod " << k << ":\n" << r.output;
    EXPECT_NE(r.output.find("pod 3 (127.0.0.5) has not joined after 4 s"), std::string::npos)
        << "pod " << k << ":\n" << r.output;
    EXPECT_EQ(r.output.find("ringfuse-run/k8s/"), std::string::npos)
        << "pod " << k << ":\n" << r.output;
    EXPECT_EQ(r.output.find("connection lost"), std::string::npos)
        << "pod " << k << ":\n" << r.output;
  }
}

}  // namespace
