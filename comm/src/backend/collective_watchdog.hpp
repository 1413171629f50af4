// A deadline for calls that cannot be given one: MPI's blocking collectives wait forever for a
// stalled or absent peer, and MPI offers no way to cancel them. Each call is watched from a
// thread of our own; when one runs past the timeout, `on_expired` runs there (the MPI backend
// reports the collective and aborts the job, which is all MPI allows). Arming costs a call an
// uncontended lock and an atomic store, no wake-up: the thread looks every tenth of the timeout
// (10 ms to 1 s), so it notices an expired call within that much.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <cstdint>
#include <string>
#include <thread>

namespace ringfuse::backend {

class CollectiveWatchdog {
 public:
  using Expired = std::function<void(const std::string& label, std::chrono::milliseconds)>;

  CollectiveWatchdog(std::chrono::milliseconds timeout, Expired on_expired);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  /// Watches one call from construction to destruction. Calls must not overlap.
  class Guard {
   public:
    Guard(CollectiveWatchdog& watchdog, std::string label);
    ~Guard();
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    CollectiveWatchdog& watchdog_;
  };

 private:
  void run();

  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds tick_;
  Expired on_expired_;
  std::atomic<std::int64_t> deadline_ns_{0};  // steady_clock; 0 while no call runs
  std::mutex mutex_;                          // label_ and stop_
  std::condition_variable stopping_;
  std::string label_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ringfuse::backend
