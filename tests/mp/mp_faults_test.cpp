// A rank killed in the middle of a large all-reduce: every other rank must fail with an error
// that names it, within 10 s, instead of hanging. The test hosts the store and starts the
// ranks itself (no launcher), so only the library's own failure detection is at work.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "rendezvous/tcp_store.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::Process;

std::vector<std::unique_ptr<Process>> start_world(int size, std::uint16_t store_port,
                                                  const std::string& transport_note) {
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.push_back(std::make_unique<Process>(
        std::vector<std::string>{COLLECTIVE_CHECK_PATH, "--mode", "endless", "--endless-count",
                                 std::to_string(1 << 22)},
        std::map<std::string, std::string>{
            {"RINGFUSE_RANK", std::to_string(rank)},
            {"RINGFUSE_SIZE", std::to_string(size)},
            {"RINGFUSE_STORE_ADDR", "127.0.0.1:" + std::to_string(store_port)},
            {"RINGFUSE_JOB_ID", "kill-test-" + transport_note},
            {"RINGFUSE_TRANSPORT", transport_note},
            {"RINGFUSE_TIMEOUT_S", "60"}}));
  }
  return ranks;
}

bool wait_until_running(const std::vector<std::unique_ptr<Process>>& ranks,
                        std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    for (const auto& rank : ranks) all = all && rank->output().find("running") != std::string::npos;
    if (all) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

class KillOneRank : public ::testing::TestWithParam<std::string> {};

TEST_P(KillOneRank, OthersFailFastNamingThePeer) {
  constexpr int kSize = 4;
  constexpr int kVictim = 2;
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  auto ranks = start_world(kSize, store.port(), GetParam());
  ASSERT_TRUE(wait_until_running(ranks, 60s)) << ranks[0]->output();

  ASSERT_EQ(::kill(ranks[kVictim]->pid(), SIGKILL), 0);
  const auto killed_at = std::chrono::steady_clock::now();
  for (int rank = 0; rank < kSize; ++rank) {
    if (rank == kVictim) continue;
    const auto result = ranks[rank]->wait(20s);
    const auto after_kill = std::chrono::steady_clock::now() - killed_at;
    ASSERT_FALSE(result.timed_out) << "rank " << rank << " hung:\n" << result.output;
    EXPECT_EQ(result.exit_code, 3) << result.output;
    EXPECT_LE(after_kill, 10s) << "rank " << rank << " took too long:\n" << result.output;
    EXPECT_NE(result.output.find("lost rank"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("rank " + std::to_string(kVictim)), std::string::npos)
        << "rank " << rank << " did not name the dead peer:\n"
        << result.output;
  }
  // Shared-memory segments are unlinked once mapped, so even a SIGKILL leaves none behind.
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    EXPECT_EQ(entry.path().filename().string().find("ringfuse-kill-test-"),
              std::string::npos)
        << "left behind: " << entry.path();
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, KillOneRank, ::testing::Values("tcp", "shm"),
                         [](const auto& info) { return info.param; });

}  // namespace
