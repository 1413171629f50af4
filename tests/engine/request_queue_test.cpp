// The hand-off between callers and the engine thread (comm/src/engine/request_queue.hpp),
// with real threads: whatever the engine thread's wait policy (checking for a while before it
// sleeps, or sleeping at once), a push, a flush and a stop end its wait, and a quiet queue
// waits for its timer.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "engine/request_queue.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::engine::Clock;
using ringfuse::engine::Request;
using ringfuse::engine::RequestQueue;

constexpr std::size_t kThreshold = 1 << 20;

bool push_one(RequestQueue& queue, std::int64_t elements = 1) {
  std::vector<Request> requests(1);
  requests.front().fp.shape = {elements};
  return queue.push(requests, kThreshold);
}

class RequestQueueWait : public ::testing::TestWithParam<std::chrono::microseconds> {};

TEST_P(RequestQueueWait, FlushFromAnotherThreadEndsTheWaitWithTheRequests) {
  RequestQueue queue;
  std::thread caller([&] {
    std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(push_one(queue));
    ASSERT_TRUE(push_one(queue));
    queue.flush();
  });
  // A quiet timer and deadline far away: only the flush ends this wait.
  const auto taken = queue.wait_and_take(kThreshold, 60s, 60s, Clock::now() + 60s, GetParam());
  caller.join();
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].seq, 1u);
  EXPECT_EQ(taken[1].seq, 2u);
}

TEST_P(RequestQueueWait, FlushOfAnEmptyQueueLeavesTheNextPushToItsTimer) {
  RequestQueue queue;
  queue.flush();  // e.g. a caller waiting for a request the engine thread already took
  ASSERT_TRUE(push_one(queue));
  // The pushed request waits for the quiet timer (60 s) or the deadline: it was not flushed.
  const auto started = Clock::now();
  const auto taken =
      queue.wait_and_take(kThreshold, 60s, 60s, Clock::now() + 200ms, GetParam());
  EXPECT_GE(Clock::now() - started, 200ms)
      << "the flush before the push ended the wait for the pushed request";
  EXPECT_EQ(taken.size(), 1u);  // taken at the deadline
}

TEST_P(RequestQueueWait, QuietQueueRunsWhenItsTimerEnds) {
  RequestQueue queue;
  ASSERT_TRUE(push_one(queue));
  const auto taken = queue.wait_and_take(kThreshold, 30ms, 60s, Clock::now() + 60s, GetParam());
  EXPECT_EQ(taken.size(), 1u);
}

TEST_P(RequestQueueWait, ThresholdReachedEndsTheWait) {
  RequestQueue queue;
  std::thread caller([&] {
    std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(push_one(queue, kThreshold / 4));  // 4-byte elements: the threshold
  });
  const auto taken = queue.wait_and_take(kThreshold, 60s, 60s, Clock::now() + 60s, GetParam());
  caller.join();
  EXPECT_EQ(taken.size(), 1u);
}

TEST_P(RequestQueueWait, EmptyQueueReturnsNothingAtTheDeadlineAndAtStop) {
  RequestQueue queue;
  EXPECT_TRUE(queue.wait_and_take(kThreshold, 1ms, 1ms, Clock::now() + 20ms, GetParam()).empty());
  std::thread stopper([&] {
    std::this_thread::sleep_for(20ms);
    queue.stop();
  });
  EXPECT_TRUE(queue.wait_and_take(kThreshold, 60s, 60s, Clock::now() + 60s, GetParam()).empty());
  stopper.join();
  EXPECT_FALSE(push_one(queue));
}

// A bucket of gradients enqueued one by one under hold(): the cycles that come due meanwhile
// (quiet timer, oldest request's wait, the deadline) run without it, and flush() hands the
// whole bucket to one cycle.
TEST_P(RequestQueueWait, HeldRequestsAreTakenTogetherAtFlush) {
  RequestQueue queue;
  queue.hold();
  ASSERT_TRUE(push_one(queue));
  // The caller descheduled in the middle of its bucket: every timer runs out.
  EXPECT_TRUE(queue.wait_and_take(kThreshold, 0s, 0s, Clock::now() + 20ms, GetParam()).empty())
      << "a cycle took part of a held bucket";
  std::thread caller([&] {
    std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(push_one(queue));
    queue.flush();
  });
  const auto taken = queue.wait_and_take(kThreshold, 0s, 0s, Clock::now() + 60s, GetParam());
  caller.join();
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[1].seq, 2u);
}

