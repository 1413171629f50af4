// The order in which reduce_and_return puts pieces on its one byte stream to the peer (a TCP
// connection: TcpMesh; a ring: ShmTransport): first `lookahead` pieces of `give` (the peer's
// half, unreduced), then one reduced piece of `keep` and one more piece of `give` in turn,
// then whatever is left of either. Both ends derive it from the two byte counts alone, so the
// receiver knows what every incoming byte is without a header. Reduced piece j waits only for
// the peer's unreduced piece j, which the peer's own schedule puts 2·lookahead − 1 places
// earlier than this one puts reduced piece j: neither side can wait on the other in a circle.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace ringfuse::transport {

/// Bytes per piece for an exchange of `total_bytes` (both halves: the same number at both
/// ends, so both cut the same pieces). About 16 pieces in all, 8 per half, between 64 KiB and
/// 256 KiB: a reduced piece must go back while it is still in cache (256 KiB at most), but
/// at 1 MiB pieces of 256 KiB are two per half, so each rank waits for the whole first piece
/// before it can return anything and for the whole last one after it has sent everything
/// (perf/RESULTS.md, issue 17: with 64 KiB pieces the 1 MiB all-reduce was faster in nine of
/// eleven alternating rounds, most under load, at no more CPU time). Below 64 KiB system
/// calls and wake-ups cost more than the overlap gains.
/// A power of two, so a multiple of every element size.
inline std::size_t return_piece_bytes(std::size_t total_bytes) {
  constexpr std::size_t kSmallest = std::size_t{64} << 10;
  constexpr std::size_t kLargest = std::size_t{256} << 10;
  std::size_t piece = kSmallest;
  while (piece < kLargest && piece * 16 < total_bytes) piece *= 2;
  return piece;
}

struct ReturnSegment {
  enum Kind { give, keep };  // unreduced piece of `give`, or reduced (finished) piece of `keep`
  Kind kind;
  std::size_t index;   // piece number within its half
  std::size_t offset;  // bytes into its half
  std::size_t bytes;
};

/// Segments of `give_bytes` and `keep_bytes`, cut into pieces of `piece` bytes (the last of
/// each half shorter), in stream order. `piece` and `lookahead` must be at least 1.
inline std::vector<ReturnSegment> return_schedule(std::size_t give_bytes, std::size_t keep_bytes,
                                                  std::size_t piece, std::size_t lookahead) {
  const std::size_t gives = (give_bytes + piece - 1) / piece;
  const std::size_t keeps = (keep_bytes + piece - 1) / piece;
  std::vector<ReturnSegment> order;
  order.reserve(gives + keeps);
  std::size_t given = 0;
  std::size_t kept = 0;
  while (given < gives || kept < keeps) {
    if (given < gives && (given < kept + lookahead || kept == keeps)) {
      const std::size_t offset = given * piece;
      order.push_back({ReturnSegment::give, given++, offset, std::min(piece, give_bytes - offset)});
    } else {
      const std::size_t offset = kept * piece;
      order.push_back({ReturnSegment::keep, kept++, offset, std::min(piece, keep_bytes - offset)});
    }
  }
  return order;
}

}  // namespace ringfuse::transport
