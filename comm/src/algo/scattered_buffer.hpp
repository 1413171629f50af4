// The elements an all-reduce works on, wherever they lie: one buffer, or the tensors of a
// fused group in place (transport/pieces.hpp). Algorithms ask it for element ranges and hand
// the pieces of each range to the transport.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "ringfuse/types.hpp"
#include "transport/pieces.hpp"

namespace ringfuse::algo {

using transport::Piece;
using transport::Pieces;

class ScatteredBuffer {
 public:
  /// `pieces` hold whole elements of `type`, in order; they must outlive this object.
  ScatteredBuffer(Pieces pieces, DataType type, ReduceOp op)
      : pieces_(pieces), type_(type), op_(op), element_bytes_(element_size(type)) {
    starts_.reserve(pieces.size() + 1);
    std::size_t count = 0;
    for (const Piece& piece : pieces) {
      starts_.push_back(count);
      count += piece.bytes / element_bytes_;
    }
    starts_.push_back(count);
  }

  std::size_t count() const { return starts_.back(); }
  DataType type() const { return type_; }
  ReduceOp op() const { return op_; }
  std::size_t element_bytes() const { return element_bytes_; }

  /// The pieces that hold elements [lo, hi), trimmed to them, in `out` (its memory is
  /// reused, so a caller keeps one vector per range it holds at a time).
  Pieces slice(std::size_t lo, std::size_t hi, std::vector<Piece>& out) const {
    out.clear();
    if (lo >= hi) return out;
    // The last piece starting at or before lo (empty pieces start where the next one does).
    auto at = std::upper_bound(starts_.begin(), starts_.end() - 1, lo) - starts_.begin() - 1;
    for (auto i = static_cast<std::size_t>(at); i < pieces_.size() && starts_[i] < hi; ++i) {
      const std::size_t first = std::max(lo, starts_[i]);
      const std::size_t last = std::min(hi, starts_[i + 1]);
      if (first >= last) continue;
      out.push_back({pieces_[i].data + (first - starts_[i]) * element_bytes_,
                     (last - first) * element_bytes_});
    }
    return out;
  }

 private:
  Pieces pieces_;
  DataType type_;
  ReduceOp op_;
  std::size_t element_bytes_;
  std::vector<std::size_t> starts_;  // element index where each piece starts; then the count
};

}  // namespace ringfuse::algo
