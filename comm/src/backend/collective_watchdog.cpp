#include "backend/collective_watchdog.hpp"

#include <algorithm>

#include "core/thread_name.hpp"

namespace ringfuse::backend {
namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

CollectiveWatchdog::CollectiveWatchdog(std::chrono::milliseconds timeout, Expired on_expired)
    : timeout_(timeout),
      tick_(std::clamp(timeout / 10, std::chrono::milliseconds(10), std::chrono::milliseconds(1000))),
      on_expired_(std::move(on_expired)),
      thread_([this] {
        core::name_this_thread("rf-watchdog");
        run();
      }) {}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  stopping_.notify_one();
  thread_.join();
}

CollectiveWatchdog::Guard::Guard(CollectiveWatchdog& watchdog, std::string label)
    : watchdog_(watchdog) {
  {
    std::lock_guard lock(watchdog_.mutex_);
    watchdog_.label_ = std::move(label);
  }
  watchdog_.deadline_ns_.store(
      now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(watchdog_.timeout_).count(),
      std::memory_order_release);
}

CollectiveWatchdog::Guard::~Guard() { watchdog_.deadline_ns_.store(0, std::memory_order_release); }

void CollectiveWatchdog::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_.wait_for(lock, tick_, [this] { return stop_; })) {
    const std::int64_t deadline = deadline_ns_.load(std::memory_order_acquire);
    if (deadline == 0 || now_ns() < deadline) continue;
    deadline_ns_.store(0, std::memory_order_relaxed);
    const std::string label = label_;
    lock.unlock();
    on_expired_(label, timeout_);
    lock.lock();
  }
}

}  // namespace ringfuse::backend
