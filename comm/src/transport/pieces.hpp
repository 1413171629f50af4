// A buffer that lies in several places: the engine's fused all-reduce hands the transport its
// members' tensors as they are, instead of packing them into one buffer first, so that the
// shared-memory transport copies each tensor straight into its ring and reduces straight out
// of the ring into the tensor (perf/RESULTS.md, issue 18: the two packing copies cost about as
// much as the whole all-reduce of 1,000 small tensors).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>

namespace ringfuse::transport {

/// One contiguous run of bytes of such a buffer. Pieces of a reduction hold whole elements.
struct Piece {
  std::byte* data;
  std::size_t bytes;
};

using Pieces = std::span<const Piece>;

inline std::size_t total_bytes(Pieces pieces) {
  std::size_t bytes = 0;
  for (const Piece& piece : pieces) bytes += piece.bytes;
  return bytes;
}

/// Walks `pieces` front to back in steps of any size: each step calls `visit(at, bytes, done)`
/// for every contiguous run it covers, `done` being the bytes walked before that run. A step
/// that ends on an element boundary of the logical buffer ends on one inside a piece too,
/// since every piece holds whole elements.
class PieceCursor {
 public:
  explicit PieceCursor(Pieces pieces) : pieces_(pieces) {}

  /// Visits the next `bytes` (at most what is left) and returns how many it visited.
  template <class Visit>
  std::size_t advance(std::size_t bytes, Visit&& visit) {
    std::size_t walked = 0;
    while (walked < bytes && index_ < pieces_.size()) {
      const Piece& piece = pieces_[index_];
      const std::size_t n = std::min(bytes - walked, piece.bytes - within_);
      if (n > 0) visit(piece.data + within_, n, done_ + walked);
      walked += n;
      within_ += n;
      if (within_ == piece.bytes) {
        ++index_;
        within_ = 0;
      }
    }
    done_ += walked;
    return walked;
  }

 private:
  Pieces pieces_;
  std::size_t index_ = 0;   // the piece the cursor is in
  std::size_t within_ = 0;  // bytes of it already walked
  std::size_t done_ = 0;    // bytes walked in all
};

}  // namespace ringfuse::transport
