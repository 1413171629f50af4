#include "engine/request_queue.hpp"

#include <sched.h>

#include <algorithm>
#include <utility>

namespace ringfuse::engine {

bool RequestQueue::queued(Request& request, Clock::time_point now, std::size_t threshold) {
  const bool was_empty = count_ == 0;
  ++count_;
  if (!request.join) request.seq = next_seq_++;
  request.enqueued = now;
  bytes_ += request.fp.bytes();
  last_push_ = now;
  // Waking on the first push starts the quiet timer; later pushes only move it, and waking on
  // every one would only cost context switches.
  return was_empty || bytes_ >= threshold;
}

bool RequestQueue::push(std::span<Request> requests, std::size_t threshold) {
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    if (stop_) return false;
    const auto now = Clock::now();
    for (auto& request : requests) {
      Request& slot = next_slot();
      swap(slot, request);
      wake = queued(slot, now, threshold) || wake;
    }
  }
  if (wake) cv_.notify_one();
  return true;
}

void RequestQueue::recycle(std::vector<Request>&& done) {
  std::lock_guard lock(mutex_);
  if (done.size() > spare_.size()) spare_ = std::move(done);
}

void RequestQueue::hold() {
  std::lock_guard lock(mutex_);
  if (!held_since_) held_since_ = Clock::now();
}

void RequestQueue::flush() {
  {
    std::lock_guard lock(mutex_);
    held_since_.reset();
    // Nothing queued, nothing to start: a flag kept until the next push would send that push
    // (most likely the first tensor of the next step) alone into a cycle of its own.
    if (count_ == 0) return;
    flush_ = true;
  }
  cv_.notify_one();
}

void RequestQueue::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_one();
}

bool RequestQueue::stopping() const {
  std::lock_guard lock(mutex_);
  return stop_;
}

void RequestQueue::advance_sequence(std::uint64_t next) {
  std::lock_guard lock(mutex_);
  next_seq_ = std::max(next_seq_, next);
}

TakenRequests RequestQueue::wait_and_take(std::size_t threshold, std::chrono::microseconds quiet,
                                          std::chrono::microseconds max_wait,
                                          Clock::time_point deadline,
                                          std::chrono::microseconds spin) {
  std::unique_lock lock(mutex_);
  const auto spin_until = Clock::now() + spin;
  bool held = false;
  while (true) {
    const auto now = Clock::now();
    if (held_since_ && now >= *held_since_ + kMaxHold) held_since_.reset();
    held = held_since_.has_value() && !stop_;
    if (stop_ || now >= deadline) break;
    auto due = deadline;
    if (held) {
      due = std::min(deadline, *held_since_ + kMaxHold);
    } else if (count_ > 0) {
      if (flush_ || bytes_ >= threshold || queue_[count_ - 1].join) break;
      const auto quiet_at = last_push_ + quiet;
      const auto oldest_at = queue_.front().enqueued + max_wait;
      due = std::min({quiet_at, oldest_at, deadline});
      if (now >= due) break;
    }
    if (now < spin_until) {
      lock.unlock();
      ::sched_yield();
      lock.lock();
      continue;
    }
    cv_.wait_until(lock, due);
  }
  TakenRequests taken;
  // A cycle runs (the other ranks' requests may be due) without the ones held back.
  if (held) return taken;
  flush_ = false;
  bytes_ = 0;
  if (count_ == 0) return taken;  // the spares stay for the next requests
  // The whole vector, spares and all (a cycle may take fewer requests than the last, e.g.
  // one step's buckets of different sizes): nothing is moved, nothing freed here.
  taken.requests.swap(queue_);
  taken.count = std::exchange(count_, 0);
  queue_.swap(spare_);  // the requests the engine gave back, to fill again
  queue_.reserve(taken.count);  // the next step most likely enqueues as many
  return taken;
}

}  // namespace ringfuse::engine
