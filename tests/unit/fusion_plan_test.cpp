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

// Where the executor all-reduces a fused group in place over its members (host tensors, a
// power-of-two world over shared memory: no copy), large tensors join the group: a step of
// them is one collective instead of one each (issue 18).
TEST(FusionPlan, LargeTensorsJoinAGroupThatRunsInPlace) {
  const std::vector<ReadyEntry> ready = {
      allreduce("a", 1024), allreduce("big", (1 << 20) / 4), allreduce("b", 1024),
      allreduce("huge", 10 << 20), allreduce("c", 1024)};
  std::vector<std::size_t> asked;  // the counts the plan asked about
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead,
                                  [&](const ringfuse::engine::Fingerprint& head, std::size_t count) {
                                    EXPECT_EQ(head.name, "a");
                                    asked.push_back(count);
                                    return true;
                                  });
  ASSERT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 1, 2, 3, 4}}));
  EXPECT_TRUE(groups[0].fused);
  EXPECT_TRUE(groups[0].in_place);
  ASSERT_FALSE(asked.empty());
  EXPECT_EQ(asked.back(), 1024u * 3 + (1 << 20) / 4 + (10 << 20));  // the whole group
}

TEST(FusionPlan, ALargeHeadGathersTheTensorsAfterItWhenTheGroupRunsInPlace) {
  const std::vector<ReadyEntry> ready = {allreduce("huge", 10 << 20), allreduce("a", 1024),
                                         allreduce("big", 1 << 20)};
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead,
                                  [](const auto&, std::size_t) { return true; });
  ASSERT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 1, 2}}));
  EXPECT_TRUE(groups[0].in_place);
}

// Where pieces cannot be taken (TCP, a forced algorithm, a hierarchy, the shared-memory fusion
// window, CUDA tensors), a large tensor still runs alone: it would be copied through the buffer.
TEST(FusionPlan, LargeTensorsRunAloneWhenPiecesCannotBeTaken) {
  const std::vector<ReadyEntry> ready = {
      allreduce("a", 1024), allreduce("big", (1 << 20) / 4), allreduce("b", 1024),
      allreduce("huge", 10 << 20), allreduce("c", 1024)};
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead,
                                  [](const auto&, std::size_t) { return false; });
  EXPECT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 2, 4}, {1}, {3}}));
  EXPECT_TRUE(groups[0].fused);
  for (const auto& group : groups) EXPECT_FALSE(group.in_place);
  EXPECT_FALSE(groups[1].fused);
  EXPECT_FALSE(groups[2].fused);
}

// A world whose size is not a power of two takes pieces only for the sizes halving-doubling is
// chosen for (up to 1 MiB): a group that a large tensor would push past that stays without it,
// and the small tensors' group still runs in place.
TEST(FusionPlan, LargeTensorsStayOutOfAGroupTheyWouldTakeOffTheInPlacePath) {
  const std::vector<ReadyEntry> ready = {allreduce("a", 1024), allreduce("big", (1 << 20) / 4),
                                         allreduce("b", 1024)};
  const auto up_to_1mib = [](const auto&, std::size_t count) { return count * 4 <= (1 << 20); };
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead, up_to_1mib);
  ASSERT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 2}, {1}}));
  EXPECT_TRUE(groups[0].in_place);
  EXPECT_FALSE(groups[1].fused);
  EXPECT_FALSE(groups[1].in_place);
}

// The threshold bounds a group run in place as it bounds a packed one: the most bytes one
// collective carries.
TEST(FusionPlan, AGroupRunInPlaceStaysWithinTheThreshold) {
  constexpr std::int64_t k40MiB = (40 << 20) / 4;
  const std::vector<ReadyEntry> ready = {allreduce("x", k40MiB), allreduce("y", k40MiB),
                                         allreduce("a", 1024), allreduce("z", k40MiB)};
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead,
                                  [](const auto&, std::size_t) { return true; });
  ASSERT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0}, {1, 2}, {3}}));
  EXPECT_FALSE(groups[0].fused);  // 80 MiB with y: over the 64 MiB threshold
  EXPECT_TRUE(groups[1].in_place);
  EXPECT_FALSE(groups[2].fused);
}

TEST(FusionPlan, CompressedGroupsNeverRunInPlace) {
  const std::vector<ReadyEntry> ready = {
      allreduce("big", 4 << 20, DataType::f32, Compression::fp16),
      allreduce("small", 1024, DataType::f32, Compression::fp16)};
  const auto groups = plan_fusion(ready, kThreshold, kInPlaceMin, kLookahead,
                                  [](const auto&, std::size_t) { return true; });
  ASSERT_EQ(members(groups), (std::vector<std::vector<std::size_t>>{{0, 1}}));
  EXPECT_TRUE(groups[0].fused);
  EXPECT_FALSE(groups[0].in_place);
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
