#include "rendezvous/warning_limiter.hpp"

namespace ringfuse::rendezvous {

WarningLimiter::WarningLimiter(std::size_t burst, Clock::duration interval)
    : burst_(burst), interval_(interval) {}

bool WarningLimiter::admit(Clock::time_point now) {
  if (now >= interval_end_) {
    interval_end_ = now + interval_;
    admitted_ = 0;
  }
  if (admitted_ < burst_) {
    ++admitted_;
    return true;
  }
  ++suppressed_;
  return false;
}

std::size_t WarningLimiter::take_suppressed() {
  const std::size_t count = suppressed_;
  suppressed_ = 0;
  return count;
}

}  // namespace ringfuse::rendezvous
