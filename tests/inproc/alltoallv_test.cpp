// Pairwise all-to-all with a different block size for every (sender, receiver) pair, empty
// blocks included.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

class Alltoallv : public ::testing::TestWithParam<WorldParam> {};

TEST_P(Alltoallv, EveryRankGetsItsBlockFromEveryRank) {
  run_in_world(GetParam(), [&](Rank& rank, transport::Transport& transport, algo::Workspace&) {
    const int n = rank.size();
    const int me = rank.rank();
    std::size_t case_index = 0;
    for (DataType type : {DataType::u8, DataType::bf16, DataType::i32, DataType::f64}) {
      const std::size_t element = element_size(type);
      for (std::size_t base :
           {std::size_t{0}, std::size_t{1}, std::size_t{13}, std::size_t{5003}}) {
        for (bool aligned : {true, false}) {
          const auto block_count = [&](int from, int to) {
            return base + static_cast<std::size_t>((from + 2 * to) % 3);
          };
          std::vector<std::size_t> send_counts, recv_counts;
          for (int peer = 0; peer < n; ++peer) {
            send_counts.push_back(block_count(me, peer));
            recv_counts.push_back(block_count(peer, me));
          }
          const auto send_blocks = algo::blocks_from_counts(send_counts);
          const auto recv_blocks = algo::blocks_from_counts(recv_counts);
          const auto total = [](const std::vector<algo::Block>& blocks) {
            return blocks.back().offset + blocks.back().count;
          };
          GuardedBuffer send(total(send_blocks) * element,
                             misalignment(type, aligned, me, case_index));
          GuardedBuffer recv(total(recv_blocks) * element,
                             misalignment(type, aligned, me + 1, case_index++));
          // The block from `from` to `to` is pattern(from, to, ·).
          for (int to = 0; to < n; ++to) {
            for (std::size_t i = 0; i < send_counts[to] * element; ++i) {
              send.data()[send_blocks[to].offset * element + i] = pattern(me, to, i);
            }
          }
          algo::alltoallv(transport, send.data(), send_blocks, recv.data(), recv_blocks, element);
          for (int from = 0; from < n; ++from) {
            const auto what = fmt::format("{} blocks of {}+ elements, block from rank {}",
                                          to_string(type), base, from);
            const auto difference = first_byte_difference(
                recv.data() + recv_blocks[from].offset * element, recv_counts[from] * element,
                [&](std::size_t i) { return pattern(from, me, i); });
            rank.expect(!difference, fmt::format("{}: {}", what, difference.value_or("")));
          }
          rank.expect(
              send.guards_intact() && recv.guards_intact(),
              fmt::format("{} blocks of {}+: wrote outside the buffers", to_string(type), base));
        }
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(InProcess, Alltoallv, ::testing::ValuesIn(worlds(1, 8)), world_name);

}  // namespace
}  // namespace ringfuse::inproc
