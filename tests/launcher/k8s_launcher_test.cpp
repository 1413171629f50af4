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
#include <string>
#include <thread>
#include <vector>

#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::Process;
using ringfuse::testing::ProcessResult;
namespace fs = std::filesystem;

constexpr const char* kDnsmasq = "/usr/sbin/dnsmasq";
constexpr const char* kService = "trainer.default.svc.cluster.local";

std::uint16_t free_port(int type) {
  const int fd = ::socket(AF_INET, type, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Whether a DNS server answers an A query for `name` on 127.0.0.1:port within 200 ms.
bool dns_answers(std::uint16_t port, const std::string& name) {
  std::string packet("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
  std::size_t start = 0;
  while (start <= name.size()) {
    const auto dot = name.find('.', start);
    const auto label = name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    packet += static_cast<char>(label.size());
    packet += label;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  packet += std::string("\x00\x00\x01\x00\x01", 5);
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  timeval tv{0, 200'000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  char reply[512];
  const auto n = ::recv(fd, reply, sizeof reply, 0);
  ::close(fd);
  return n > 0;
}

// A dnsmasq answering for cluster.local from a hosts directory it re-reads on every change.
class Dnsmasq {
 public:
  Dnsmasq() : dir_(fs::temp_directory_path() / ("ringfuse-dns-" + std::to_string(::getpid()))) {
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "hosts");
    port_ = free_port(SOCK_DGRAM);
    process_ = std::make_unique<Process>(
        std::vector<std::string>{kDnsmasq, "--keep-in-foreground", "--conf-file=/dev/null",
                                 "--no-resolv", "--no-hosts",
                                 "--hostsdir=" + (dir_ / "hosts").string(),
                                 "--listen-address=127.0.0.1", "--bind-interfaces",
                                 "--port=" + std::to_string(port_), "--pid-file=",
                                 "--local=/cluster.local/", "--log-facility=-"},
        std::map<std::string, std::string>{});
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!dns_answers(port_, kService)) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "dnsmasq did not answer within 10 s:\n" << process_->output();
        break;
      }
      std::this_thread::sleep_for(100ms);
    }
  }
  ~Dnsmasq() {
    ::kill(process_->pid(), SIGTERM);
    process_->wait(5s);
    fs::remove_all(dir_);
  }

  /// Adds "127.0.0.X trainer-K.trainer... trainer..." lines (a pod's record) in a new file.
  void add_pod(int ordinal, const std::string& ip) {
    std::ofstream(dir_ / "hosts" / ("pod-" + std::to_string(ordinal) + "-" + ip)) << ip << " trainer-" << ordinal << "." << kService << " "
                                                    << kService << "\n";
  }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  fs::path dir_;
  std::uint16_t port_ = 0;
  std::unique_ptr<Process> process_;
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

  std::unique_ptr<Process> start(const Pod& pod, int np, double start_timeout = 20) {
    return std::make_unique<Process>(
        std::vector<std::string>{RINGFUSE_RUN_PATH, "--k8s-service", "trainer", "-np",
                                 std::to_string(np), "--dns-server", dns_->server(), "--port",
                                 std::to_string(store_port_), "--start-timeout",
                                 std::to_string(start_timeout), "--transport", "tcp", "--",
                                 COLLECTIVE_CHECK_PATH, "--collective", "allreduce", "--counts",
                                 "1,1009", "--algos", "ring"},
        std::map<std::string, std::string>{{"POD_IP", pod.ip},
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
      EXPECT_NE(r.output.find("[" + std::to_string(k) + "] rank " + std::to_string(k) +
                              ": allreduce"),
                std::string::npos)
          << r.output;
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
