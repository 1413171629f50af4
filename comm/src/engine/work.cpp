#include <sched.h>

#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/work_state.hpp"

namespace ringfuse {

std::size_t TensorView::numel() const {
  std::size_t n = 1;
  for (const auto dim : shape) n *= static_cast<std::size_t>(dim < 0 ? 0 : dim);
  return n;
}

namespace engine {

bool WorkState::finish(const Error* failure) {
  // The usual case, one part without an error: no lock. What the engine wrote for the waiter
  // before (under the mutex or not) is published by the release of kDone.
  if (failure == nullptr && remaining == 1 && !before_done) {
    remaining = 0;
    const auto was = status.fetch_or(kDone, std::memory_order_acq_rel);
    return (was & (kDone | kWatched)) == kWatched;
  }
  std::lock_guard lock(mutex);
  if (is_done()) return false;
  if (failure != nullptr && !error) error = *failure;
  if (--remaining > 0 && failure == nullptr) return false;
  if (before_done) std::exchange(before_done, nullptr)();
  return (status.fetch_or(kDone, std::memory_order_acq_rel) & kWatched) != 0;
}

void WorkState::wake() {
  std::vector<std::function<void(const Error*)>> to_run;
  {
    // A wait() that marked the state watched holds the mutex until it sleeps: taking it here
    // makes sure the notification finds it asleep.
    std::lock_guard lock(mutex);
    to_run.swap(callbacks);
  }
  done_cv.notify_all();
  for (auto& callback : to_run) {
    try {
      callback(error ? &*error : nullptr);
    } catch (const std::exception& e) {
      spdlog::error("ringfuse engine: a completion callback threw: {}", e.what());
    }
  }
}

}  // namespace engine

namespace {

// How long wait() keeps checking (yielding the CPU between checks) before it sleeps: a small
// collective completes within this when the engine thread gets the CPU, and waking a sleeper
// costs a trip through the scheduler. Yielding lets the engine thread run when it shares this
// thread's core (mpirun binds a rank to one).
constexpr std::chrono::microseconds kSpinBeforeSleep{200};

Error no_state() {
  return Error(ErrorKind::invalid_argument, "this Work handle was default-constructed");
}
}  // namespace

bool Work::test() const {
  if (!state_) return true;
  return state_->is_done();
}

bool Work::wait_for(std::chrono::milliseconds timeout) const {
  if (!state_) throw no_state();
  if (!test()) {
    const auto spin = std::min<std::chrono::microseconds>(kSpinBeforeSleep, timeout);
    for (const auto spin_until = std::chrono::steady_clock::now() + spin;
         !test() && std::chrono::steady_clock::now() < spin_until;) {
      ::sched_yield();
    }
    std::unique_lock lock(state_->mutex);
    state_->watch();  // the completion wakes this thread (the predicate checks done first)
    if (!state_->done_cv.wait_for(lock, timeout, [&] { return state_->is_done(); })) {
      return false;
    }
  }
  // Nothing changes a finished state: its error can be read without the mutex.
  if (state_->error) throw *state_->error;
  return true;
}

void Work::wait(std::chrono::milliseconds timeout) const {
  if (!wait_for(timeout)) {
    throw Error(ErrorKind::timeout,
                fmt::format("Work::wait: the collective did not finish within {} ms",
                            timeout.count()));
  }
}

void Work::on_complete(std::function<void(const Error*)> callback) const {
  if (!state_) throw no_state();
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->is_done()) {
      state_->callbacks.push_back(std::move(callback));
      if (!state_->watch()) return;  // the completion finds it watched and runs the callback
      // Completed in between, without seeing it watched: it runs here, not there.
      callback = std::move(state_->callbacks.back());
      state_->callbacks.pop_back();
    }
  }
  callback(state_->error ? &*state_->error : nullptr);
}

std::vector<std::int64_t> Work::output_shape() const {
  if (!state_) return {};
  std::lock_guard lock(state_->mutex);
  return state_->output_shape;
}

std::vector<std::int64_t> Work::received_splits() const {
  if (!state_) return {};
  std::lock_guard lock(state_->mutex);
  return state_->received_splits;
}

int Work::last_joined_rank() const {
  if (!state_) return -1;
  std::lock_guard lock(state_->mutex);
  return state_->is_done() ? state_->last_joined : -1;
}

}  // namespace ringfuse

namespace ringfuse {

int Work::source_rank() const {
  if (!state_) return -1;
  std::lock_guard lock(state_->mutex);
  return state_->is_done() ? state_->source_rank : -1;
}

}  // namespace ringfuse
