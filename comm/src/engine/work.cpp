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
  std::lock_guard lock(mutex);
  if (done) return false;
  if (failure != nullptr && !error) error = *failure;
  if (--remaining > 0 && failure == nullptr) return false;
  if (before_done) std::exchange(before_done, nullptr)();
  done = true;
  return sleepers > 0 || !callbacks.empty();
}

void WorkState::wake() {
  done_cv.notify_all();
  // No callback is added once `done` is set (on_complete() runs it at once then), so the list
  // is this thread's to run without the mutex.
  if (callbacks.empty()) return;
  std::vector<std::function<void(const Error*)>> to_run;
  to_run.swap(callbacks);
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
  return state_->done.load(std::memory_order_acquire);
}

void Work::wait(std::chrono::milliseconds timeout) const {
  if (!state_) throw no_state();
  if (test()) {  // nothing changes a finished state: its error can be read without the mutex
    if (state_->error) throw *state_->error;
    return;
  }
  const auto spin = std::min<std::chrono::microseconds>(kSpinBeforeSleep, timeout);
  for (const auto spin_until = std::chrono::steady_clock::now() + spin;
       !test() && std::chrono::steady_clock::now() < spin_until;) {
    ::sched_yield();
  }
  std::unique_lock lock(state_->mutex);
  ++state_->sleepers;
  const bool finished =
      state_->done_cv.wait_for(lock, timeout, [&] { return state_->done.load(); });
  --state_->sleepers;
  if (!finished) {
    throw Error(ErrorKind::timeout,
                fmt::format("Work::wait: the collective did not finish within {} ms",
                            timeout.count()));
  }
  if (state_->error) throw *state_->error;
}

void Work::on_complete(std::function<void(const Error*)> callback) const {
  if (!state_) throw no_state();
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->done) {
      state_->callbacks.push_back(std::move(callback));
      return;
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
  return state_->done ? state_->last_joined : -1;
}

}  // namespace ringfuse

namespace ringfuse {

int Work::source_rank() const {
  if (!state_) return -1;
  std::lock_guard lock(state_->mutex);
  return state_->done ? state_->source_rank : -1;
}

}  // namespace ringfuse
