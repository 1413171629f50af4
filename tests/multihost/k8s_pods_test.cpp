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

// Four pods of a StatefulSet "trainer" (trainer-k at 127.0.0.(k+2)) in the headless Service's
// DNS, served by a dnsmasq the test starts; the test decides which of them start, and when.
// Loopback only (no root).
class LoopbackPods : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(ringfuse::testing::kDnsmasqPath)) {
      GTEST_SKIP() << ringfuse::testing::kDnsmasqPath << " is missing: install dnsmasq-base";
    }
    dns_ = std::make_unique<ringfuse::testing::Dnsmasq>(kService);
    ASSERT_TRUE(dns_->ready()) << dns_->log();
    for (int k = 0; k < 4; ++k) {
      dns_->add_record("pod-" + std::to_string(k),
                       address(k) + " trainer-" + std::to_string(k) + "." + kService + " " +
                           kService);
    }
  }

  static std::string address(int pod) { return "127.0.0." + std::to_string(pod + 2); }

  // Starts pod `pod`'s ringfuse-run (-np 4, --start-timeout 4, running `true`).
  std::unique_ptr<Process> start_pod(int pod) {
    return std::make_unique<Process>(
        std::vector<std::string>{RINGFUSE_RUN_PATH, "--k8s-service", "trainer", "-np", "4",
                                 "--dns-server", dns_->server(), "--port", std::to_string(port_),
                                 "--start-timeout", "4", "--", "true"},
        std::map<std::string, std::string>{{"POD_IP", address(pod)},
                                           {"HOSTNAME", "trainer-" + std::to_string(pod)},
                                           {"RINGFUSE_JOB_SECRET", "k8s-test-secret"}});
  }

  // Every started pod (`pods[i]` is pod `named[i].first`) failed saying `named[i].second`
  // ("trainer-3 (127.0.0.5) has not joined after 4 s") and nothing less: not an internal
  // store key, not a lost or refused connection to the store.
  void expect_pods_say(const std::vector<std::unique_ptr<Process>>& pods,
                       const std::vector<std::pair<int, std::string>>& named) {
    for (std::size_t i = 0; i < pods.size(); ++i) {
      const ProcessResult r = pods[i]->wait(30s);
      const auto& [k, text] = named[i];
      EXPECT_EQ(r.exit_code, 1) << "pod " << k << ":\n" << r.output;
      EXPECT_NE(r.output.find(text), std::string::npos) << "pod " << k << ":\n" << r.output;
      EXPECT_EQ(r.output.find("ringfuse-run/k8s/"), std::string::npos)
          << "pod " << k << ":\n" << r.output;
      EXPECT_EQ(r.output.find("connection lost"), std::string::npos)
          << "pod " << k << ":\n" << r.output;
    }
  }

  static constexpr const char* kService = "trainer.default.svc.cluster.local";
  std::unique_ptr<ringfuse::testing::Dnsmasq> dns_;
  std::uint16_t port_ = ringfuse::testing::free_port(SOCK_STREAM);
};

// Issue #17.5: pod 3 is in DNS but never starts, pods 1 and 2 start a second after pod 0.
// Every pod that started must name the pod that did not join, by its name and address.
TEST_F(LoopbackPods, APodInDnsThatNeverStartsIsNamedByEveryPod) {
  std::vector<std::unique_ptr<Process>> pods;
  for (int k = 0; k < 3; ++k) {
    if (k == 1) std::this_thread::sleep_for(1s);
    pods.push_back(start_pod(k));
  }
  const std::string text = "trainer-3 (127.0.0.5) has not joined after 4 s";
  expect_pods_say(pods, {{0, text}, {1, text}, {2, text}});
}

// Issue #17.5: pod 2 starts only after pod 0 has given up (4 s) on pods 2 and 3: it must
// still read from pod 0's store which pod is missing, not find the store gone.
TEST_F(LoopbackPods, APodStartingAfterPodZeroGaveUpNamesTheMissingPod) {
  std::vector<std::unique_ptr<Process>> pods;
  pods.push_back(start_pod(0));
  pods.push_back(start_pod(1));
  std::this_thread::sleep_for(5500ms);
  pods.push_back(start_pod(2));
  const std::string both = "trainer-2 (127.0.0.4), trainer-3 (127.0.0.5) have not joined after 4 s";
  expect_pods_say(pods, {{0, both}, {1, both}, {2, "trainer-3 (127.0.0.5) has not joined after 4 s"}});
}

// Issue #17.5: pod 0, which serves the store, is in DNS but never starts: the others name it.
TEST_F(LoopbackPods, PodZeroInDnsThatNeverStartsIsNamedByEveryPod) {
  std::vector<std::unique_ptr<Process>> pods;
  for (int k = 1; k < 4; ++k) pods.push_back(start_pod(k));
  const std::string text = "trainer-0 (127.0.0.2) has not joined after 4 s";
  expect_pods_say(pods, {{1, text}, {2, text}, {3, text}});
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
