// What the test files share: the worlds they run in (size × transport) and the all-reduce
// check every all-reduce algorithm goes through.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "algo/algorithms.hpp"
#include "ringfuse/types.hpp"
#include "values.hpp"
#include "world.hpp"

namespace ringfuse::inproc {

/// A world to run a test in: `size` ranks over `kind` (tcp or shm), with `streams`
/// connections per peer over tcp.
struct WorldParam {
  int size;
  TransportKind kind;
  int streams = 1;
};

/// "3 ranks over tcp", for gtest's messages.
void PrintTo(const WorldParam& world, std::ostream* out);

/// "tcp_np3", for test names.
std::string world_name(const ::testing::TestParamInfo<WorldParam>& info);

/// Every world size in [from, to] over both transports.
std::vector<WorldParam> worlds(int from, int to);
/// The given sizes over both transports.
std::vector<WorldParam> worlds(std::initializer_list<int> sizes);

inline const std::vector<DataType> kEveryType(std::begin(kAllDataTypes), std::end(kAllDataTypes));
inline const std::vector<ReduceOp> kEveryOp(std::begin(kAllReduceOps), std::end(kAllReduceOps));

struct AllreduceCases {
  std::vector<DataType> types;
  std::vector<ReduceOp> ops;
  std::vector<std::size_t> counts;
  std::uint64_t seed = 0;
};

/// Calls `check(type, op, count)` for every type × op × count of `cases` whose operator is
/// defined on the type (avg of bool is refused: reduce_test checks that).
template <class Check>
void for_each_case(const AllreduceCases& cases, Check&& check) {
  for (DataType type : cases.types) {
    for (ReduceOp op : cases.ops) {
      if (!is_defined(type, op)) continue;
      for (std::size_t count : cases.counts) check(type, op, count);
    }
  }
}

/// Runs `allreduce` on this rank's input for every type × op × count, once on a buffer at a
/// 64-byte boundary and once misaligned (values.hpp), and records on `rank` whether each
/// result equals reference() exactly and whether the bytes around the buffer are untouched.
using RunAllreduce = std::function<void(const algo::ReduceBuffer&)>;
void check_allreduce(Rank& rank, const AllreduceCases& cases, const RunAllreduce& allreduce);

/// The cross product of every type × op on `counts`.
AllreduceCases every_type_and_op(std::vector<std::size_t> counts);

/// bf16, f32 and i8 under every op, on counts for a world of `size` that wrap the rings
/// (seed 1): the cases a test runs on every world size, where every type would take too long.
AllreduceCases few_types_with_wrapping_counts(int size);

/// Runs `body` on every rank of `world` with that rank's transport and a workspace of its own,
/// then a barrier, so that no rank closes its transport while a peer still sends to it.
using RankInWorld = std::function<void(Rank&, transport::Transport&, algo::Workspace&)>;
void run_in_world(const WorldParam& world, const RankInWorld& body);

}  // namespace ringfuse::inproc
