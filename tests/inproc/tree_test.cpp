// Binomial-tree all-reduce (reduce to rank 0, then broadcast) on both transports.
#include <gtest/gtest.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

void check(const WorldParam& world, const AllreduceCases& cases) {
  run_ranks(world.size, [&](Rank& rank) {
    auto transport = rank.connect({world.kind});
    algo::Workspace workspace;
    check_allreduce(rank, cases, [&](const algo::ReduceBuffer& buffer) {
      algo::tree_allreduce(*transport, workspace, buffer);
    });
    algo::barrier(*transport);
  });
}

// Every dtype and operator, on a few world sizes.
class TreeEveryTypeAndOp : public ::testing::TestWithParam<WorldParam> {};

TEST_P(TreeEveryTypeAndOp, MatchesTheReference) {
  check(GetParam(), every_type_and_op(odd_counts(GetParam().size, {13, 1009})));
}

INSTANTIATE_TEST_SUITE_P(InProcess, TreeEveryTypeAndOp, ::testing::ValuesIn(worlds({2, 3, 5})),
                         world_name);

// Every world size from 1 to 8, on fewer dtypes, with a count that wraps the rings.
class TreeEveryWorldSize : public ::testing::TestWithParam<WorldParam> {};

TEST_P(TreeEveryWorldSize, MatchesTheReference) {
  check(GetParam(), {{DataType::bf16, DataType::f32, DataType::i8},
                     kEveryOp,
                     odd_counts(GetParam().size, {31, 40009}),
                     /*seed=*/1});
}

INSTANTIATE_TEST_SUITE_P(InProcess, TreeEveryWorldSize, ::testing::ValuesIn(worlds(1, 8)),
                         world_name);

}  // namespace
}  // namespace ringfuse::inproc
