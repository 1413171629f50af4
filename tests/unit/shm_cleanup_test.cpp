// The launcher's removal of its job's leftover shared-memory names: exactly the job's, in a
// directory standing for /dev/shm, with names made the way the transport makes them.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "shm_cleanup.hpp"
#include "transport/shm_segment.hpp"

namespace {

namespace fs = std::filesystem;
using ringfuse::launcher::job_id_in;
using ringfuse::launcher::remove_job_segments;
using ringfuse::transport::shm::segment_name;

class ShmCleanup : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringfuse-shm-cleanup-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void touch(const std::string& name) { std::ofstream(dir_ / name) << "x"; }
  bool exists(const std::string& name) const { return fs::exists(dir_ / name); }
  fs::path dir_;
};

TEST_F(ShmCleanup, RemovesTheJobsSegmentsAndNothingElse) {
  // As ShmTransport names them: "<job>/<generation>/<channel>/r<rank>", window "...w".
  const auto of = [](const std::string& parts) { return segment_name(parts).substr(1); };
  const std::string job = "9c1790527d255e55";
  const std::vector<std::string> mine = {of(job + "/0/main/r0"), of(job + "/0/main/r1"),
                                         of(job + "/3/engine-data/r2w")};
  const std::vector<std::string> others = {of("9c1790527d255e5/0/main/r0"),   // a prefix of ours
                                           of(job + "x/0/main/r0"),           // ours is its prefix
                                           of("other/0/main/r0"), "unrelated-file",
                                           of(job + "_tag/0/main/r0")};        // not a generation
  for (const auto& name : mine) touch(name);
  for (const auto& name : others) touch(name);

  auto removed = remove_job_segments(job, dir_);
  std::sort(removed.begin(), removed.end());
  auto expected = mine;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(removed, expected);
  for (const auto& name : mine) EXPECT_FALSE(exists(name)) << name;
  for (const auto& name : others) EXPECT_TRUE(exists(name)) << name;
}

TEST_F(ShmCleanup, NoJobIdOrNoDirectoryRemovesNothing) {
  touch(segment_name("/0/main/r0").substr(1));
  EXPECT_TRUE(remove_job_segments("", dir_).empty());
  EXPECT_TRUE(remove_job_segments("job", dir_ / "missing").empty());
}

TEST(ShmCleanupEnvironment, FindsTheJobIdAmongTheRanksVariables) {
  EXPECT_EQ(job_id_in({"PATH=/bin", "RINGFUSE_JOB_ID=abc", "RINGFUSE_RANK=1"}), "abc");
  EXPECT_EQ(job_id_in({"RINGFUSE_JOB_IDX=no"}), "");
}

}  // namespace
