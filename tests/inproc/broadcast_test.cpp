// Broadcast from several roots, below and above the size where it switches from the binomial
// tree to scatter + ring all-gather, into buffers at odd byte offsets.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

// Either side of broadcast.cpp's kScatterAllgatherBytes (256 KiB).
constexpr std::size_t kJustBelowScatter = (std::size_t{256} << 10) - 1;
constexpr std::size_t kJustAboveScatter = (std::size_t{256} << 10) + 13;

class Broadcast : public ::testing::TestWithParam<WorldParam> {};

TEST_P(Broadcast, EveryRankGetsTheRootsBytes) {
  run_in_world(GetParam(), [&](Rank& rank, transport::Transport& transport, algo::Workspace&) {
    const int n = rank.size();
    std::size_t case_index = 0;
    for (std::size_t bytes : odd_counts(n, {7, 1009, kJustBelowScatter, kJustAboveScatter})) {
      for (int root : {0, n - 1, n / 2}) {
        for (bool aligned : {true, false}) {
          const std::size_t offset = misalignment(DataType::u8, aligned, rank.rank(), case_index++);
          GuardedBuffer buffer(bytes, offset);
          // Every rank starts with bytes of its own, so a rank that receives nothing shows.
          for (std::size_t i = 0; i < bytes; ++i) buffer.data()[i] = pattern(rank.rank(), 0, i);
          algo::broadcast(transport, buffer.data(), bytes, root);
          const auto what = fmt::format("{} bytes from root {} at +{}", bytes, root, offset);
          const auto difference = first_byte_difference(
              buffer.data(), bytes, [&](std::size_t i) { return pattern(root, 0, i); });
          rank.expect(!difference, fmt::format("{}: {}", what, difference.value_or("")));
          rank.expect(buffer.guards_intact(), what + ": wrote outside the buffer");
        }
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(InProcess, Broadcast, ::testing::ValuesIn(worlds(1, 8)), world_name);

}  // namespace
}  // namespace ringfuse::inproc
