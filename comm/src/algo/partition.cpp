#include "algo/partition.hpp"

namespace ringfuse::algo {

std::vector<Block> even_blocks(std::size_t count, int parts) {
  std::vector<Block> blocks(static_cast<std::size_t>(parts));
  const std::size_t base = count / static_cast<std::size_t>(parts);
  const std::size_t extra = count % static_cast<std::size_t>(parts);
  std::size_t offset = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    blocks[i] = Block{offset, base + (i < extra ? 1 : 0)};
    offset += blocks[i].count;
  }
  return blocks;
}

std::vector<Block> blocks_from_counts(std::span<const std::size_t> counts) {
  std::vector<Block> blocks;
  blocks_from_counts(counts, blocks);
  return blocks;
}

void blocks_from_counts(std::span<const std::size_t> counts, std::vector<Block>& blocks) {
  blocks.clear();
  blocks.reserve(counts.size());
  std::size_t offset = 0;
  for (std::size_t count : counts) {
    blocks.push_back(Block{offset, count});
    offset += count;
  }
}

}  // namespace ringfuse::algo
