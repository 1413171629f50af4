// Ring all-gather over blocks of different sizes (some empty), for every placement `shift` the
// callers use: the native backend's allgatherv and the hierarchical all-reduce (-1) and the
// ring all-reduce (0).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

class Allgatherv : public ::testing::TestWithParam<WorldParam> {};

TEST_P(Allgatherv, EveryRankGetsEveryBlock) {
  run_in_world(GetParam(), [&](Rank& rank, transport::Transport& transport, algo::Workspace&) {
    const int n = rank.size();
    std::size_t case_index = 0;
    for (DataType type : {DataType::u8, DataType::f16, DataType::f32, DataType::f64}) {
      const std::size_t element = element_size(type);
      for (std::size_t base : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{4099}}) {
        for (int shift : {-1, 0, 1}) {
          for (bool aligned : {true, false}) {
            // Block k holds base + (5k mod 3) elements: uneven, and empty for some k when base is
            // 0.
            std::vector<std::size_t> counts;
            for (int k = 0; k < n; ++k)
              counts.push_back(base + static_cast<std::size_t>(5 * k % 3));
            const auto blocks = algo::blocks_from_counts(counts);
            const std::size_t bytes = (blocks.back().offset + blocks.back().count) * element;
            const std::size_t offset = misalignment(type, aligned, rank.rank(), case_index++);
            GuardedBuffer buffer(bytes, offset);
            // This rank holds block wrap(rank + 1 + shift); the rest is its own garbage.
            const int own = algo::wrap(rank.rank() + 1 + shift, n);
            for (int k = 0; k < n; ++k) {
              const auto& block = blocks[k];
              for (std::size_t i = 0; i < block.count * element; ++i) {
                buffer.data()[block.offset * element + i] =
                    k == own ? pattern(k, 1, i) : pattern(rank.rank(), 2, i);
              }
            }
            algo::ring_allgather(transport, buffer.data(), element, blocks, shift);
            for (int k = 0; k < n; ++k) {
              const auto& block = blocks[k];
              const auto what = fmt::format("{} blocks of {}+ elements, shift {}, at +{}: block {}",
                                            to_string(type), base, shift, offset, k);
              const auto difference = first_byte_difference(
                  buffer.data() + block.offset * element, block.count * element,
                  [&](std::size_t i) { return pattern(k, 1, i); });
              rank.expect(!difference, fmt::format("{}: {}", what, difference.value_or("")));
            }
            rank.expect(buffer.guards_intact(), fmt::format("{} shift {}: wrote outside the buffer",
                                                            to_string(type), shift));
          }
        }
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(InProcess, Allgatherv, ::testing::ValuesIn(worlds(1, 8)), world_name);

}  // namespace
}  // namespace ringfuse::inproc
