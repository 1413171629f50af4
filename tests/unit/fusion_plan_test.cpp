// The fusion plan every rank computes from a cycle's released collectives: what is packed into
// the fusion buffer together, and what runs alone in place.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/fusion_plan.hpp"

namespace {

using ringfuse::Compression;
using ringfuse::DataType;
using ringfuse::engine::FusionGroup;
using ringfuse::engine::OpType;
using ringfuse::engine::ReadyEntry;
using ringfuse::engine::plan_fusion;

constexpr std::size_t kThreshold = std::size_t{64} << 20;
constexpr std::size_t kInPlaceMin = std::size_t{1} << 20;
constexpr std::size_t kLookahead = 64;

ReadyEntry allreduce(const std::string& name, std::int64_t elements,
                     DataType dtype = DataType::f32, Compression compression = Compression::none) {
  ReadyEntry entry;
  entry.fp.op_type = OpType::allreduce;
  entry.fp.dtype = dtype;
  entry.fp.compression = compression;
  entry.fp.shape = {elements};
  entry.fp.name = name;
  return entry;
}

std::vector<std::vector<std::size_t>> members(const std::vector<FusionGroup>& groups) {
  std::vector<std::vector<std::size_t>> out;
  for (const auto& group : groups) out.push_back(group.members);
  return out;
}

TEST(FusionPlan, SmallTensorsShareTheBufferAndLargeOnesRunInPlaceAlone) {
  const std::vector<ReadyEntry> ready = {
      allreduce("a", 1024), allreduce("big", (1 << 20) / 4),  // exactly the in-place minimum
      allreduce("b", 1024), allreduce("huge", 10 << 20), allreduce("c", 1024)};
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead);
  EXPECT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 2, 4}, {1}, {3}}));
  EXPECT_TRUE(groups[0].fused);
  EXPECT_FALSE(groups[1].fused);
  EXPECT_FALSE(groups[2].fused);
}

TEST(FusionPlan, CompressedTensorsGoThroughTheBufferWhateverTheirSize) {
  // fp16 compression converts on the way in and out, which needs the buffer.
  const std::vector<ReadyEntry> ready = {
      allreduce("big", 4 << 20, DataType::f32, Compression::fp16),
      allreduce("small", 1024, DataType::f32, Compression::fp16)};
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead);
  ASSERT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 1}}));
  EXPECT_TRUE(groups[0].fused);
}

TEST(FusionPlan, AnInPlaceMinimumAboveTheThresholdFusesEverythingThatFits) {
  const std::vector<ReadyEntry> ready = {allreduce("a", 1 << 20), allreduce("b", 1 << 20)};
  const auto groups = plan_fusion(ready, kThreshold, ~std::size_t{0}, kLookahead);
  ASSERT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 1}}));
  EXPECT_TRUE(groups[0].fused);
}

TEST(FusionPlan, MixedDtypesFuseSeparately) {
  const std::vector<ReadyEntry> ready = {allreduce("a", 16), allreduce("d", 16, DataType::f64),
                                         allreduce("b", 16), allreduce("e", 16, DataType::f64)};
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead);
  EXPECT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 2}, {1, 3}}));
}

TEST(FusionPlan, HostAndCudaTensorsNeverShareABuffer) {
  // They are packed in different memory and run on different backends.
  std::vector<ReadyEntry> ready = {allreduce("a", 16), allreduce("g0", 16), allreduce("b", 16),
                                   allreduce("g1", 16)};
  ready[1].fp.device = ringfuse::Device::cuda;
  ready[3].fp.device = ringfuse::Device::cuda;
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead);
  EXPECT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 2}, {1, 3}}));
}

ReadyEntry allgather(const std::string& name, std::vector<std::int64_t> rows_by_rank,
                     std::int64_t row, DataType dtype) {
  ReadyEntry entry;
  entry.kind = ReadyEntry::Kind::full;
  entry.fp.op_type = OpType::allgather;
  entry.fp.dtype = dtype;
  entry.fp.shape = {rows_by_rank.front(), row};
  entry.fp.name = name;
  entry.dim0 = std::move(rows_by_rank);
  return entry;
}

// Allgathers of one dtype go in one allgatherv, up to the threshold in gathered bytes (every
// rank's rows); other dtypes and everything else run on their own.
TEST(FusionPlan, AllgathersOfOneDtypeGatherTogetherUpToTheThreshold) {
  const std::vector<ReadyEntry> ready = {
      allgather("g0", {1, 2}, 4, DataType::i32), allgather("h", {3, 3}, 2, DataType::f32),
      allreduce("a", 16), allgather("g1", {2, 0}, 8, DataType::i32),
      allgather("big", {1024, 1024}, 1024, DataType::i32)};
  const auto groups = plan_fusion(ready, 1 << 20, kInPlaceMin, kLookahead);
  EXPECT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 3}, {1}, {2}, {4}}));
  EXPECT_TRUE(groups[0].fused);
  EXPECT_FALSE(groups[1].fused);
  EXPECT_FALSE(groups[3].fused);
}

TEST(FusionPlan, ReducescattersOfOneDtypeAndOperatorScatterTogether) {
  auto scatter = [](const std::string& name, std::int64_t elements, ringfuse::ReduceOp op) {
    ReadyEntry entry = allreduce(name, elements);
    entry.fp.op_type = OpType::reducescatter;
    entry.fp.op = op;
    return entry;
  };
  const std::vector<ReadyEntry> ready = {scatter("r0", 30, ringfuse::ReduceOp::sum),
                                         scatter("r1", 12, ringfuse::ReduceOp::max),
                                         scatter("r2", 60, ringfuse::ReduceOp::sum)};
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead);
  EXPECT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 2}, {1}}));
  EXPECT_TRUE(groups[0].fused);
}

}  // namespace
