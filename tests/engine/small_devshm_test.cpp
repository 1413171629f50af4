// Issue #22, item 6: Docker's default /dev/shm (64 MiB) is too small for the shared-memory
// rings of 8 ranks' main and engine channels. ringfuse-run starts 8 real engine_worker ranks
// inside a private mount namespace whose /dev/shm is a small tmpfs; the job must succeed, with
// one warning naming the fix. Needs root (unshare -m, mount); skips where that is refused.
#include <unistd.h>

#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::ProcessResult;
using ringfuse::testing::run_process;

std::size_t count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

// Runs `ringfuse-run -np 8 engine_worker fusion` with /dev/shm a tmpfs of `size`.
ProcessResult run_with_small_shm(const std::string& size, const std::string& transport = "auto") {
  const std::string script = "mount -t tmpfs -o size=" + size +
                             " tmpfs /dev/shm && exec \"$0\" -np 8 -- \"$1\" fusion";
  return run_process({"unshare", "-m", "sh", "-c", script, RINGFUSE_RUN_PATH, ENGINE_WORKER_PATH},
                     {{"RINGFUSE_TIMEOUT_S", "60"}, {"RINGFUSE_TRANSPORT", transport}}, 180s);
}

class SmallDevShm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root to mount a small tmpfs on /dev/shm in a private mount "
                      "namespace (unshare -m)";
    }
    const auto probe = run_process(
        {"unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"}, {}, 30s);
    if (probe.exit_code != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs on /dev/shm in a private mount namespace here "
                      "(unshare -m refused: a container without CAP_SYS_ADMIN?): "
                   << probe.output;
    }
  }
};

void expect_job_ok_with_one_warning(const ProcessResult& result, const std::string& fallback) {
  ASSERT_FALSE(result.timed_out) << result.output;
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(count(result.output, "] ok\n"), 8u) << result.output;
  EXPECT_EQ(count(result.output, "--shm-size"), 1u) << "one warning naming the fix\n"
                                                     << result.output;
  EXPECT_NE(result.output.find(fallback), std::string::npos) << result.output;
}

// Docker's default: the rings shrink so that both channels fit in half of what is free.
TEST_F(SmallDevShm, EightRanksRunTheEngineInDockersDefault64MiB) {
  expect_job_ok_with_one_warning(run_with_small_shm("64m"), "KiB rings instead");
}

// Too small for even the smallest rings: the channels use TCP.
TEST_F(SmallDevShm, EightRanksFallBackToTcpWhenNoRingsFit) {
  expect_job_ok_with_one_warning(run_with_small_shm("4m"), "TCP between these ranks instead");
}

// RINGFUSE_TRANSPORT=shm asked for shared memory explicitly: no room even for the smallest
// rings is an error naming the fix, not a silent switch to TCP.
TEST_F(SmallDevShm, ExplicitShmWithNoRoomIsAnErrorNamingTheFix) {
  const auto result = run_with_small_shm("1m", "shm");
  ASSERT_FALSE(result.timed_out) << result.output;
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("RINGFUSE_TRANSPORT=shm, but /dev/shm has"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("--shm-size"), std::string::npos) << result.output;
}

}  // namespace
