// Point-to-point between real processes on loopback: a 4-stage pipeline and any-source under
// ringfuse-run, a killed sender named by its receiver within a bound, and the ring under plain
// mpirun with RINGFUSE_BACKEND=mpi (MPI_Isend/MPI_Irecv).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "rendezvous/tcp_store.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

void expect_all_ok(int ranks, const std::string& mode, const ringfuse::testing::ProcessResult& result) {
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < ranks; ++rank) {
    EXPECT_NE(result.output.find("rank " + std::to_string(rank) + ": " + mode + " ok"),
              std::string::npos)
        << "rank " << rank << " did not report:\n"
        << result.output;
  }
}

void run_under_launcher(int ranks, const std::string& mode, const std::string& transport) {
  const auto result = ringfuse::testing::run_process(
      {RINGFUSE_RUN_PATH, "-np", std::to_string(ranks), "--", P2P_CHECK_PATH, "--mode", mode},
      {{"RINGFUSE_TIMEOUT_S", "30"}, {"RINGFUSE_TRANSPORT", transport}}, 2min);
  expect_all_ok(ranks, mode, result);
}

TEST(PointToPointProcesses, FourStagePipelineUnderRingfuseRun) {
  run_under_launcher(4, "pipeline", "auto");
}

TEST(PointToPointProcesses, AnySourceAtThreeRanks) { run_under_launcher(3, "anysource", "auto"); }

TEST(PointToPointProcesses, RingOverTcp) { run_under_launcher(3, "ring", "tcp"); }

// Shared-memory pipes between processes, 1 MiB messages: single copy, shared by both sides.
TEST(PointToPointProcesses, RingOverSharedMemory) { run_under_launcher(3, "ring", "auto"); }

using Ranks = std::vector<std::unique_ptr<ringfuse::testing::Process>>;

// `size` ranks of p2p_check in `mode`, started by the test around its own store (so only the
// library's own failure detection is at work), with `extra` in their environment.
Ranks start_p2p_check(const ringfuse::rendezvous::TcpStoreServer& store, int size,
                      const std::string& mode, const std::string& job,
                      const std::map<std::string, std::string>& extra = {}) {
  Ranks ranks;
  for (int rank = 0; rank < size; ++rank) {
    std::map<std::string, std::string> env{
        {"RINGFUSE_RANK", std::to_string(rank)},
        {"RINGFUSE_SIZE", std::to_string(size)},
        {"RINGFUSE_STORE_ADDR", "127.0.0.1:" + std::to_string(store.port())},
        {"RINGFUSE_JOB_ID", job + std::to_string(::getpid())},
        {"RINGFUSE_TIMEOUT_S", "60"}};
    env.insert(extra.begin(), extra.end());
    ranks.push_back(std::make_unique<ringfuse::testing::Process>(
        std::vector<std::string>{P2P_CHECK_PATH, "--mode", mode}, env));
  }
  return ranks;
}

// Waits (at most 60 s) until ranks `a` and `b` say they are running.
void wait_running(const Ranks& ranks, int a, int b) {
  const auto deadline = Clock::now() + 60s;
  while (Clock::now() < deadline && (ranks[a]->output().find("running") == std::string::npos ||
                                     ranks[b]->output().find("running") == std::string::npos)) {
    std::this_thread::sleep_for(20ms);
  }
}

// The test hosts the store and starts the ranks itself, so only the library's own detection
// is at work: the receiver must name the killed sender well before RINGFUSE_TIMEOUT_S (60 s).
class KilledSender : public ::testing::TestWithParam<std::string> {};

TEST_P(KilledSender, IsNamedByItsReceiver) {
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  const auto ranks = start_p2p_check(
      store, 2, "victim", "p2p-victim-" + GetParam(),
      {{"RINGFUSE_TRANSPORT", GetParam()}, {"RINGFUSE_LOG_LEVEL", "debug"}});
  wait_running(ranks, 0, 1);
  ASSERT_NE(ranks[1]->output().find("running"), std::string::npos) << ranks[1]->output();
  ASSERT_EQ(::kill(ranks[0]->pid(), SIGKILL), 0);
  const auto killed_at = Clock::now();
  const auto result = ranks[1]->wait(30s);
  const auto took = Clock::now() - killed_at;
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_LE(took, 10s) << result.output;
  EXPECT_NE(result.output.find("rank 1: point-to-point: rank 0 closed its connection without "
                               "leaving in order"),
            std::string::npos)
      << result.output;
  // Which data plane the pair used: shared memory unless TCP was asked for.
  const auto sender = ranks[0]->wait(5s);
  EXPECT_NE(sender.output.find(std::string("rank 0: point-to-point: connected to rank 1 over ") +
                               (GetParam() == "tcp" ? "tcp" : "shared memory")),
            std::string::npos)
      << sender.output;
}

