// The hand-off between callers and the engine thread: requests in enqueue order, with the
// conditions that start a negotiation cycle (threshold reached, queue quiet, flush, timer).
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "engine/request.hpp"

namespace ringfuse::engine {

/// What the engine thread takes from the queue: the first `count` of `requests`, in enqueue
/// order. The rest are spare requests, memory for later ones, handed along with them so that
/// no request (and no name or shape memory) is moved or freed on the way: the engine gives
/// the vector back (RequestQueue::recycle) once it is done with it.
struct TakenRequests {
  std::vector<Request> requests;
  std::size_t count = 0;

  std::span<Request> queued() { return std::span(requests).first(count); }
  std::size_t size() const { return count; }
  bool empty() const { return count == 0; }
  Request& operator[](std::size_t i) { return requests[i]; }
  const Request& operator[](std::size_t i) const { return requests[i]; }
};

class RequestQueue {
 public:
  /// Numbers the requests (seq) and appends them atomically; wakes the engine thread when the
  /// queued bytes reach `threshold`. Each request is swapped into the queue: it comes back
  /// holding the memory of an earlier request (freed by the caller's thread, where it would
  /// most likely have been allocated).
  /// Returns false (and keeps nothing) once stop() was called.
  bool push(std::span<Request> requests, std::size_t threshold);
  /// push() of one request that `fill(Request&)` writes in place, into a request that
  /// holds the memory of an earlier one (recycle()): a name and shape assigned there reuse
  /// that memory, so a training loop's steady state allocates nothing here. `fill` runs under
  /// the queue's lock and must write every field but `seq` and `enqueued` (the queue's); if it
  /// throws, nothing is queued.
  template <class Fill>
  bool emplace(Fill&& fill, std::size_t threshold) {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      if (stop_) return false;
      Request& request = next_slot();
      fill(request);
      wake = queued(request, Clock::now(), threshold);
    }
    if (wake) cv_.notify_one();
    return true;
  }
  /// Until flush() (or kMaxHold), wait_and_take() takes nothing: the requests pushed
  /// meanwhile are taken together.
  void hold();
  /// Ends the wait for the requests queued now (a no-op when none are) and a hold().
  void flush();
  void stop();
  bool stopping() const;

  /// Waits until a cycle should run: the queue is non-empty and (bytes >= threshold, flush
  /// requested, quiet for `quiet`, or the oldest request waited `max_wait`), or `deadline`
  /// passed, or stop(). Returns the queued requests (possibly none; none while held). For the first `spin` it
  /// checks, yielding the CPU in between, instead of sleeping: a caller's push then finds the
  /// engine thread awake, and no wake-up has to go through the scheduler.
  TakenRequests wait_and_take(std::size_t threshold, std::chrono::microseconds quiet,
                              std::chrono::microseconds max_wait, Clock::time_point deadline,
                              std::chrono::microseconds spin = {});
  /// The next sequence number to hand out; the engine moves it forward after a join.
  void advance_sequence(std::uint64_t next);
  /// Takes back the vector of requests wait_and_take() returned, once the engine is done with
  /// them (their names and shapes hold an earlier step's memory): the callers fill them again.
  void recycle(std::vector<Request>&& done);

 private:
  /// The request to fill at the end of the queue: the spare one there, or a new one.
  Request& next_slot() {
    if (count_ == queue_.size()) queue_.emplace_back();
    return queue_[count_];
  }
  /// Numbers and counts the request just filled at the end; true when the engine should wake.
  bool queued(Request& request, Clock::time_point now, std::size_t threshold);

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  // Handed to the engine thread whole, not element by element. The first `count_` are
  // queued; the rest are spares whose memory the next requests reuse.
  std::vector<Request> queue_;
  std::size_t count_ = 0;
  std::vector<Request> spare_;  // recycle()d, to become queue_ once the engine takes it
  std::size_t bytes_ = 0;
  bool flush_ = false;
  bool stop_ = false;
  // A hold() that no flush() ends must not keep requests from the engine forever.
  static constexpr std::chrono::seconds kMaxHold{1};
  std::optional<Clock::time_point> held_since_;
  std::uint64_t next_seq_ = 1;
  Clock::time_point last_push_{};
};

}  // namespace ringfuse::engine
