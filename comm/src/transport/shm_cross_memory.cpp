#include "transport/shm_cross_memory.hpp"

#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "transport/cross_memory.hpp"
#include "transport/failure_report.hpp"

namespace ringfuse::transport {

ShmTransport::CrossMemory::CrossMemory(ShmTransport& transport, std::size_t min_bytes)
    : transport_(transport),
      min_bytes_(min_bytes),
      pids_(static_cast<std::size_t>(transport.size_)),
      buffers_(static_cast<std::size_t>(transport.size_)) {
  for (int owner = 0; owner < transport_.size_; ++owner) {
    pids_[owner] = static_cast<pid_t>(line(owner).pid);
  }
}

bool ShmTransport::CrossMemory::probe(const ShmTransport& transport, std::string& why) {
  for (int peer = 0; peer < transport.size_; ++peer) {
    if (peer == transport.rank_) continue;
    const auto& seen = line_of(transport, peer);
    std::uint64_t nonce = 0;
    const int error = cross_memory::read(static_cast<pid_t>(seen.pid), seen.nonce_address,
                                         &nonce, sizeof(nonce));
    if (error != 0 || nonce != seen.nonce) {
      why = fmt::format("reading rank {}'s memory (process {}) {}",
                        transport.options_.mesh.global_ranks(peer), seen.pid,
                        error != 0 ? std::string("failed: ") + std::strerror(error)
                                   : std::string("found another process there"));
      return false;
    }
  }
  return true;
}

shm::CrossMemoryLine& ShmTransport::CrossMemory::line_of(const ShmTransport& transport,
                                                        int owner) {
  return *reinterpret_cast<shm::CrossMemoryLine*>(transport.segments_[owner].data() +
                                                  shm::kCrossMemoryLineOffset);
}

shm::CrossMemoryLine& ShmTransport::CrossMemory::line(int owner) const {
  return line_of(transport_, owner);
}

shm::PieceCounters& ShmTransport::CrossMemory::counters() const {
  return *reinterpret_cast<shm::PieceCounters*>(transport_.segments_[0].data() +
                                                shm::kPieceCountersOffset);
}

void ShmTransport::CrossMemory::open(std::byte* data, std::size_t bytes, std::size_t pieces) {
  first_ = end_;
  end_ = first_ + pieces;
  sleep_at_once_ = bytes >= transport_.wait_.sleep_from_bytes;
  line(rank()).buffer.store(reinterpret_cast<std::uintptr_t>(data), std::memory_order_relaxed);
  // The barrier's release and acquire make every rank's buffer address (and its data, which
  // the caller wrote before) visible to every other.
  transport_.arrive_and_wait(sleep_at_once_);
  for (int owner = 0; owner < size(); ++owner) {
    buffers_[owner] = line(owner).buffer.load(std::memory_order_relaxed);
  }
}

std::optional<std::size_t> ShmTransport::CrossMemory::claim() {
  // A transport that failed meanwhile (a peer's death seen elsewhere) takes no more pieces.
  check_exchange(rank(), size(), transport_.options_.mesh.global_ranks, transport_.operation_,
                 transport_.aborted_, kNoPeer, kNoPeer);
  auto& claimed = counters().claimed;
  std::uint64_t next = claimed.load(std::memory_order_relaxed);
  while (next < end_) {
    if (claimed.compare_exchange_weak(next, next + 1, std::memory_order_relaxed)) {
      line(rank()).holding.store(next - first_ + 1, std::memory_order_relaxed);
      return static_cast<std::size_t>(next - first_);
    }
  }
  return std::nullopt;
}

void ShmTransport::CrossMemory::read(int peer, std::size_t offset, std::byte* to,
                                     std::size_t bytes) {
  if (const int error = cross_memory::read(pids_[peer], buffers_[peer] + offset, to, bytes)) {
    copy_failed(peer, "reading from", error);
  }
}

void ShmTransport::CrossMemory::write(int peer, std::size_t offset, const std::byte* from,
                                      std::size_t bytes) {
  // A peer that gave up on the collective (its wait failed) may already reuse its buffer.
  if (line(peer).buffer.load(std::memory_order_acquire) != buffers_[peer]) {
    transport_.fail(peer, "it left the all-reduce before every piece was written back", false);
  }
  if (const int error = cross_memory::write(pids_[peer], buffers_[peer] + offset, from, bytes)) {
    copy_failed(peer, "writing to", error);
  }
}

void ShmTransport::CrossMemory::finish() {
  line(rank()).holding.store(0, std::memory_order_relaxed);
  // Release: the piece's bytes in every rank's buffer are there for whoever sees the count.
  if (counters().finished.fetch_add(1, std::memory_order_acq_rel) + 1 == end_) {
    for (int peer = 0; peer < size(); ++peer) {
      if (peer != rank()) shm::ring(transport_.doorbell(peer));
    }
  }
}

void ShmTransport::CrossMemory::close() {
  try {
    wait_for_every_piece();
  } catch (...) {
    // Peers still holding a piece check this before writing into the buffer.
    line(rank()).buffer.store(0, std::memory_order_release);
    throw;
  }
}

void ShmTransport::CrossMemory::wait_for_every_piece() {
  auto& finished = counters().finished;
  const std::function<bool()> done = [&] {
    return finished.load(std::memory_order_acquire) >= end_;
  };
  Idle state;
  state.sleep_at_once = sleep_at_once_;
  std::uint64_t seen = finished.load(std::memory_order_acquire);
  while (!done()) {
    const std::uint64_t now = finished.load(std::memory_order_acquire);
    if (now > seen) state.progressed();
    seen = now;
    // For liveness and the timeout: the peers working on a piece, or all of them when the
    // last pieces finished in between.
    waiting_for_.clear();
    for (int peer = 0; peer < size(); ++peer) {
      if (peer != rank() && line(peer).holding.load(std::memory_order_relaxed) != 0) {
        waiting_for_.push_back(peer);
      }
    }
    if (waiting_for_.empty()) {
      for (int peer = 0; peer < size(); ++peer) {
        if (peer != rank()) waiting_for_.push_back(peer);
      }
    }
    transport_.idle(state, waiting_for_, done);
  }
}

void ShmTransport::CrossMemory::copy_failed(int peer, const char* direction, int error) {
  transport_.fail(peer,
                  fmt::format("{} its memory across processes failed: {}", direction,
                              std::strerror(error)),
                  error == ESRCH);
}

}  // namespace ringfuse::transport
