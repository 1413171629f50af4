// A budget for warning lines that strangers can trigger: anyone who reaches the store port can
// make it reject a connection, so one line per rejection lets them flood the job's log. The
// first few warnings of an interval are logged as they come; the rest are only counted, and the
// owner logs one summary line for them when the interval ends.
#pragma once

#include <chrono>
#include <cstddef>

namespace ringfuse::rendezvous {

class WarningLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  /// At most `burst` warnings are admitted per `interval`, which starts at the first warning
  /// after the previous one ended.
  WarningLimiter(std::size_t burst, Clock::duration interval);

  /// Whether a warning happening at `now` may be logged; when not, it is counted.
  bool admit(Clock::time_point now);
  /// How many warnings were refused since the last call (and forgets them).
  std::size_t take_suppressed();
  /// When the current interval ends: the time to log the summary of what admit() refused.
  Clock::time_point interval_end() const { return interval_end_; }
  Clock::duration interval() const { return interval_; }

 private:
  std::size_t burst_;
  Clock::duration interval_;
  Clock::time_point interval_end_{};
  std::size_t admitted_ = 0;
  std::size_t suppressed_ = 0;
};

}  // namespace ringfuse::rendezvous
