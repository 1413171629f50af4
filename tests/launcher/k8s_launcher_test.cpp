// ringfuse-run --k8s-service against a real DNS server: dnsmasq, started by the test on a
// loopback port, stands for the headless Service; four launchers with their own POD_IP
// (127.0.0.2-5) and hostname (trainer-0..3) stand for the pods. Every wait is bounded.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dns_server.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::Process;
using ringfuse::testing::free_port;
using ringfuse::testing::ProcessResult;
namespace fs = std::filesystem;

constexpr const char* kDnsmasq = ringfuse::testing::kDnsmasqPath;
constexpr const char* kService = "trainer.default.svc.cluster.local";

// A dnsmasq answering for cluster.local; each pod's record is a file of its own.
class Dnsmasq {
 public:
  Dnsmasq() : server_(kService) {
    if (!server_.ready()) ADD_FAILURE() << "dnsmasq did not answer within 10 s:\n" << server_.log();
  }

  /// Adds "127.0.0.X trainer-K.trainer... trainer..." lines (a pod's record) in a new file.
  void add_pod(int ordinal, const std::string& ip) {
    server_.add_record("pod-" + std::to_string(ordinal) + "-" + ip,
                       ip + " trainer-" + std::to_string(ordinal) + "." + kService + " " +
                           kService);
  }
  std::string server() const { return server_.server(); }

 private:
  ringfuse::testing::Dnsmasq server_;
};

struct Pod {
  std::string hostname;
  std::string ip;
  std::string secret = "k8s-test-secret";
};

class K8sLauncher : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kDnsmasq)) {
      GTEST_SKIP() << kDnsmasq << " is missing: install Debian's dnsmasq-base "
                   << "(scripts/install-deps.sh does) to run the Kubernetes discovery tests";
    }
    dns_ = std::make_unique<Dnsmasq>();
    store_port_ = free_port(SOCK_STREAM);
  }

  std::unique_ptr<Process> start(const Pod& pod, int np, double start_timeout = 20,
                                 std::vector<std::string> command = {
                                     COLLECTIVE_CHECK_PATH, "--collective", "allreduce",
                                     "--counts", "1,1009", "--algos", "ring"}) {
    std::vector<std::string> argv{RINGFUSE_RUN_PATH, "--k8s-service", "trainer", "-np",
                                  std::to_string(np), "--dns-server", dns_->server(), "--port",
                                  std::to_string(store_port_), "--start-timeout",
                                  std::to_string(start_timeout), "--transport", "tcp", "--"};
    argv.insert(argv.end(), command.begin(), command.end());
    return std::make_unique<Process>(
        argv, std::map<std::string, std::string>{{"POD_IP", pod.ip},
                                           {"HOSTNAME", pod.hostname},
                                           {"RINGFUSE_JOB_SECRET", pod.secret}});
  }

  static std::vector<Pod> four_pods() {
    std::vector<Pod> pods;
    for (int k = 0; k < 4; ++k) {
      pods.push_back({"trainer-" + std::to_string(k), "127.0.0." + std::to_string(k + 2)});
    }
    return pods;
  }

  static void expect_all_ran(std::vector<std::unique_ptr<Process>>& launchers) {
    for (std::size_t k = 0; k < launchers.size(); ++k) {
      const ProcessResult r = launchers[k]->wait(60s);
      const std::string ip = "127.0.0." + std::to_string(k + 2);
      EXPECT_EQ(r.exit_code, 0) << "pod " << k << ":\n" << r.output;
      EXPECT_NE(r.output.find("this is pod " + std::to_string(k) + " (" + ip + ")"),
                std::string::npos)
          << r.output;
      const std::string rank = std::to_string(k);
      std::string rank_line = "[";
      rank_line.append(rank).append("] rank ").append(rank).append(": allreduce");
      EXPECT_NE(r.output.find(rank_line), std::string::npos) << r.output;
      EXPECT_NE(r.output.find(" 0 failed"), std::string::npos) << r.output;
    }
  }

  std::unique_ptr<Dnsmasq> dns_;
  std::uint16_t store_port_ = 0;
};

