// The hand-off between callers and the engine thread: requests in enqueue order, with the
// conditions that start a negotiation cycle (threshold reached, queue quiet, flush, timer).
#pragma once

#include <condition_variable>
#include <mutex>
#include <span>
#include <vector>

#include "engine/request.hpp"

namespace ringfuse::engine {

class RequestQueue {
 public:
  /// Numbers the requests (seq) and appends them atomically; wakes the engine thread when the
  /// queued bytes reach `threshold`.
  /// Returns false (and keeps nothing) once stop() was called.
  bool push(std::span<Request> requests, std::size_t threshold);
  /// Ends the wait for the requests queued now (a no-op when none are).
  void flush();
  void stop();
  bool stopping() const;

  /// Waits until a cycle should run: the queue is non-empty and (bytes >= threshold, flush
  /// requested, quiet for `quiet`, or the oldest request waited `max_wait`), or `deadline`
  /// passed, or stop(). Returns the queued requests (possibly none). For the first `spin` it
  /// checks, yielding the CPU in between, instead of sleeping: a caller's push then finds the
  /// engine thread awake, and no wake-up has to go through the scheduler.
  std::vector<Request> wait_and_take(std::size_t threshold, std::chrono::microseconds quiet,
                                     std::chrono::microseconds max_wait,
                                     Clock::time_point deadline,
                                     std::chrono::microseconds spin = {});
  /// The next sequence number to hand out; the engine moves it forward after a join.
  void advance_sequence(std::uint64_t next);

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Request> queue_;  // handed to the engine thread whole, not element by element
  std::size_t bytes_ = 0;
  bool flush_ = false;
  bool stop_ = false;
  std::uint64_t next_seq_ = 1;
  Clock::time_point last_push_{};
};

}  // namespace ringfuse::engine
