// The lock-free pieces of the shared-memory transport, over memory the caller provides (a
// shared mapping in production, a plain buffer in unit tests):
//  - a single-producer/single-consumer byte ring whose producer and consumer cursors live on
//    separate cache lines, so the two processes never write the same line;
//  - a doorbell, a futex word a waiting rank sleeps on and its peers ring after progress, so
//    waiting neither burns a core nor adds scheduler-tick latency.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <span>

namespace ringfuse::transport::shm {

/// Two lines, not one: adjacent-line hardware prefetch would otherwise still make producer
/// and consumer cursors bounce together.
inline constexpr std::size_t kLineStride = 128;

/// Every message starts at a multiple of this stream offset, so a received element never
/// straddles the ring's wrap-around and can be reduced in place, and kernels see aligned data.
inline constexpr std::size_t kMessageAlign = 64;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

/// The shared part of one ring: stream positions, monotonic (2^64 bytes never wrap).
struct RingControl {
  alignas(kLineStride) std::atomic<std::uint64_t> head;  // bytes published by the producer
  alignas(kLineStride) std::atomic<std::uint64_t> tail;  // bytes released by the consumer
};
static_assert(sizeof(RingControl) == 2 * kLineStride);

constexpr std::uint64_t round_up(std::uint64_t value, std::uint64_t align) {
  return (value + align - 1) / align * align;
}

/// The producer's view: its own cursor plus a cached copy of the consumer's, so the shared
/// `tail` line is read only when the cached value says the ring is full.
class RingWriter {
 public:
  RingWriter() = default;
  /// `capacity` must be a power of two and a multiple of kMessageAlign.
  RingWriter(RingControl* control, std::byte* data, std::size_t capacity)
      : control_(control), data_(data), mask_(capacity - 1), capacity_(capacity),
        head_(control->head.load(std::memory_order_relaxed)),
        cached_tail_(control->tail.load(std::memory_order_acquire)) {}

  /// Starts a message at an aligned stream offset; the consumer skips the same padding.
  void begin_message() { head_ = round_up(head_, kMessageAlign); }

  /// Copies as much of `bytes` as fits now (possibly 0) and publishes it.
  std::size_t write(const std::byte* src, std::size_t bytes) {
    std::size_t room = free_space(cached_tail_);
    if (room < bytes) {
      cached_tail_ = control_->tail.load(std::memory_order_acquire);
      room = free_space(cached_tail_);
    }
    const std::size_t n = std::min(room, bytes);
    if (n == 0) return 0;
    const std::size_t at = head_ & mask_;
    const std::size_t first = std::min(n, capacity_ - at);
    std::memcpy(data_ + at, src, first);
    if (first < n) std::memcpy(data_, src + first, n - first);
    head_ += n;
    control_->head.store(head_, std::memory_order_release);
    return n;
  }

  /// How many bytes a write would take now (reads the consumer's line).
  std::size_t room() {
    cached_tail_ = control_->tail.load(std::memory_order_acquire);
    return free_space(cached_tail_);
  }

  /// Whether a write would make progress now (reads the consumer's line).
  bool has_space() {
    cached_tail_ = control_->tail.load(std::memory_order_acquire);
    return free_space(cached_tail_) > 0;
  }

 private:
  std::size_t free_space(std::uint64_t tail) const {
    // After begin_message() rounds head_ up, head_ - tail may exceed the capacity by the pad.
    const std::uint64_t used = head_ - tail;
    return used >= capacity_ ? 0 : capacity_ - static_cast<std::size_t>(used);
  }

  RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t mask_ = 0;
  std::size_t capacity_ = 0;
  std::uint64_t head_ = 0;
  std::uint64_t cached_tail_ = 0;
};

/// The consumer's view. Received bytes are read in place (peek), then released (consume), so
/// a reduction can read straight out of the shared ring without a staging copy.
class RingReader {
 public:
  RingReader() = default;
  RingReader(RingControl* control, const std::byte* data, std::size_t capacity)
      : control_(control), data_(data), mask_(capacity - 1), capacity_(capacity),
        tail_(control->tail.load(std::memory_order_relaxed)),
        cached_head_(control->head.load(std::memory_order_acquire)) {}

  void begin_message() { tail_ = round_up(tail_, kMessageAlign); }

  /// The contiguous published bytes at the cursor, at most `max` (empty when none yet).
  std::span<const std::byte> peek(std::size_t max) {
    std::size_t ready = available(cached_head_);
    if (ready < max) {
      cached_head_ = control_->head.load(std::memory_order_acquire);
      ready = available(cached_head_);
    }
    const std::size_t at = tail_ & mask_;
    return {data_ + at, std::min({ready, max, capacity_ - at})};
  }

  /// Hands `bytes` (from the last peek) back to the producer.
  void consume(std::size_t bytes) {
    tail_ += bytes;
    control_->tail.store(tail_, std::memory_order_release);
  }

  /// Whether at least `min_bytes` are readable now (reads the producer's line).
  bool has_data(std::size_t min_bytes = 1) {
    cached_head_ = control_->head.load(std::memory_order_acquire);
    return available(cached_head_) >= min_bytes;
  }

 private:
  std::size_t available(std::uint64_t head) const {
    // tail_ may be rounded past a head the producer has not yet moved to the next message.
    return head > tail_ ? static_cast<std::size_t>(head - tail_) : 0;
  }

  RingControl* control_ = nullptr;
  const std::byte* data_ = nullptr;
  std::size_t mask_ = 0;
  std::size_t capacity_ = 0;
  std::uint64_t tail_ = 0;
  std::uint64_t cached_head_ = 0;
};

/// One per rank, in its own segment: the rank sleeps on `sequence`; peers that publish data
/// for it or free space it waits for bump the sequence and wake it, but only when `sleepers`
/// says someone is asleep, so the fast path is a fence and a load.
struct Doorbell {
  alignas(kLineStride) std::atomic<std::uint32_t> sequence;
  std::atomic<std::uint32_t> sleepers;
  /// Where the owner last waited: its CPU plus one, 0 unknown (shm_placement.hpp).
  std::atomic<std::int32_t> cpu_tag;
};

inline long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value,
                  const timespec* timeout) {
  // Not FUTEX_PRIVATE: the word is in memory shared between processes.
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, timeout,
                   nullptr, 0);
}

/// Called after publishing progress the owner of `bell` may be waiting for.
inline void ring(Doorbell& bell) {
  // Pairs with the fence in sleep(): either we see the sleeper, or it sees our progress.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (bell.sleepers.load(std::memory_order_relaxed) != 0) {
    bell.sequence.fetch_add(1, std::memory_order_seq_cst);
    futex(&bell.sequence, FUTEX_WAKE, INT_MAX, nullptr);
  }
}

/// Sleeps on `bell` until rung or `timeout`, unless `ready()` already holds after announcing
/// the sleep (which closes the lost-wake-up window). Spurious returns are fine: callers loop.
template <class Ready>
void sleep(Doorbell& bell, std::chrono::microseconds timeout, Ready&& ready) {
  bell.sleepers.fetch_add(1, std::memory_order_seq_cst);
  const std::uint32_t seen = bell.sequence.load(std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!ready()) {
    const timespec ts{static_cast<time_t>(timeout.count() / 1'000'000),
                      static_cast<long>(timeout.count() % 1'000'000) * 1000};
    futex(&bell.sequence, FUTEX_WAIT, seen, &ts);
  }
  bell.sleepers.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace ringfuse::transport::shm