INSTANTIATE_TEST_SUITE_P(Transports, KilledSender, ::testing::Values("tcp", "auto"),
                         [](const auto& info) { return info.param; });

// Inside a child the killed sender is named by its global rank: global rank 0 is rank 1 of
// subgroup {2, 0}, and global rank 2 receives from it.
TEST(KilledSenderInAChild, IsNamedByItsGlobalRank) {
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  const auto ranks = start_p2p_check(store, 3, "child-victim", "p2p-child-victim-");
  wait_running(ranks, 0, 2);
  ASSERT_NE(ranks[2]->output().find("running"), std::string::npos) << ranks[2]->output();
  ASSERT_EQ(::kill(ranks[0]->pid(), SIGKILL), 0);
  const auto result = ranks[2]->wait(30s);
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_NE(result.output.find("rank 2: subgroup 1 (ranks 2,0) of world: point-to-point: rank 0 "
                               "closed its connection without leaving in order"),
            std::string::npos)
      << result.output;
  ranks[1]->wait(30s);  // its world barrier fails: rank 0 is gone
  ranks[0]->wait(5s);
}

// A send of a message larger than the eager limit waits for its receive (the receiver keeps
// no more than its bound of unexpected data); when the receiver is killed meanwhile, the
// sender names it, the tag and the bytes within seconds, and never reports the send done.
class KilledReceiverDuringARendezvous : public ::testing::TestWithParam<std::string> {};

TEST_P(KilledReceiverDuringARendezvous, IsNamedByTheWaitingSender) {
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  const auto ranks = start_p2p_check(store, 2, "rendezvous-victim",
                                     "p2p-rdv-victim-" + GetParam(),
                                     {{"RINGFUSE_TRANSPORT", GetParam()}});
  wait_running(ranks, 0, 1);
  ASSERT_NE(ranks[1]->output().find("running"), std::string::npos) << ranks[1]->output();
  std::this_thread::sleep_for(300ms);  // rank 0 into its send
  ASSERT_EQ(::kill(ranks[1]->pid(), SIGKILL), 0);
  const auto killed_at = Clock::now();
  const auto result = ranks[0]->wait(30s);
  const auto took = Clock::now() - killed_at;
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_LE(took, 10s) << result.output;
  EXPECT_EQ(result.output.find("completed without a receive"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("rank 0: point-to-point: rank 1 closed its end of the connection "
                               "(it exited, crashed or was killed) while this rank's send of "
                               "8388608 bytes (tag 1) to it was not done"),
            std::string::npos)
      << result.output;
  ranks[1]->wait(5s);
}

INSTANTIATE_TEST_SUITE_P(Transports, KilledReceiverDuringARendezvous,
                         ::testing::Values("tcp", "auto"),
                         [](const auto& info) { return info.param; });

#ifdef MPIRUN_PATH
class UnderMpirun : public ::testing::TestWithParam<std::string> {};

TEST_P(UnderMpirun, WithTheMpiBackend) {
  std::vector<std::string> argv{MPIRUN_PATH, "--oversubscribe", "-np", "3"};
  if (::geteuid() == 0) argv.insert(argv.begin() + 1, "--allow-run-as-root");
  argv.insert(argv.end(), {P2P_CHECK_PATH, "--mode", GetParam()});
  const auto result = ringfuse::testing::run_process(
      argv,
      {{"RINGFUSE_TIMEOUT_S", "30"}, {"RINGFUSE_BACKEND", "mpi"},
       {"OMPI_MCA_btl", "self,vader,tcp"}},
      2min);
  expect_all_ok(3, GetParam(), result);
  EXPECT_NE(result.output.find("backends mpi,native"), std::string::npos) << result.output;
}

INSTANTIATE_TEST_SUITE_P(PointToPoint, UnderMpirun, ::testing::Values("ring", "anysource"),
                         [](const auto& info) { return info.param; });
#endif

}  // namespace
