// Memory that every rank of a one-host world maps: each rank owns one window and reads the
// others' directly, so a collective over data already in the windows needs no copy into a
// transport (algo::window_allreduce). The engine packs its fusion buffer there.
#pragma once

#include <cstddef>

namespace ringfuse::transport {

class SharedWindow {
 public:
  virtual ~SharedWindow() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Bytes each rank's window may grow to (the same on every rank).
  virtual std::size_t capacity() const = 0;
  /// This rank's window; at least the first `bytes` (at most capacity()) are backed by
  /// pre-faulted memory afterwards. Growing keeps what is already written. Throws Error(system)
  /// when the host's shared memory (/dev/shm) is full.
  virtual std::byte* reserve(std::size_t bytes) = 0;
  /// Where this rank's window starts, reserved or not (for telling whether a buffer is in it).
  virtual const std::byte* local() const = 0;
  /// `rank`'s window: read only the bytes that rank reserved and wrote before a barrier().
  virtual const std::byte* peer(int rank) const = 0;
  /// Returns once every rank has called it as often as this one: what a rank wrote to its own
  /// window before it is visible to every rank after it. Bounded by the transport's operation
  /// timeout; fails naming a rank that died or stalled.
  virtual void barrier() = 0;
};

}  // namespace ringfuse::transport