TEST_P(RequestQueueWait, AHoldNoFlushEndsLapses) {
  RequestQueue queue;
  queue.hold();
  ASSERT_TRUE(push_one(queue));
  const auto started = Clock::now();
  const auto taken = queue.wait_and_take(kThreshold, 0s, 0s, Clock::now() + 60s, GetParam());
  const auto waited = Clock::now() - started;
  EXPECT_EQ(taken.size(), 1u);
  EXPECT_GE(waited, 900ms);
  EXPECT_LT(waited, 30s) << "a hold without flush() kept the request from the engine";
}

TEST_P(RequestQueueWait, StopEndsAHold) {
  RequestQueue queue;
  queue.hold();
  ASSERT_TRUE(push_one(queue));
  std::thread stopper([&] {
    std::this_thread::sleep_for(20ms);
    queue.stop();
  });
  // The engine's last take at stop: the held request gets the engine's answer too.
  const auto taken = queue.wait_and_take(kThreshold, 60s, 60s, Clock::now() + 60s, GetParam());
  stopper.join();
  EXPECT_EQ(taken.size(), 1u);
}

// Issue 18: requests the engine gives back are filled again in place, their names' memory
// and all, and the spares a smaller take leaves over travel with it, not freed on the way.
// The test does what the engine thread does: every take goes back through recycle().
TEST(RequestQueue, RecycledRequestsAreFilledAgainWithTheirMemory) {
  RequestQueue queue;
  std::vector<Request> given_back(3);
  std::vector<const char*> memory;
  for (auto& request : given_back) {
    request.fp.name = "a name longer than the inline buffer of a string";
    memory.push_back(request.fp.name.data());
  }
  const auto brought = [&](const char* data) {
    return std::find(memory.begin(), memory.end(), data) != memory.end();
  };
  std::vector<const char*> filled;
  const auto fill = [&filled](Request& request) {
    filled.push_back(request.fp.name.data());
    request.fp.name.clear();
    request.fp.name.append("short");
    request.fp.shape = {1};
  };
  queue.recycle(std::move(given_back));
  ASSERT_TRUE(push_one(queue));  // a request of its own; the take brings the recycled ones in
  auto first = queue.wait_and_take(kThreshold, 0s, 0s, Clock::now() + 1s);
  ASSERT_EQ(first.size(), 1u);
  queue.recycle(std::move(first.requests));

  ASSERT_TRUE(queue.emplace(fill, kThreshold));
  EXPECT_TRUE(brought(filled.back())) << "a recycled request was filled in memory it did not bring";
  auto second = queue.wait_and_take(kThreshold, 0s, 0s, Clock::now() + 1s);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].seq, 2u);
  EXPECT_EQ(second[0].fp.name, "short");
  // The two spares went along, untouched.
  ASSERT_EQ(second.requests.size(), 3u);
  EXPECT_TRUE(brought(second.requests[1].fp.name.data()));
  EXPECT_TRUE(brought(second.requests[2].fp.name.data()));
  queue.recycle(std::move(second.requests));

  ASSERT_TRUE(queue.emplace(fill, kThreshold));  // into the first take's request
  auto third = queue.wait_and_take(kThreshold, 0s, 0s, Clock::now() + 1s);
  ASSERT_EQ(third.size(), 1u);
  queue.recycle(std::move(third.requests));
  for (int i = 0; i < 3; ++i) {  // the second take's three, spares included
    ASSERT_TRUE(queue.emplace(fill, kThreshold));
    EXPECT_TRUE(brought(filled.back())) << "request " << i << " of a recycled take";
  }
  EXPECT_EQ(queue.wait_and_take(kThreshold, 0s, 0s, Clock::now() + 1s).size(), 3u);
}

INSTANTIATE_TEST_SUITE_P(Engine, RequestQueueWait,
                         ::testing::Values(std::chrono::microseconds{0},
                                           std::chrono::microseconds{100},
                                           std::chrono::microseconds{200'000}),
                         [](const auto& info) {
                           return "spin" + std::to_string(info.param.count()) + "us";
                         });

}  // namespace
