// ringfuse-perf's result check: a correct result passes, one wrong element is counted, and a
// buffer nobody wrote (poisoned) fails, for in-place and out-of-place layouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "buffers.hpp"
#include "collective.hpp"
#include "reduce/reduce.hpp"

namespace ringfuse::perf {
namespace {

CaseSpec spec_for(Collective c, DataType t, ReduceOp op, int rank, int size, std::size_t bytes) {
  CaseSpec s;
  s.collective = c;
  s.type = t;
  s.op = op;
  s.rank = rank;
  s.size = size;
  s.layout = make_layout(c, t, bytes, size);
  return s;
}

TEST(PerfBuffers, AllreduceSumOfEveryRanksInputPasses) {
  constexpr int kRanks = 3;
  std::vector<Buffers> ranks;
  for (int r = 0; r < kRanks; ++r) {
    ranks.emplace_back(spec_for(Collective::allreduce, DataType::i32, ReduceOp::sum, r, kRanks, 4000));
  }
  const std::size_t n = 1000;
  // Before any collective, rank 0's output is its own input: not the sum.
  EXPECT_EQ(ranks[0].count_wrong(), n);
  std::vector<std::int32_t> sum(n, 0);
  for (auto& b : ranks) {
    const auto* in = static_cast<const std::int32_t*>(b.input());
    for (std::size_t i = 0; i < n; ++i) sum[i] += in[i];
  }
  std::memcpy(ranks[0].output(), sum.data(), n * sizeof(std::int32_t));
  EXPECT_EQ(ranks[0].count_wrong(), 0u);
  static_cast<std::int32_t*>(ranks[0].output())[17] += 1;
  EXPECT_EQ(ranks[0].count_wrong(), 1u);
  ranks[0].restore();  // in place: back to the input
  EXPECT_EQ(ranks[0].count_wrong(), n);
}

TEST(PerfBuffers, AllgatherOutputOfEveryRanksBlockPasses) {
  constexpr int kRanks = 4;
  std::vector<Buffers> ranks;
  for (int r = 0; r < kRanks; ++r) {
    ranks.emplace_back(spec_for(Collective::allgather, DataType::f16, ReduceOp::sum, r, kRanks, 4096));
  }
  const std::size_t block = 512;
  ranks[1].poison();
  EXPECT_EQ(ranks[1].count_wrong(), block * kRanks);
  auto* out = static_cast<std::byte*>(ranks[1].output());
  for (int r = 0; r < kRanks; ++r) {
    std::memcpy(out + r * block * 2, ranks[r].input(), block * 2);
  }
  EXPECT_EQ(ranks[1].count_wrong(), 0u);
}

// -d int16 and -d bool: the check agrees with what the library's kernels compute (bool: sum
// and max are or, min and prod and), and the bool inputs mix true and false.
TEST(PerfBuffers, I16AndBoolAllreduceReferencesMatchTheKernels) {
  constexpr int kRanks = 3;
  for (const DataType type : {DataType::i16, DataType::boolean}) {
    for (const ReduceOp op : {ReduceOp::sum, ReduceOp::min, ReduceOp::max, ReduceOp::prod}) {
      std::vector<Buffers> ranks;
      for (int r = 0; r < kRanks; ++r) {
        ranks.emplace_back(spec_for(Collective::allreduce, type, op, r, kRanks, 4000));
      }
      const std::size_t n = 4000 / element_size(type);
      std::vector<std::byte> acc(4000);
      std::memcpy(acc.data(), ranks[0].input(), acc.size());
      for (int r = 1; r < kRanks; ++r) {
        reduce::reduce_into(acc.data(), ranks[r].input(), n, type, op);
      }
      if (type == DataType::boolean) {
        const auto* in = static_cast<const std::uint8_t*>(ranks[0].input());
        EXPECT_NE(std::count(in, in + n, 0), 0) << to_string(op) << ": some false";
        EXPECT_NE(std::count(in, in + n, 1), 0) << to_string(op) << ": some true";
      }
      std::memcpy(ranks[1].output(), acc.data(), acc.size());
      EXPECT_EQ(ranks[1].count_wrong(), 0u) << to_string(type) << " " << to_string(op);
      auto* out = static_cast<std::uint8_t*>(ranks[1].output());
      out[element_size(type) * 9] ^= 1;  // flips element 9 (a bool between 0 and 1)
      EXPECT_EQ(ranks[1].count_wrong(), 1u) << to_string(type) << " " << to_string(op);
    }
  }
}

}  // namespace
}  // namespace ringfuse::perf
