#include "allreduce_check.hpp"

#include <fmt/format.h>

namespace ringfuse::inproc {

void PrintTo(const WorldParam& world, std::ostream* out) {
  *out << world.size << " ranks over " << (world.kind == TransportKind::shm ? "shm" : "tcp");
  if (world.streams > 1) *out << " with " << world.streams << " connections per peer";
}

std::string world_name(const ::testing::TestParamInfo<WorldParam>& info) {
  return fmt::format("{}{}_np{}", info.param.kind == TransportKind::shm ? "shm" : "tcp",
                     info.param.streams > 1 ? fmt::format("x{}", info.param.streams) : "",
                     info.param.size);
}

std::vector<WorldParam> worlds(int from, int to) {
  std::vector<WorldParam> list;
  for (int size = from; size <= to; ++size) {
    list.push_back({size, TransportKind::tcp});
    // A world of one has no transport to tell apart.
    if (size > 1) list.push_back({size, TransportKind::shm});
  }
  return list;
}

std::vector<WorldParam> worlds(std::initializer_list<int> sizes) {
  std::vector<WorldParam> list;
  for (int size : sizes) {
    const auto more = worlds(size, size);
    list.insert(list.end(), more.begin(), more.end());
  }
  return list;
}

AllreduceCases every_type_and_op(std::vector<std::size_t> counts) {
  return {kEveryType, kEveryOp, std::move(counts)};
}

AllreduceCases few_types_with_wrapping_counts(int size) {
  return {{DataType::bf16, DataType::f32, DataType::i8},
          kEveryOp,
          odd_counts(size, {31, 40009}),
          /*seed=*/1};
}

void run_in_world(const WorldParam& world, const RankInWorld& body) {
  run_ranks(world.size, [&](Rank& rank) {
    auto transport = rank.connect({world.kind, 0, world.streams});
    algo::Workspace workspace;
    body(rank, *transport, workspace);
    algo::barrier(*transport);
  });
}

void check_allreduce(Rank& rank, const AllreduceCases& cases, const RunAllreduce& allreduce) {
  std::size_t case_index = 0;
  for_each_case(cases, [&](DataType type, ReduceOp op, std::size_t count) {
    for (bool aligned : {true, false}) {
      const std::size_t offset = misalignment(type, aligned, rank.rank(), case_index++);
      GuardedBuffer buffer(count * element_size(type), offset);
      for (std::size_t i = 0; i < count; ++i) {
        put(buffer.data(), i, type, input(rank.rank(), i, type, op, cases.seed));
      }
      allreduce(algo::ReduceBuffer{buffer.data(), count, type, op});
      const auto what = fmt::format("{} at +{} bytes", label(type, count, op), offset);
      const auto difference = first_difference(buffer.data(), count, type, [&](std::size_t i) {
        return reference(rank.size(), i, type, op, cases.seed);
      });
      rank.expect(!difference, fmt::format("{}: {}", what, difference.value_or("")));
      rank.expect(buffer.guards_intact(), what + ": wrote outside the buffer");
    }
  });
}

}  // namespace ringfuse::inproc
