// ShmTransport's PeerMemory: the peers' private memory through cross_memory.hpp, with the
// pieces' counters and the waits in the shared-memory segments (private to the transport).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "transport/peer_memory.hpp"
#include "transport/shm_transport.hpp"

namespace ringfuse::transport {
namespace shm {

/// Where the two are in a segment, after the magic, doorbell and window-barrier lines.
inline constexpr std::size_t kCrossMemoryLineOffset = 3 * kLineStride;
inline constexpr std::size_t kPieceCountersOffset = 4 * kLineStride;
inline constexpr std::size_t kCrossMemoryEnd = 6 * kLineStride;

/// In every rank's segment: what a peer needs to reach the owner's private memory.
struct CrossMemoryLine {
  std::uint64_t pid;            // the owner's process, as this host's kernel numbers it
  std::uint64_t nonce_address;  // where `nonce` is in the owner's address space
  std::uint64_t nonce;          // random: a read that finds it reached the owner, no other
  std::atomic<std::uint64_t> buffer;   // the owner's open buffer (PeerMemory::open)
  std::atomic<std::uint64_t> holding;  // 1 + the piece the owner works on, 0 for none
};

/// In rank 0's segment: pieces claimed and finished, counted over every collective, so the
/// counters never need resetting between them.
struct PieceCounters {
  alignas(kLineStride) std::atomic<std::uint64_t> claimed;
  alignas(kLineStride) std::atomic<std::uint64_t> finished;
};

}  // namespace shm

class ShmTransport::CrossMemory final : public PeerMemory {
 public:
  CrossMemory(ShmTransport& transport, std::size_t min_bytes);

  /// Whether this rank can read every peer's nonce across processes; `why` says what failed.
  static bool probe(const ShmTransport& transport, std::string& why);

  int rank() const override { return transport_.rank_; }
  int size() const override { return transport_.size_; }
  std::size_t min_bytes() const override { return min_bytes_; }
  void open(std::byte* data, std::size_t bytes, std::size_t pieces) override;
  std::optional<std::size_t> claim() override;
  void read(int peer, std::size_t offset, std::byte* to, std::size_t bytes) override;
  void write(int peer, std::size_t offset, const std::byte* from, std::size_t bytes) override;
  void finish() override;
  void close() override;

 private:
  void wait_for_every_piece();
  /// `owner`'s CrossMemoryLine in its segment.
  static shm::CrossMemoryLine& line_of(const ShmTransport& transport, int owner);
  shm::CrossMemoryLine& line(int owner) const;
  shm::PieceCounters& counters() const;
  [[noreturn]] void copy_failed(int peer, const char* direction, int error);

  ShmTransport& transport_;
  std::size_t min_bytes_;
  std::vector<pid_t> pids_;              // by rank
  std::vector<std::uintptr_t> buffers_;  // by rank: the open collective's buffers
  std::uint64_t first_ = 0;              // the open collective's pieces, numbered as the
  std::uint64_t end_ = 0;                // counters count them: [first_, end_)
  bool sleep_at_once_ = false;           // close() of a large collective (WaitPolicy)
  std::vector<int> waiting_for_;         // peers close() still waits for
};

}  // namespace ringfuse::transport
