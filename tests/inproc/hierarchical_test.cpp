// Two-level all-reduce: world rank r = host·L + local rank, each rank with a transport among
// the L ranks of its "host" (TCP or shared memory) and one among the ranks of the same local
// rank on every host (TCP), as a Context builds them for ranks spread over hosts.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

struct Shape {
  int local;  // ranks per host
  int cross;  // hosts
  TransportKind local_kind;
};

void PrintTo(const Shape& shape, std::ostream* out) {
  *out << shape.cross << " hosts of " << shape.local << " ranks over "
       << (shape.local_kind == TransportKind::shm ? "shm" : "tcp");
}

std::string shape_name(const ::testing::TestParamInfo<Shape>& info) {
  return fmt::format("{}_{}x{}", info.param.local_kind == TransportKind::shm ? "shm" : "tcp",
                     info.param.local, info.param.cross);
}

std::vector<Shape> shapes(std::initializer_list<std::pair<int, int>> sizes) {
  std::vector<Shape> list;
  for (const auto& [local, cross] : sizes) {
    list.push_back({local, cross, TransportKind::tcp});
    if (local > 1) list.push_back({local, cross, TransportKind::shm});
  }
  return list;
}

void check(const Shape& shape, std::initializer_list<AllreduceCases> case_sets) {
  run_ranks(shape.local * shape.cross, [&](Rank& rank) {
    const int host = rank.rank() / shape.local;
    const int local_rank = rank.rank() % shape.local;
    auto local =
        rank.connect(local_rank, shape.local, fmt::format("host{}", host), {shape.local_kind});
    auto cross =
        rank.connect(host, shape.cross, fmt::format("local{}", local_rank), {TransportKind::tcp});
    algo::Workspace workspace;
    for (const auto& cases : case_sets) {
      check_allreduce(rank, cases, [&](const algo::ReduceBuffer& buffer) {
        algo::hierarchical_allreduce(*local, *cross, workspace, buffer);
      });
    }
    algo::barrier(*local);
    algo::barrier(*cross);
  });
}

class HierarchicalEveryTypeAndOp : public ::testing::TestWithParam<Shape> {};

TEST_P(HierarchicalEveryTypeAndOp, MatchesTheReference) {
  const int size = GetParam().local * GetParam().cross;
  check(GetParam(), {every_type_and_op(odd_counts(size, {13, 1009})),
                     // Slices large enough that the hosts all-reduce them by rhd (over 32 KiB)
                     // and by ring (over 1 MiB) instead of the tree.
                     {{DataType::f32}, {ReduceOp::sum, ReduceOp::avg}, {16411, 524309}, 2}});
}

INSTANTIATE_TEST_SUITE_P(InProcess, HierarchicalEveryTypeAndOp,
                         ::testing::ValuesIn(shapes({{2, 2}, {2, 3}})), shape_name);

class HierarchicalShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(HierarchicalShapes, MatchesTheReference) {
  const int size = GetParam().local * GetParam().cross;
  check(
      GetParam(),
      {{{DataType::bf16, DataType::f32, DataType::i8}, kEveryOp, odd_counts(size, {31, 4099}), 1}});
}

// One host, one rank per host, and uneven shapes.
INSTANTIATE_TEST_SUITE_P(InProcess, HierarchicalShapes,
                         ::testing::ValuesIn(shapes({{1, 3}, {3, 1}, {3, 2}, {4, 2}, {2, 4}})),
                         shape_name);

}  // namespace
}  // namespace ringfuse::inproc
