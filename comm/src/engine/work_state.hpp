// The shared state behind a Work handle: completion flag, error, callbacks, allgather shape.
#pragma once

#include <atomic>
#include <cstdint>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "engine/recycling_allocator.hpp"
#include "ringfuse/engine.hpp"

namespace ringfuse::engine {

struct WorkState {
  // `status` bits. kDone is set once, after everything a waiter may read, so that test() and
  // a wait() on a finished collective (the usual case after a fused step) need not take the
  // mutex. kWatched is set, under `mutex`, by a wait() about to sleep and by a callback
  // registered before completion: a completion that does not find it takes no lock and wakes
  // nobody (issue 18: a fused step completes hundreds of Works that nobody sleeps on).
  static constexpr std::uint8_t kDone = 1;
  static constexpr std::uint8_t kWatched = 2;

  std::mutex mutex;
  std::condition_variable done_cv;
  std::atomic<std::uint8_t> status{0};
  std::optional<Error> error;
  std::vector<std::function<void(const Error*)>> callbacks;
  std::vector<std::int64_t> output_shape;
  int last_joined = -1;  // join(): the rank that joined last
  int source_rank = -1;  // point-to-point recv: the sender
  std::vector<std::int64_t> received_splits;  // uneven alltoall
  // Runs once, under `mutex`, just before the Work is marked done: whatever a waiter may rely
  // on once wait() returns (the name-mode registry's release of this Work's names).
  std::function<void()> before_done;
  // A grouped all-reduce completes when all its parts have. Like before_done, only the
  // completing thread (one per Work: the engine's, or the point-to-point worker's) reads and
  // changes it once the Work is queued.
  int remaining = 1;

  bool is_done() const { return (status.load(std::memory_order_acquire) & kDone) != 0; }

  /// Completes one part (the first error wins); runs the callbacks when the last part is done.
  void complete(const Error* failure) {
    if (finish(failure)) wake();
  }
  /// complete() in two halves, so that a group's Works can all be marked done before any
  /// waiter is woken (Outstanding::complete). finish() completes one part; it returns true
  /// when that made the Work done and a waiter sleeps or a callback waits, and then wake()
  /// (once) wakes the waiters and runs the callbacks. When it returns false the completing
  /// thread has nothing more to do with the state, and may let it go at once.
  bool finish(const Error* failure);
  void wake();
  /// Marks the state watched (under `mutex`); returns whether it was done already.
  bool watch() { return (status.fetch_or(kWatched, std::memory_order_acq_rel) & kDone) != 0; }
};

/// A new WorkState in recycled memory: one is made for every enqueued collective.
inline std::shared_ptr<WorkState> make_work_state() {
  return std::allocate_shared<WorkState>(RecyclingAllocator<WorkState>{});
}

}  // namespace ringfuse::engine