TEST_F(K8sLauncher, FourPodsFindEachOtherAndAllReduce) {
  const auto pods = four_pods();
  for (int k = 0; k < 4; ++k) dns_->add_pod(k, pods[k].ip);
  std::vector<std::unique_ptr<Process>> launchers;
  for (const auto& pod : pods) launchers.push_back(start(pod, 4));
  expect_all_ran(launchers);
}

// torch's env:// (init_process_group with no init_method) meets at MASTER_ADDR:MASTER_PORT,
// where rank 0 serves a torch TCPStore: every rank must be told pod 0's address and one port
// that is free in pod 0, not the port of our own store, which speaks another protocol.
TEST_F(K8sLauncher, EveryRankIsToldOneTorchMasterInPodZero) {
  const auto pods = four_pods();
  for (int k = 0; k < 4; ++k) dns_->add_pod(k, pods[k].ip);
  std::vector<std::unique_ptr<Process>> launchers;
  for (const auto& pod : pods) {
    launchers.push_back(start(pod, 4, 20, {"/bin/sh", "-c", "echo torch $MASTER_ADDR:$MASTER_PORT"}));
  }
  std::set<std::string> masters;
  const std::regex told(R"(\] torch (\S+))");
  for (auto& launcher : launchers) {
    const ProcessResult r = launcher->wait(30s);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    for (std::sregex_iterator m(r.output.begin(), r.output.end(), told), end; m != end; ++m) {
      masters.insert((*m)[1]);
    }
  }
  ASSERT_EQ(masters.size(), 1u) << "every rank must be told the same master";
  const std::string master = *masters.begin();
  ASSERT_TRUE(master.starts_with(pods[0].ip + ":")) << master;
  const int port = std::stoi(master.substr(pods[0].ip.size() + 1));
  EXPECT_GT(port, 0);
  EXPECT_NE(port, store_port_) << "MASTER_PORT must not be our store's port";
}

#ifdef ENV_INIT_SCRIPT
// The same, end to end: a torch.distributed program with no init_method in each of two pods.
TEST_F(K8sLauncher, TorchEnvInitMeetsInPodZero) {
  const auto pods = four_pods();
  for (int k = 0; k < 2; ++k) dns_->add_pod(k, pods[k].ip);
  std::vector<std::unique_ptr<Process>> launchers;
  for (int k = 0; k < 2; ++k) {
    launchers.push_back(start(pods[k], 2, 20,
                              {"/usr/bin/env", "PYTHONPATH=" PYTHON_BUILD_DIR,
                               "RINGFUSE_LOG_LEVEL=warn", PYTHON_PATH, ENV_INIT_SCRIPT,
                               "ringfuse"}));
  }
  for (int k = 0; k < 2; ++k) {
    const ProcessResult r = launchers[k]->wait(90s);
    EXPECT_EQ(r.exit_code, 0) << "pod " << k << ":\n" << r.output;
    EXPECT_NE(r.output.find("ringfuse from env:// at " + pods[0].ip + ":"), std::string::npos)
        << "pod " << k << ":\n" << r.output;
  }
}
#endif

TEST_F(K8sLauncher, RecordsAddedWhileTheLaunchersWait) {
  const auto pods = four_pods();
  dns_->add_pod(0, pods[0].ip);
  dns_->add_pod(1, pods[1].ip);
  std::vector<std::unique_ptr<Process>> launchers;
  for (const auto& pod : pods) launchers.push_back(start(pod, 4));
  // Wait until every launcher reported the missing pods, then let them "start".
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  for (auto& launcher : launchers) {
    while (launcher->output().find("2/4 peers: missing trainer-2") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(100ms);
    }
    EXPECT_NE(launcher->output().find("2/4 peers: missing trainer-2 (NXDOMAIN"),
              std::string::npos)
        << launcher->output();
  }
  dns_->add_pod(2, pods[2].ip);
  dns_->add_pod(3, pods[3].ip);
  expect_all_ran(launchers);
}

