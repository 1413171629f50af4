// Every all-reduce algorithm on both transports, through the one dispatch the library uses
// (algo::allreduce): ring (reduce-scatter + all-gather), binomial tree (reduce to rank 0, then
// broadcast) and recursive halving-doubling, whose world sizes that are not powers of two
// exercise the fold and unfold. One check, parametrised over the algorithm and the world.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

struct AlgorithmInWorld {
  Algorithm algorithm;
  WorldParam world;
};

void PrintTo(const AlgorithmInWorld& param, std::ostream* out) {
  *out << to_string(param.algorithm) << " on ";
  inproc::PrintTo(param.world, out);
}

/// "ring_tcp_np3", for test names.
std::string algorithm_world_name(const ::testing::TestParamInfo<AlgorithmInWorld>& info) {
  return fmt::format("{}_{}", to_string(info.param.algorithm),
                     world_name({info.param.world, info.index}));
}

std::vector<AlgorithmInWorld> every_algorithm_in(const std::vector<WorldParam>& worlds) {
  std::vector<AlgorithmInWorld> params;
  for (Algorithm algorithm : {Algorithm::ring, Algorithm::tree, Algorithm::rhd}) {
    for (const WorldParam& world : worlds) params.push_back({algorithm, world});
  }
  return params;
}

void check(const AlgorithmInWorld& param, const AllreduceCases& cases) {
  run_in_world(param.world, [&](Rank& rank, transport::Transport& transport,
                                algo::Workspace& workspace) {
    check_allreduce(rank, cases, [&](const algo::ReduceBuffer& buffer) {
      const Algorithm ran = algo::allreduce(param.algorithm, transport, workspace, buffer);
      rank.expect(ran == param.algorithm,
                  fmt::format("asked for {}, ran {}", to_string(param.algorithm), to_string(ran)));
    });
  });
}

// Every dtype and operator, on a few world sizes.
class AllreduceEveryTypeAndOp : public ::testing::TestWithParam<AlgorithmInWorld> {};

TEST_P(AllreduceEveryTypeAndOp, MatchesTheReference) {
  check(GetParam(), every_type_and_op(odd_counts(GetParam().world.size, {13, 1009})));
}

INSTANTIATE_TEST_SUITE_P(InProcess, AllreduceEveryTypeAndOp,
                         ::testing::ValuesIn(every_algorithm_in(worlds({2, 3, 5}))),
                         algorithm_world_name);

// Every world size from 1 to 8, on fewer dtypes, with a count that wraps the rings.
class AllreduceEveryWorldSize : public ::testing::TestWithParam<AlgorithmInWorld> {};

TEST_P(AllreduceEveryWorldSize, MatchesTheReference) {
  check(GetParam(), few_types_with_wrapping_counts(GetParam().world.size));
}

INSTANTIATE_TEST_SUITE_P(InProcess, AllreduceEveryWorldSize,
                         ::testing::ValuesIn(every_algorithm_in(worlds(1, 8))),
                         algorithm_world_name);

}  // namespace
}  // namespace ringfuse::inproc
