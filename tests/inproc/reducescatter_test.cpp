// Ring reduce-scatter, in place over even and uneven blocks, for the placements the callers
// use (shift -1: the native backend's reducescatter and the hierarchical all-reduce; 0: the
// ring all-reduce). Afterwards block wrap(rank + 1 + shift) holds the reduction; avg is left
// as the sum (the caller divides).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

void check(const WorldParam& world, const AllreduceCases& cases) {
  run_in_world(world, [&](Rank& rank, transport::Transport& transport, algo::Workspace& workspace) {
    const int n = rank.size();
    std::size_t case_index = 0;
    for_each_case(cases, [&](DataType type, ReduceOp op, std::size_t count) {
      for (bool even : {true, false}) {
        for (int shift : {-1, 0}) {
          // Uneven: block k has count + (k mod 3) elements, so some are empty for count 0.
          std::vector<std::size_t> counts;
          for (int k = 0; k < n; ++k) counts.push_back(count + static_cast<std::size_t>(k % 3));
          const auto blocks = even ? algo::even_blocks(count, n) : algo::blocks_from_counts(counts);
          const std::size_t total = blocks.back().offset + blocks.back().count;
          const bool aligned = case_index % 2 == 0;
          const std::size_t offset = misalignment(type, aligned, rank.rank(), case_index++);
          GuardedBuffer buffer(total * element_size(type), offset);
          for (std::size_t i = 0; i < total; ++i) {
            put(buffer.data(), i, type, input(rank.rank(), i, type, op, cases.seed));
          }
          algo::ring_reduce_scatter(transport, workspace,
                                    algo::ReduceBuffer{buffer.data(), total, type, op}, blocks,
                                    shift);
          const auto& own = blocks[algo::wrap(rank.rank() + 1 + shift, n)];
          const ReduceOp as = op == ReduceOp::avg ? ReduceOp::sum : op;
          const auto what = fmt::format("{} {} blocks, shift {}, at +{}", label(type, total, op),
                                        even ? "even" : "uneven", shift, offset);
          const auto difference = first_difference(
              buffer.data() + own.offset * element_size(type), own.count, type,
              [&](std::size_t i) { return reference(n, own.offset + i, type, as, cases.seed); });
          rank.expect(!difference, fmt::format("{}: {}", what, difference.value_or("")));
          rank.expect(buffer.guards_intact(), what + ": wrote outside the buffer");
        }
      }
    });
  });
}

class ReducescatterEveryTypeAndOp : public ::testing::TestWithParam<WorldParam> {};

TEST_P(ReducescatterEveryTypeAndOp, OwnBlockMatchesTheReference) {
  check(GetParam(), every_type_and_op(odd_counts(GetParam().size, {13, 1009})));
}

INSTANTIATE_TEST_SUITE_P(InProcess, ReducescatterEveryTypeAndOp,
                         ::testing::ValuesIn(worlds({2, 3, 5})), world_name);

class ReducescatterEveryWorldSize : public ::testing::TestWithParam<WorldParam> {};

TEST_P(ReducescatterEveryWorldSize, OwnBlockMatchesTheReference) {
  check(GetParam(), few_types_with_wrapping_counts(GetParam().size));
}

INSTANTIATE_TEST_SUITE_P(InProcess, ReducescatterEveryWorldSize, ::testing::ValuesIn(worlds(1, 8)),
                         world_name);

}  // namespace
}  // namespace ringfuse::inproc
