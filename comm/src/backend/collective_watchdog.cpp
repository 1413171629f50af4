#include "backend/collective_watchdog.hpp"

namespace ringfuse::backend {

CollectiveWatchdog::CollectiveWatchdog(std::chrono::milliseconds timeout, Expired on_expired)
    : timeout_(timeout), on_expired_(std::move(on_expired)), thread_([this] { run(); }) {}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_one();
  thread_.join();
}

CollectiveWatchdog::Guard::Guard(CollectiveWatchdog& watchdog, std::string label)
    : watchdog_(watchdog) {
  {
    std::lock_guard lock(watchdog_.mutex_);
    watchdog_.label_ = std::move(label);
    watchdog_.deadline_ = std::chrono::steady_clock::now() + watchdog_.timeout_;
  }
  watchdog_.changed_.notify_one();
}

CollectiveWatchdog::Guard::~Guard() {
  std::lock_guard lock(watchdog_.mutex_);
  watchdog_.deadline_.reset();  // no wake-up needed: the thread re-checks at the old deadline
}

void CollectiveWatchdog::run() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    if (!deadline_) {
      changed_.wait(lock);
      continue;
    }
    const auto deadline = *deadline_;
    if (std::chrono::steady_clock::now() < deadline) {
      changed_.wait_until(lock, deadline);
      continue;
    }
    const std::string label = label_;
    deadline_.reset();
    lock.unlock();
    on_expired_(label, timeout_);
    lock.lock();
  }
}

}  // namespace ringfuse::backend