TEST_F(K8sLauncher, AMissingPodFailsEveryLauncherNamingIt) {
  const auto pods = four_pods();
  for (int k = 0; k < 3; ++k) dns_->add_pod(k, pods[k].ip);
  std::vector<std::unique_ptr<Process>> launchers;
  for (int k = 0; k < 3; ++k) launchers.push_back(start(pods[k], 4, 3));
  for (auto& launcher : launchers) {
    const ProcessResult r = launcher->wait(20s);
    EXPECT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_LT(r.elapsed, 10s) << r.output;
    EXPECT_NE(r.output.find("gave up on discovery"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("missing trainer-3 (NXDOMAIN"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("] rank "), std::string::npos) << "no rank may start:\n" << r.output;
  }
}

// A pod whose rank ends before joining (exit 0 before init()): the pods waiting for it stop at
// once, naming it, instead of at the start timeout.
TEST_F(K8sLauncher, ARankThatEndsBeforeJoiningIsNamedAtOnceInTheOtherPods) {
  const auto pods = four_pods();
  for (int k = 0; k < 2; ++k) dns_->add_pod(k, pods[k].ip);
  const std::string script =
      "if [ \"$RINGFUSE_RANK\" = 1 ]; then exit 0; fi; "
      "exec \"$0\" --collective allreduce --counts 1 --algos ring";
  const auto started = std::chrono::steady_clock::now();
  auto pod0 = start(pods[0], 2, 60, {"/bin/sh", "-c", script, COLLECTIVE_CHECK_PATH});
  auto pod1 = start(pods[1], 2, 60, {"/bin/sh", "-c", script, COLLECTIVE_CHECK_PATH});
  const ProcessResult r0 = pod0->wait(50s);
  const ProcessResult r1 = pod1->wait(10s);
  EXPECT_EQ(r0.exit_code, 2) << r0.output;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s) << r0.output;
  EXPECT_NE(r0.output.find("rank 1 exited with status 0 (pid "), std::string::npos) << r0.output;
  EXPECT_NE(r0.output.find(" on trainer-1) before it joined"), std::string::npos) << r0.output;
  EXPECT_EQ(r1.exit_code, 0) << r1.output;
}

TEST_F(K8sLauncher, ADuplicateOrdinalIsAClearError) {
  std::vector<Pod> pods = four_pods();
  pods[2].hostname = "trainer-1";  // two pods claim ordinal 1
  dns_->add_pod(0, pods[0].ip);
  dns_->add_pod(1, pods[1].ip);
  dns_->add_pod(1, pods[2].ip);
  dns_->add_pod(3, pods[3].ip);
  std::vector<std::unique_ptr<Process>> launchers;
  for (const auto& pod : pods) launchers.push_back(start(pod, 4, 10));
  for (auto& launcher : launchers) {
    const ProcessResult r = launcher->wait(20s);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_LT(r.elapsed, 8s) << r.output;
    EXPECT_NE(r.output.find("duplicate ordinal 1: trainer-1.trainer.default.svc.cluster.local "
                            "resolves to 127.0.0.3, 127.0.0.4"),
              std::string::npos)
        << r.output;
  }
}

TEST_F(K8sLauncher, APodBeyondNIsAClearError) {
  const auto pods = four_pods();
  for (int k = 0; k < 4; ++k) dns_->add_pod(k, pods[k].ip);
  const ProcessResult r = start(pods[3], 3, 10)->wait(20s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("a peer beyond N"), std::string::npos) << r.output;
}

TEST_F(K8sLauncher, APodWithAnotherSecretIsRefused) {
  std::vector<Pod> pods = four_pods();
  pods.resize(2);
  pods[1].secret = "not-the-job-secret";
  for (int k = 0; k < 2; ++k) dns_->add_pod(k, pods[k].ip);
  std::vector<std::unique_ptr<Process>> launchers;
  for (const auto& pod : pods) launchers.push_back(start(pod, 2, 4));
  const ProcessResult intruder = launchers[1]->wait(20s);
  EXPECT_EQ(intruder.exit_code, 1) << intruder.output;
  EXPECT_EQ(intruder.output.find("] rank "), std::string::npos) << intruder.output;
  const ProcessResult pod0 = launchers[0]->wait(20s);
  EXPECT_EQ(pod0.exit_code, 1) << pod0.output;
  EXPECT_EQ(pod0.output.find("] rank "), std::string::npos) << pod0.output;
}

}  // namespace
