// ringfuse-run --health-port: the real binary serving /healthz, /readyz and /metrics, queried
// with a raw-socket HTTP client. Every wait is bounded.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <iostream>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dns_server.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ringfuse::testing::Process;
using ringfuse::testing::ProcessResult;
using ringfuse::testing::free_port;
using ringfuse::testing::run_process;

struct HttpReply {
  int status = 0;  // 0: no answer (connection refused, timeout, garbage)
  std::string body;
};

// One request on a fresh connection; gives up after 2 s.
HttpReply http_request(std::uint16_t port, const std::string& request) {
  HttpReply reply;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return reply;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return reply;
  }
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string raw;
  const auto deadline = Clock::now() + 2s;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"
  if (raw.rfind("HTTP/1.", 0) != 0 || raw.size() < 12) return reply;
  reply.status = std::stoi(raw.substr(9, 3));
  const auto end = raw.find("\r\n\r\n");
  if (end != std::string::npos) reply.body = raw.substr(end + 4);
  return reply;
}

HttpReply get(std::uint16_t port, const std::string& path) {
  return http_request(port,
                      "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
}

// Polls `path` until `done` says so or `limit` passes; returns the last reply.
HttpReply poll_until(std::uint16_t port, const std::string& path,
                     const std::function<bool(const HttpReply&)>& done,
                     std::chrono::milliseconds limit = 10s) {
  const auto deadline = Clock::now() + limit;
  HttpReply reply;
  while (Clock::now() < deadline) {
    reply = get(port, path);
    if (done(reply)) break;
    std::this_thread::sleep_for(50ms);
  }
  return reply;
}

std::unique_ptr<Process> start_launcher(std::uint16_t port, int np, const std::string& script) {
  return std::make_unique<Process>(
      std::vector<std::string>{RINGFUSE_RUN_PATH, "--health-port", std::to_string(port), "-np",
                               std::to_string(np), "--", "/bin/sh", "-c", script},
      std::map<std::string, std::string>{});
}

TEST(HealthEndpoint, ServesReadinessHealthAndMetricsWhileRanksRun) {
  const std::uint16_t port = free_port(SOCK_STREAM);
  auto launcher = start_launcher(port, 2, "sleep 3");
  const HttpReply ready =
      poll_until(port, "/readyz", [](const HttpReply& r) { return r.status == 200; });
  ASSERT_EQ(ready.status, 200) << ready.body << launcher->output();
  EXPECT_EQ(ready.body, "ready\n");

  const HttpReply health = get(port, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");

  const HttpReply metrics = get(port, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("ringfuse_ranks{state=\"running\"} 2\n"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("ringfuse_ranks{state=\"failed\"} 0\n"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("ringfuse_local_ranks 2\n"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("# TYPE ringfuse_launcher_uptime_seconds gauge\n"),
            std::string::npos)
      << metrics.body;

  EXPECT_EQ(get(port, "/nope").status, 404);
  EXPECT_EQ(http_request(port, "this is not HTTP\r\n\r\n").status, 400);
  EXPECT_EQ(http_request(port, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                .status,
            405);

  const ProcessResult r = launcher->wait(20s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // The server went away with the launcher.
  EXPECT_EQ(get(port, "/healthz").status, 0);
}

// The ranks' own progress, published through the library's record and read by the launcher:
// fetched with curl, as a probe or a Prometheus scraper would, and linted by promtool.
TEST(HealthEndpoint, MetricsShowEachRanksStepAllreduceBytesAndBusBandwidth) {
  constexpr int kSteps = 20;
  constexpr std::uint64_t kBytesPerAllreduce = std::uint64_t{1} << 20;
  const std::uint16_t port = free_port(SOCK_STREAM);
  const auto release = std::filesystem::temp_directory_path() /
                       ("ringfuse-progress-release-" + std::to_string(port));
  std::filesystem::remove(release);
  Process launcher({RINGFUSE_RUN_PATH, "--health-port", std::to_string(port), "-np", "2", "--",
                    PROGRESS_RANK_PATH, std::to_string(kSteps), release.string()},
                   {});
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  ProcessResult scrape;
  const auto deadline = Clock::now() + 60s;
  while (Clock::now() < deadline) {
    scrape = run_process({CURL_PATH, "--silent", "--show-error", "--max-time", "3",
                          "--include", url},
                         {}, 10s);
    if (scrape.output.find("ringfuse_step{rank=\"1\"} " + std::to_string(kSteps) + "\n") !=
            std::string::npos &&
        scrape.output.find("ringfuse_step{rank=\"0\"} " + std::to_string(kSteps) + "\n") !=
            std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  const std::string& text = scrape.output;
  ASSERT_EQ(scrape.exit_code, 0) << text << launcher.output();
  EXPECT_NE(text.find("HTTP/1.1 200 OK"), std::string::npos) << text;
  EXPECT_NE(text.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << text;
  EXPECT_NE(text.find("ringfuse_ranks{state=\"running\"} 2\n"), std::string::npos) << text;
  for (int rank = 0; rank < 2; ++rank) {
    const std::string label = "{rank=\"" + std::to_string(rank) + "\"} ";
    EXPECT_NE(text.find("ringfuse_step" + label + std::to_string(kSteps) + "\n"),
              std::string::npos)
        << text << launcher.output();
    // One blocking and one engine all-reduce of 1 MiB per step.
    EXPECT_NE(text.find("ringfuse_allreduce_total" + label + std::to_string(2 * kSteps) + "\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("ringfuse_allreduce_bytes_total" + label +
                        std::to_string(2 * kSteps * kBytesPerAllreduce) + "\n"),
              std::string::npos)
        << text;
    std::smatch busbw;
    const std::regex busbw_line("ringfuse_allreduce_busbw_bytes_per_second\\{rank=\"" +
                                std::to_string(rank) + "\"\\} ([0-9]+)\n");
    ASSERT_TRUE(std::regex_search(text, busbw, busbw_line)) << text;
    EXPECT_GT(std::stod(busbw[1]), 1e6) << "a 1 MiB all-reduce on loopback beats 1 MB/s";
  }

  if (std::filesystem::exists(PROMTOOL_PATH)) {
    const auto lint = run_process(
        {"/bin/sh", "-c",
         std::string(CURL_PATH) + " --silent --show-error --max-time 3 " + url + " | " +
             PROMTOOL_PATH + " check metrics"},
        {}, 20s);
    EXPECT_EQ(lint.exit_code, 0) << "promtool check metrics:\n" << lint.output;
  } else {
    std::cout << "promtool not found at " << PROMTOOL_PATH
              << " (scripts/test.sh extracts it there): format not linted\n";
  }

  std::ofstream(release).put('\n');
  const ProcessResult r = launcher.wait(30s);
  std::filesystem::remove(release);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(HealthEndpoint, HealthzTurns503WhenARankFails) {
  const std::uint16_t port = free_port(SOCK_STREAM);
  // Rank 1 fails; the others ignore the SIGTERM that stops them, so the launcher stays up for
  // the 5 s grace period before SIGKILL, and the 503 is observable before it exits.
  auto launcher = start_launcher(
      port, 3,
      "if [ \"$RINGFUSE_RANK\" = 1 ]; then sleep 1; exit 3; fi; trap '' TERM; sleep 30");
  const HttpReply ready =
      poll_until(port, "/readyz", [](const HttpReply& r) { return r.status == 200; });
  ASSERT_EQ(ready.status, 200) << ready.body << launcher->output();
  const HttpReply failed =
      poll_until(port, "/healthz", [](const HttpReply& r) { return r.status != 200; });
  EXPECT_EQ(failed.status, 503) << failed.body << launcher->output();
  EXPECT_NE(failed.body.find("rank 1 exited with status 3"), std::string::npos) << failed.body;
  const HttpReply metrics = get(port, "/metrics");
  EXPECT_NE(metrics.body.find("ringfuse_rank_exit_code{rank=\"1\"} 3\n"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("ringfuse_ranks{state=\"failed\"} 1\n"), std::string::npos)
      << metrics.body;

  const ProcessResult r = launcher->wait(30s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 3) << r.output;
}

TEST(HealthEndpoint, ReadyzSaysStartingBeforeTheRanksStartInKubernetesMode) {
  // No DNS records and a dead DNS server: discovery cannot finish, so /readyz stays 503.
  const std::uint16_t port = free_port(SOCK_STREAM);
  const std::uint16_t dns_port = free_port(SOCK_DGRAM);
  Process launcher(
      {RINGFUSE_RUN_PATH, "--health-port", std::to_string(port), "--k8s-service", "trainer",
       "-np", "2", "--dns-server", "127.0.0.1:" + std::to_string(dns_port), "--start-timeout",
       "4", "--", "/bin/true"},
      {{"POD_IP", "127.0.0.2"}, {"HOSTNAME", "trainer-0"}, {"RINGFUSE_JOB_SECRET", "s"}});
  const HttpReply starting =
      poll_until(port, "/readyz", [](const HttpReply& r) { return r.status != 0; }, 3s);
  EXPECT_EQ(starting.status, 503) << launcher.output();
  EXPECT_EQ(starting.body.rfind("starting: discovering 2 pods of trainer.default", 0), 0u)
      << starting.body;
  EXPECT_EQ(get(port, "/healthz").status, 200);
  const ProcessResult r = launcher.wait(20s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

}  // namespace
