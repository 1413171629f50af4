// The private memory of every rank of a one-host world, read and written in place by the
// others (Linux cross-memory attach: process_vm_readv / process_vm_writev, as Open MPI's
// shared-memory transport's "cma" single copy). A collective over buffers that live in each
// process's own memory (a DDP bucket, a tensor) then needs no copy through the rings, and
// its pieces can be done by whichever ranks are running: a rank that is waiting for a CPU
// holds nobody up but itself (algo::cross_memory_allreduce).
#pragma once

#include <cstddef>
#include <optional>

namespace ringfuse::transport {

class PeerMemory {
 public:
  virtual ~PeerMemory() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// All-reduces of at least this many bytes go this way: the same on every rank.
  virtual std::size_t min_bytes() const = 0;

  /// Collective: makes `data` (this rank's `bytes` for the collective about to run) what
  /// read() and write() reach at this rank, and returns once every rank has done so. The
  /// collective is cut into `pieces`, the same number on every rank.
  virtual void open(std::byte* data, std::size_t bytes, std::size_t pieces) = 0;
  /// The next piece of the open collective that no rank has claimed (0-based), or nullopt
  /// once every piece is claimed. Every claimed piece must be finish()ed.
  virtual std::optional<std::size_t> claim() = 0;
  /// Copies `bytes` at `offset` of `peer`'s open buffer into `to`.
  virtual void read(int peer, std::size_t offset, std::byte* to, std::size_t bytes) = 0;
  /// Copies `bytes` from `from` to `offset` of `peer`'s open buffer.
  virtual void write(int peer, std::size_t offset, const std::byte* from, std::size_t bytes) = 0;
  /// The piece this rank claimed last is done: nobody touches it again.
  virtual void finish() = 0;
  /// Returns once every piece of the collective is finished, by whichever rank claimed it:
  /// until then a peer may still read or write this rank's buffer. Bounded by the transport's
  /// operation timeout; fails naming a rank that died or stalled with a piece.
  virtual void close() = 0;
};

}  // namespace ringfuse::transport
