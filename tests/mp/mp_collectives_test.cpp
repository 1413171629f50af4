// What only real processes show: ringfuse-run launching N ranks, init() bootstrapping each from
// its environment through the TCP store, the transport set up between processes, and every
// collective end to end through the Context on each transport; each rank checks its results
// against a reference (collective_check.cpp). The algorithms themselves, over every dtype × op
// × count × N ∈ 1..8 and misaligned buffers, are checked in-process (tests/inproc, label
// inproc), which takes a fraction of the time; faults are in mp_faults_test.
#include <gtest/gtest.h>

#include <ostream>
#include <regex>
#include <string>
#include <vector>

#include "subprocess.hpp"

namespace {

// Small counts: every dtype × op × algorithm still runs, in milliseconds.
constexpr const char* kSmallCounts = "0,1,1009";
// Large enough for the ring and the shared-memory rings' wrap-around between processes.
constexpr const char* kLargeCount = "786433";

struct Run {
  int ranks;
  std::string collective;
  std::string transport;  // RINGFUSE_TRANSPORT
  std::string counts;     // collective_check --counts
};

void PrintTo(const Run& run, std::ostream* out) {
  *out << run.collective << " on " << run.ranks << " ranks over " << run.transport << ", counts "
       << run.counts;
}

class CollectiveMatrix : public ::testing::TestWithParam<Run> {};

TEST_P(CollectiveMatrix, EveryRankMatchesTheReference) {
  const auto& [ranks, collective, transport, counts] = GetParam();
  const auto result = ringfuse::testing::run_process(
      {RINGFUSE_RUN_PATH, "-np", std::to_string(ranks), "--", COLLECTIVE_CHECK_PATH,
       "--collective", collective, "--counts", counts},
      {{"RINGFUSE_TIMEOUT_S", "60"}, {"RINGFUSE_TRANSPORT", transport}},
      std::chrono::minutes(4));
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < ranks; ++rank) {
    EXPECT_NE(result.output.find("rank " + std::to_string(rank) + ": " + collective + " "),
              std::string::npos)
        << "rank " << rank << " did not report\n"
        << result.output;
  }
  EXPECT_EQ(result.output.find("MISMATCH"), std::string::npos) << result.output;
}

std::string name(const ::testing::TestParamInfo<Run>& info) {
  return info.param.collective + "_np" + std::to_string(info.param.ranks) + "_" +
         info.param.transport + (info.param.counts == kLargeCount ? "_large" : "");
}

std::vector<Run> every_collective(int ranks, const std::string& transport) {
  std::vector<Run> runs;
  for (const char* collective : {"allreduce", "broadcast", "allgather", "allgatherv",
                                 "reducescatter", "alltoall", "alltoallv", "barrier"}) {
    runs.push_back({ranks, collective, transport, kSmallCounts});
  }
  return runs;
}

// Pinned to one transport each: every rank here is on one host, so `auto` picks shared memory.
INSTANTIATE_TEST_SUITE_P(Tcp, CollectiveMatrix, ::testing::ValuesIn(every_collective(3, "tcp")),
                         name);
INSTANTIATE_TEST_SUITE_P(Shm, CollectiveMatrix, ::testing::ValuesIn(every_collective(3, "shm")),
                         name);

// A world of one, the launcher's largest worlds, a buffer of megabytes, and `auto`.
INSTANTIATE_TEST_SUITE_P(
    Worlds, CollectiveMatrix,
    ::testing::Values(Run{1, "allreduce", "tcp", kSmallCounts},
                      Run{8, "allreduce", "tcp", kSmallCounts},
                      Run{8, "allreduce", "shm", kSmallCounts},
                      Run{4, "allreduce", "tcp", kLargeCount},
                      Run{4, "allreduce", "shm", kLargeCount},
                      Run{2, "allreduce", "auto", kSmallCounts}),
    name);

// Large all-reduces between processes through their private memory (RINGFUSE_CROSS_MEMORY_MIN,
// on by default: process_vm_readv / _writev between the ranks), and the same through the
// shared-memory rings with it off.
TEST(CrossMemory, LargeAllreducesBetweenProcessesMatchTheReferenceEitherWay) {
  constexpr int kRanks = 4;
  for (const char* min_bytes : {"auto", "off"}) {
    const auto result = ringfuse::testing::run_process(
        {RINGFUSE_RUN_PATH, "-np", std::to_string(kRanks), "--", COLLECTIVE_CHECK_PATH,
         "--collective", "allreduce", "--counts", kLargeCount},
        {{"RINGFUSE_TIMEOUT_S", "60"}, {"RINGFUSE_TRANSPORT", "shm"},
         {"RINGFUSE_CROSS_MEMORY_MIN", min_bytes}, {"RINGFUSE_LOG_LEVEL", "debug"}},
        std::chrono::minutes(4));
    ASSERT_FALSE(result.timed_out) << result.output;
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_EQ(result.output.find("MISMATCH"), std::string::npos) << result.output;
    const bool on = std::string(min_bytes) == "auto";
    for (int rank = 0; rank < kRanks; ++rank) {
      const std::regex reached("rank " + std::to_string(rank) +
                               ": [^\n]*cross-memory: large all-reduces read and write");
      EXPECT_EQ(std::regex_search(result.output, reached), on)
          << "RINGFUSE_CROSS_MEMORY_MIN=" << min_bytes << ", rank " << rank << ":\n"
          << result.output;
    }
  }
}

// A rank that may not reach its peers' memory (a seccomp filter denies the two calls, as a
// restrictive container profile would): its probe fails, so every rank keeps the rings, and
// the all-reduces still match.
TEST(CrossMemory, WhereOneRankIsDeniedEveryRankKeepsTheRings) {
  constexpr int kRanks = 3;
  const auto result = ringfuse::testing::run_process(
      {RINGFUSE_RUN_PATH, "-np", std::to_string(kRanks), "--", COLLECTIVE_CHECK_PATH,
       "--collective", "allreduce", "--counts", kLargeCount, "--deny-cross-memory-on", "1"},
      {{"RINGFUSE_TIMEOUT_S", "60"}, {"RINGFUSE_TRANSPORT", "shm"},
       {"RINGFUSE_LOG_LEVEL", "debug"}},
      std::chrono::minutes(4));
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.find("MISMATCH"), std::string::npos) << result.output;
  EXPECT_TRUE(std::regex_search(
      result.output, std::regex("rank 1: [^\n]*reading rank 0's memory \\(process [0-9]+\\) "
                                "failed: Operation not permitted, so large all-reduces copy "
                                "through the shared-memory rings")))
      << result.output;
  EXPECT_NE(result.output.find("rank 1 cannot reach the peers' memory (the debug log there says "
                               "why), so large all-reduces copy through the shared-memory rings"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(result.output.find("cross-memory: large all-reduces read and write"),
            std::string::npos)
      << result.output;
}

}  // namespace
