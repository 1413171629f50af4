#include <algorithm>
#include <cstring>

#include "algo/algorithms.hpp"
#include "reduce/reduce.hpp"

namespace ringfuse::algo {
namespace {

// The piece of this rank's block that every peer's piece is added to in turn: small enough to
// stay in L2 while all of them pass through it.
constexpr std::size_t kPieceBytes = std::size_t{128} << 10;

}  // namespace

void window_allreduce(transport::SharedWindow& window, std::size_t offset,
                      const ReduceBuffer& buffer) {
  const int size = window.size();
  const int rank = window.rank();
  const std::size_t element_bytes = element_size(buffer.type);
  const auto blocks = even_blocks(buffer.count, size);
  // buffer.data is this rank's window + offset; the same place in a peer's window:
  const auto mine = [&](const Block& block, std::size_t element) {
    return buffer.data + (block.offset + element) * element_bytes;
  };
  const auto theirs = [&](int peer, const Block& block, std::size_t element) {
    return window.peer(peer) + offset + (block.offset + element) * element_bytes;
  };

  window.barrier();  // every rank's input is in its window
  const Block& own = blocks[rank];
  const std::size_t piece = std::max<std::size_t>(1, kPieceBytes / element_bytes);
  for (std::size_t start = 0; start < own.count; start += piece) {
    const std::size_t count = std::min(piece, own.count - start);
    std::byte* dst = mine(own, start);
    // Starting from the next rank spreads the readers over the windows.
    for (int step = 1; step < size; ++step) {
      const int peer = (rank + step) % size;
      reduce::reduce_into(dst, theirs(peer, own, start), count, buffer.type, buffer.op);
    }
  }
  if (buffer.op == ReduceOp::avg) {
    reduce::divide(mine(own, 0), own.count, buffer.type, static_cast<std::size_t>(size));
  }

  window.barrier();  // every block is reduced in its owner's window
  for (int step = 1; step < size; ++step) {
    const int peer = (rank + step) % size;
    const Block& block = blocks[peer];
    if (block.count > 0) {
      std::memcpy(mine(block, 0), theirs(peer, block, 0), block.count * element_bytes);
    }
  }
  window.barrier();  // nobody reads this rank's window any more: the caller may reuse it
}

}  // namespace ringfuse::algo
