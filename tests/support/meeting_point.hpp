// std::latch with a deadline, for threads of one test that play ranks: each arrives and waits
// for the others, and one that never arrives (its set-up threw) fails the others' wait with a
// message instead of leaving them blocked until CTest's timeout ends the whole test.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace ringfuse::test_support {

class MeetingPoint {
 public:
  MeetingPoint(int expected, std::string name) : expected_(expected), name_(std::move(name)) {}

  /// Arrives, then waits until all `expected` threads have; throws std::runtime_error naming
  /// the meeting point and how many are missing once `timeout` has passed.
  void arrive_and_wait(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::unique_lock lock(mutex_);
    if (++arrived_ >= expected_) {
      everyone_.notify_all();
      return;
    }
    if (!everyone_.wait_for(lock, timeout, [&] { return arrived_ >= expected_; })) {
      throw std::runtime_error(fmt::format("{} of {} threads did not reach '{}' within {} ms",
                                           expected_ - arrived_, expected_, name_,
                                           timeout.count()));
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable everyone_;
  int arrived_ = 0;
  const int expected_;
  const std::string name_;
};

}  // namespace ringfuse::test_support
