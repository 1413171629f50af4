// How a buffer of `count` elements is cut into per-rank blocks.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace ringfuse::algo {

struct Block {
  std::size_t offset = 0;  // in elements
  std::size_t count = 0;
};

/// `parts` contiguous blocks covering [0, count); sizes differ by at most one element, so
/// counts not divisible by the world size (and counts smaller than it) work.
std::vector<Block> even_blocks(std::size_t count, int parts);

/// Blocks laid out back to back with the given sizes.
std::vector<Block> blocks_from_counts(std::span<const std::size_t> counts);
/// The same into `blocks`, which keeps its memory from call to call (a caller on a hot path
/// allocates nothing once it has held as many blocks).
void blocks_from_counts(std::span<const std::size_t> counts, std::vector<Block>& blocks);

/// Non-negative modulo, for ring indices.
constexpr int wrap(int value, int size) { return ((value % size) + size) % size; }

}  // namespace ringfuse::algo
