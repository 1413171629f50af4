// Pods resolving a headless Service through a dnsmasq the test starts: on namespace hosts, and
// (issue #17.5, on loopback, no root) one of them in DNS but never started.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "dns_server.hpp"

#include "namespace_hosts_test.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ringfuse::testing::count_of;
using ringfuse::testing::NamespaceHostsTest;
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

// Four pods, each a namespace host named as a StatefulSet names its pods, find each other
// through a dnsmasq (started by the test on host 0, port 53) standing for the headless
// Service: pod 3 starts a second late and its DNS record appears later still; every pod's
// ranks all-reduce correctly over the bridge.
TEST_F(NamespaceHostsTest, FourPodsWithALateRecordFindEachOtherThroughDns) {
  make_hosts({"trainer-0", "trainer-1", "trainer-2", "trainer-3"});
  if (!hosts_) return;
  const std::string service = "trainer.default.svc.cluster.local";
  const fs::path records = hosts_->dir() / "dns-records";
  fs::create_directories(records);
  const auto add_pod = [&](int k) {
    std::ofstream(records / ("pod-" + std::to_string(k)))
        << hosts_->address(k) << " trainer-" << k << "." << service << " " << service << "\n";
  };
  for (int k = 0; k < 3; ++k) add_pod(k);
  Process dns(hosts_->on_host(0, {ringfuse::testing::kDnsmasqPath, "--keep-in-foreground",
                                  "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                                  "--hostsdir=" + records.string(), "--user=root",
                                  "--listen-address=" + hosts_->address(0), "--bind-interfaces",
                                  "--port=53", "--pid-file=", "--local=/cluster.local/",
                                  "--log-facility=-"}),
              {});
  const auto started = std::chrono::steady_clock::now() + 10s;
  while (dns.output().find("started") == std::string::npos &&
         std::chrono::steady_clock::now() < started) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_NE(dns.output().find("started"), std::string::npos) << dns.output();

  std::vector<std::unique_ptr<Process>> pods;
  for (int k = 0; k < 4; ++k) {
    if (k == 3) std::this_thread::sleep_for(1s);
    pods.push_back(std::make_unique<Process>(
        hosts_->on_host(k, {RINGFUSE_RUN_PATH, "--k8s-service", "trainer", "-np", "4",
                            "--dns-server", hosts_->address(0) + ":53", "--start-timeout", "30",
                            "--", COLLECTIVE_CHECK_PATH, "--collective", "allreduce",
                            "--counts", "1,1009", "--algos", "ring"}),
        std::map<std::string, std::string>{{"POD_IP", hosts_->address(k)},
                                           {"RINGFUSE_JOB_SECRET", "k8s-test-secret"}}));
  }
  std::this_thread::sleep_for(1s);
  add_pod(3);
  for (int k = 0; k < 4; ++k) {
    const ProcessResult r = pods[k]->wait(60s);
    EXPECT_EQ(r.exit_code, 0) << "pod " << k << ":\n" << r.output;
    EXPECT_NE(r.output.find("this is pod " + std::to_string(k) + " (" + hosts_->address(k) + ")"),
              std::string::npos)
        << r.output;
    EXPECT_EQ(count_of(r.output, "checks, 0 failed"), 1u) << r.output;
  }
}

}  // namespace
