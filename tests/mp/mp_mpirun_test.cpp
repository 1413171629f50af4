// The same collective matrix under plain `mpirun` (Open MPI): init() bootstraps through MPI with
// no launcher of ours; and an existing MPI program embedding Ringfuse (examples/mpi_embedded).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <tuple>

#include "subprocess.hpp"

namespace {

using Params = std::tuple<int, std::string>;

std::vector<std::string> mpirun(int ranks) {
  std::vector<std::string> argv{MPIRUN_PATH, "--oversubscribe", "-np", std::to_string(ranks)};
  if (::geteuid() == 0) argv.insert(argv.begin() + 1, "--allow-run-as-root");
  return argv;
}

/// Runs collective_check under mpirun with RINGFUSE_BACKEND=`backend` and checks every rank's
/// report, plus a start-up log line that proves which path was taken.
void expect_matrix_case(int ranks, const std::string& collective, const std::string& backend,
                        const std::string& proof, const std::string& proof_meaning) {
  auto argv = mpirun(ranks);
  argv.insert(argv.end(), {COLLECTIVE_CHECK_PATH, "--collective", collective, "--counts",
                           "0,1,1009,65537"});
  const auto result = ringfuse::testing::run_process(
      argv,
      {{"RINGFUSE_TIMEOUT_S", "60"}, {"RINGFUSE_BACKEND", backend},
       {"OMPI_MCA_btl", "self,vader,tcp"}},
      std::chrono::minutes(4));
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < ranks; ++rank) {
    EXPECT_NE(result.output.find("rank " + std::to_string(rank) + ": " + collective + " "),
              std::string::npos)
        << result.output;
  }
  EXPECT_NE(result.output.find(proof), std::string::npos) << proof_meaning << ":\n"
                                                          << result.output;
  EXPECT_EQ(result.output.find("MISMATCH"), std::string::npos) << result.output;
}

// Context::split under mpirun with RINGFUSE_BACKEND=mpi: the child's collectives run on
// MPI_Comm_split of the world's communicator, every one checked against the reference.
TEST(MpirunSplit, ParityChildrenRunEveryCollectiveOnASplitCommunicator) {
  for (const char* collective : {"allreduce", "broadcast", "allgatherv", "reducescatter",
                                 "alltoallv", "barrier"}) {
    auto argv = mpirun(4);
    argv.insert(argv.end(), {COLLECTIVE_CHECK_PATH, "--collective", collective, "--counts",
                             "0,1,1009", "--algos", "ring", "--split", "parity"});
    const auto result = ringfuse::testing::run_process(
        argv,
        {{"RINGFUSE_TIMEOUT_S", "60"}, {"RINGFUSE_BACKEND", "mpi"},
         {"OMPI_MCA_btl", "self,vader,tcp"}},
        std::chrono::minutes(2));
    ASSERT_FALSE(result.timed_out) << result.output;
    EXPECT_EQ(result.exit_code, 0) << result.output;
    for (int rank = 0; rank < 4; ++rank) {
      EXPECT_NE(result.output.find("rank " + std::to_string(rank) + ": split 1 (color " +
                                   std::to_string(rank % 2) + ") of world runs on mpi"),
                std::string::npos)
          << result.output;
      EXPECT_NE(result.output.find("rank " + std::to_string(rank) + ": " + collective + " "),
                std::string::npos)
          << result.output;
    }
    EXPECT_EQ(result.output.find("MISMATCH"), std::string::npos) << result.output;
  }
}

class MpirunMatrix : public ::testing::TestWithParam<Params> {};

TEST_P(MpirunMatrix, EveryRankMatchesTheReference) {
  const auto& [ranks, collective] = GetParam();
  expect_matrix_case(ranks, collective, "auto", "plain mpirun",
                     "init() did not bootstrap through MPI");
}

std::string name(const ::testing::TestParamInfo<Params>& info) {
  return std::get<1>(info.param) + "_np" + std::to_string(std::get<0>(info.param));
}

INSTANTIATE_TEST_SUITE_P(
    Mpirun, MpirunMatrix,
    ::testing::Combine(::testing::Values(2, 3, 4),
                       ::testing::Values("allreduce", "broadcast", "allgather", "allgatherv",
                                         "reducescatter", "alltoall", "alltoallv", "barrier")),
    name);

// The same matrix with RINGFUSE_BACKEND=mpi: every collective through Open MPI's own calls
// (backend/mpi_backend.cpp), f16/bf16 through our user-defined MPI_Ops.
class MpiBackendMatrix : public ::testing::TestWithParam<Params> {};

TEST_P(MpiBackendMatrix, EveryRankMatchesTheReference) {
  const auto& [ranks, collective] = GetParam();
  expect_matrix_case(ranks, collective, "mpi", "backends mpi,native",
                     "the MPI backend was not first in the priority list");
}

INSTANTIATE_TEST_SUITE_P(
    MpiBackend, MpiBackendMatrix,
    ::testing::Combine(::testing::Values(2, 4),
                       ::testing::Values("allreduce", "broadcast", "allgather", "allgatherv",
                                         "reducescatter", "alltoall", "alltoallv", "barrier")),
    name);

// MPI cannot time out or cancel a collective: the backend's watchdog must turn a stalled peer
// into an error naming the collective and an aborted job, within RINGFUSE_TIMEOUT_S.
TEST(MpiBackend, AStalledRankAbortsTheJobAfterTheTimeoutNamingTheCollective) {
  auto argv = mpirun(3);
  argv.insert(argv.end(), {COLLECTIVE_CHECK_PATH, "--mode", "stall", "--victim", "1", "--after",
                           "3", "--linger-s", "60", "--endless-count", "1024"});
  const auto started = std::chrono::steady_clock::now();
  const auto result = ringfuse::testing::run_process(
      argv,
      {{"RINGFUSE_TIMEOUT_S", "3"}, {"RINGFUSE_BACKEND", "mpi"},
       {"OMPI_MCA_btl", "self,vader,tcp"}},
      std::chrono::seconds(90));
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(result.timed_out) << "the job hung:\n" << result.output;
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("rank 1: stalling after 3 all-reduces"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("(mpi collective #"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("not finished after 3 s (RINGFUSE_TIMEOUT_S)"), std::string::npos)
      << result.output;
  // 3 s of timeout, start-up and mpirun's teardown: far below the 60 s the victim sleeps.
  EXPECT_LT(took, std::chrono::seconds(40)) << result.output;
}

// Without mpirun there is no MPI to run on: init() must refuse RINGFUSE_BACKEND=mpi clearly
// rather than fall back silently.
TEST(MpiBackend, RefusedUnderRingfuseRun) {
  const auto result = ringfuse::testing::run_process(
      {RINGFUSE_RUN_PATH, "-np", "2", "--", COLLECTIVE_CHECK_PATH, "--collective", "barrier"},
      {{"RINGFUSE_BACKEND", "mpi"}, {"RINGFUSE_TIMEOUT_S", "20"}}, std::chrono::minutes(1));
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("RINGFUSE_BACKEND=mpi needs a world started by plain mpirun"),
            std::string::npos)
      << result.output;
}

TEST(MpiEmbedded, RingfuseBesideTheProgramsOwnMpi) {
  auto argv = mpirun(3);
  argv.push_back(MPI_EMBEDDED_PATH);
  const auto result = ringfuse::testing::run_process(
      argv, {{"OMPI_MCA_btl", "self,vader,tcp"}}, std::chrono::minutes(2));
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_NE(result.output.find("rank " + std::to_string(rank) + ": Ringfuse and MPI agree"),
              std::string::npos)
        << result.output;
  }
}

}  // namespace
