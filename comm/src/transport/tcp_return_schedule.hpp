// The order in which TcpMesh::reduce_and_return puts pieces on its one byte stream to the
// peer: first `lookahead` pieces of `give` (the peer's half, unreduced), then one reduced piece
// of `keep` and one more piece of `give` in turn, then whatever is left of either. Both ends
// derive it from the two byte counts alone, so the receiver knows what every incoming byte
// is without a header. Reduced piece j waits only for the peer's unreduced piece j, which the
// peer's own schedule puts 2·lookahead − 1 places earlier than this one puts reduced piece j:
// neither side can wait on the other in a circle.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace ringfuse::transport {

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
