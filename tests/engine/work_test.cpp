// Work::wait_for, the wait for callers that wait in slices (the Python bindings' 100 ms slices
// between signal checks, a c10d Work's timeout): a slice that runs out is a false return, never
// an error, so it cannot be taken for the collective's own failure when the collective
// finishes just after it; the collective's own error is still thrown.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "engine/work_state.hpp"
#include "ringfuse/engine.hpp"
#include "ringfuse/error.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::Work;
using ringfuse::engine::WorkState;

TEST(Work, WaitForSaysATimeoutByItsResultAndWaitThrowsIt) {
  auto state = std::make_shared<WorkState>();
  const Work work(state);
  EXPECT_FALSE(work.wait_for(10ms));
  try {
    work.wait(10ms);
    ADD_FAILURE() << "wait() returned before the collective finished";
  } catch (const ringfuse::Error& e) {
    EXPECT_EQ(e.kind(), ringfuse::ErrorKind::timeout) << e.what();
  }
}

TEST(Work, WaitForReturnsOnceTheCollectiveFinishesOnAnotherThread) {
  auto state = std::make_shared<WorkState>();
  const Work work(state);
  std::thread engine([state] {
    std::this_thread::sleep_for(20ms);
    state->complete(nullptr);
  });
  EXPECT_TRUE(work.wait_for(10s));
  engine.join();
  EXPECT_TRUE(work.wait_for(0ms));  // finished: at once, without waiting
}

TEST(Work, WaitForThrowsTheCollectivesOwnError) {
  auto state = std::make_shared<WorkState>();
  const Work work(state);
  const ringfuse::Error failure(ringfuse::ErrorKind::peer_failure, "rank 1: gone");
  state->complete(&failure);
  try {
    work.wait_for(0ms);
    ADD_FAILURE() << "wait_for() returned for a failed collective";
  } catch (const ringfuse::Error& e) {
    EXPECT_EQ(e.kind(), ringfuse::ErrorKind::peer_failure);
    EXPECT_STREQ(e.what(), "rank 1: gone");
  }
}

}  // namespace
