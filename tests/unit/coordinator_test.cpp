// Rank 0's coordinator on its own: the cache-index round (what every rank agrees on is
// released, the rest stays held; a disagreement or anything else pending hands over to the
// full way), and the fusion buffer's growth and host packing space.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/coordinator.hpp"
#include "memory/fusion_buffer.hpp"
#include "memory/host_memory_space.hpp"

namespace {

using ringfuse::engine::Announcement;
using ringfuse::engine::Clock;
using ringfuse::engine::Coordinator;
using ringfuse::engine::CycleMessage;
using ringfuse::engine::CycleResponse;
using ringfuse::engine::Fingerprint;
using ringfuse::memory::FusionBuffer;
using ringfuse::engine::ReadyEntry;
using ringfuse::engine::ResponseCache;

Fingerprint tensor(const std::string& name, std::int64_t elements) {
  Fingerprint fp;
  fp.name = name;
  fp.shape = {elements};
  return fp;
}

CycleMessage by_index(std::uint64_t first_seq, std::vector<std::uint32_t> indices) {
  CycleMessage message;
  message.indexed = true;
  message.first_seq = first_seq;
  message.indices = std::move(indices);
  message.busy = !message.indices.empty();
  return message;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  CoordinatorTest() : cache_(16), coordinator_(3, cache_) {
    for (const auto* name : {"a", "b", "c", "d"}) cache_.insert(tensor(name, 8));
  }
  CycleResponse cycle(std::vector<CycleMessage> messages) {
    const auto now = Clock::now();
    for (std::size_t rank = 0; rank < messages.size(); ++rank) {
      coordinator_.receive(static_cast<int>(rank), std::move(messages[rank]), now);
    }
    return coordinator_.respond(now);
  }
  ResponseCache cache_;
  Coordinator coordinator_;
};

TEST_F(CoordinatorTest, ReleasesTheIndicesEveryRankSentAndKeepsTheRestHeld) {
  auto response = cycle({by_index(1, {0, 1, 2}), by_index(1, {0, 1}), by_index(1, {0, 1, 2, 3})});
  ASSERT_TRUE(response.indexed_released.has_value());
  EXPECT_EQ(*response.indexed_released, 2u);
  EXPECT_TRUE(response.ready.empty()) << "each rank fills ready from what it holds";
  EXPECT_TRUE(response.world_busy);
  // Rank 1 has not sent #3 yet: the stall inspector sees who is missing.
  const auto waiting = coordinator_.waiting();
  ASSERT_EQ(waiting.size(), 2u);
  EXPECT_EQ(waiting[0].seq, 3u);
  EXPECT_EQ(waiting[0].missing, std::vector<int>{1});
  EXPECT_EQ(waiting[0].submitted, (std::vector<int>{0, 2}));
  EXPECT_EQ(waiting[0].description, "'c' f32[8] sum");
  EXPECT_EQ(waiting[1].missing, (std::vector<int>{0, 1}));

  // Next cycle the held ones go again, from #3.
  response = cycle({by_index(3, {2}), by_index(3, {2, 3}), by_index(3, {2, 3})});
  ASSERT_TRUE(response.indexed_released.has_value());
  EXPECT_EQ(*response.indexed_released, 1u);
  response = cycle({by_index(4, {3}), by_index(4, {3}), by_index(4, {3})});
  EXPECT_EQ(response.indexed_released.value_or(99), 1u);
  EXPECT_TRUE(coordinator_.waiting().empty());
}

TEST_F(CoordinatorTest, TwoIndicesAtOneSequenceNumberGoTheFullWayAndFailAsAMismatch) {
  const auto response =
      cycle({by_index(1, {0, 1}), by_index(1, {1, 0}), by_index(1, {0, 1})});
  EXPECT_FALSE(response.indexed_released.has_value());
  ASSERT_EQ(response.ready.size(), 2u);
  for (const auto& entry : response.ready) {
    EXPECT_EQ(entry.kind, ReadyEntry::Kind::error);
  }
  EXPECT_NE(response.ready[0].error.find("collective #1 does not match across ranks: ranks "
                                         "{0,2}: 'a' f32[8] sum; rank 1: 'b' f32[8] sum"),
            std::string::npos)
      << response.ready[0].error;
}

TEST_F(CoordinatorTest, HostMemoryOnOneRankAndCudaMemoryOnAnotherIsAMismatch) {
  std::vector<CycleMessage> messages(3);
  for (std::size_t rank = 0; rank < messages.size(); ++rank) {
    auto fp = tensor("grad", 8);
    if (rank == 1) fp.device = ringfuse::Device::cuda;
    messages[rank].entries.push_back(Announcement{1, std::nullopt, fp});
    messages[rank].busy = true;
  }
  const auto response = cycle(std::move(messages));
  ASSERT_EQ(response.ready.size(), 1u);
  EXPECT_EQ(response.ready[0].kind, ReadyEntry::Kind::error);
  EXPECT_NE(response.ready[0].error.find("collective #1 'grad' does not match across ranks: "
                                         "ranks {0,2}: f32[8] sum; rank 1: f32[8] sum on cuda"),
            std::string::npos)
      << response.ready[0].error;
}

TEST_F(CoordinatorTest, ARankAnnouncingInFullTakesEveryonesIndicesIntoTheTable) {
  CycleMessage full;
  full.entries.push_back(Announcement{1, std::nullopt, tensor("new", 4)});
  full.busy = true;
  auto response = cycle({by_index(1, {0}), std::move(full), by_index(1, {})});
  EXPECT_FALSE(response.indexed_released.has_value());
  EXPECT_TRUE(response.ready.empty()) << "rank 2 has sent nothing for #1";
  // Rank 0's 'a' and rank 1's 'new' are announced now: when rank 2 sends 'a', #1 fails.
  response = cycle({by_index(2, {}), by_index(2, {}), by_index(1, {0})});
  EXPECT_FALSE(response.indexed_released.has_value());
  ASSERT_EQ(response.ready.size(), 1u);
  EXPECT_EQ(response.ready[0].kind, ReadyEntry::Kind::error);
  EXPECT_NE(response.ready[0].error.find("rank 1: 'new' f32[4] sum"), std::string::npos)
      << response.ready[0].error;
  // The table is empty again: the short way is back.
  response = cycle({by_index(2, {3}), by_index(2, {3}), by_index(2, {3})});
  EXPECT_EQ(response.indexed_released.value_or(99), 1u);
}

TEST_F(CoordinatorTest, AJoinedRankTurnsTheShortWayOff) {
  CycleMessage join;
  join.join = true;
  const auto response = cycle({by_index(1, {0}), by_index(1, {0}), std::move(join)});
  EXPECT_FALSE(response.indexed_released.has_value());
  ASSERT_EQ(response.ready.size(), 1u);
  EXPECT_EQ(response.ready[0].kind, ReadyEntry::Kind::cached);
  EXPECT_EQ(response.joined, std::vector<std::int32_t>{2});
}

// Name mode (RINGFUSE_MATCH=name): announcements in full, in each rank's own order.
CycleMessage in_full(std::vector<Fingerprint> tensors) {
  CycleMessage message;
  std::uint64_t seq = 100;  // a rank's own numbers mean nothing to the others here
  for (auto& fp : tensors) message.entries.push_back(Announcement{seq++, std::nullopt, fp});
  message.busy = !message.entries.empty();
  return message;
}

TEST(CoordinatorByName, ReleasesANameOnceEveryRankAnnouncedItWhateverTheOrder) {
  ResponseCache cache(16);
  Coordinator coordinator(3, cache, ringfuse::MatchMode::name);
  const auto cycle = [&](std::vector<CycleMessage> messages) {
    const auto now = Clock::now();
    for (std::size_t rank = 0; rank < messages.size(); ++rank) {
      coordinator.receive(static_cast<int>(rank), std::move(messages[rank]), now);
    }
    return coordinator.respond(now);
  };
  auto response = cycle({in_full({tensor("a", 8), tensor("b", 8)}), in_full({tensor("b", 8)}),
                         in_full({tensor("b", 8), tensor("a", 8)})});
  ASSERT_EQ(response.ready.size(), 1u);
  EXPECT_EQ(response.ready[0].fp.name, "b");
  EXPECT_EQ(response.ready[0].seq, 1u) << "numbered by release";
  EXPECT_TRUE(response.world_busy);
  const auto waiting = coordinator.waiting();
  ASSERT_EQ(waiting.size(), 1u);
  EXPECT_EQ(waiting[0].description, "'a' f32[8] sum");
  EXPECT_EQ(waiting[0].missing, std::vector<int>{1});
  EXPECT_FALSE(waiting[0].numbered);

  // 'c' disagrees; 'a' (waiting since the first cycle) goes first.
  response = cycle({in_full({tensor("c", 8)}), in_full({tensor("c", 8), tensor("a", 8)}),
                    in_full({tensor("c", 4)})});
  ASSERT_EQ(response.ready.size(), 2u);
  EXPECT_EQ(response.ready[0].fp.name, "a");
  EXPECT_EQ(response.ready[0].seq, 2u);
  EXPECT_EQ(response.ready[1].kind, ReadyEntry::Kind::error);
  EXPECT_EQ(response.ready[1].error,
            "ringfuse engine: collective 'c' does not match across ranks: ranks {0,1}: f32[8] "
            "sum; rank 2: f32[4] sum");
  EXPECT_TRUE(coordinator.waiting().empty());
}

// An uneven alltoall: dimension 0 and the splits differ by rank and still match; every rank
// gets the whole matrix of splits, rank after rank.
TEST(CoordinatorUnevenAlltoall, HandsEveryRankTheMatrixOfSplits) {
  ResponseCache cache(16);
  Coordinator coordinator(2, cache);
  const auto uneven = [](std::int64_t rows, std::vector<std::int64_t> splits) {
    Fingerprint fp = tensor("a2a", rows);
    fp.shape.push_back(3);
    fp.op_type = ringfuse::engine::OpType::alltoallv;
    fp.splits = std::move(splits);
    CycleMessage message;
    message.entries.push_back(Announcement{1, std::nullopt, fp});
    return message;
  };
  const auto now = Clock::now();
  coordinator.receive(0, uneven(3, {1, 2}), now);
  coordinator.receive(1, uneven(4, {4, 0}), now);
  const auto response = coordinator.respond(now);
  ASSERT_EQ(response.ready.size(), 1u);
  EXPECT_EQ(response.ready[0].kind, ReadyEntry::Kind::full) << response.ready[0].error;
  EXPECT_EQ(response.ready[0].dim0, (std::vector<std::int64_t>{1, 2, 4, 0}));
}

TEST(FusionBuffer, GrowsOnlyAsFarAsAFusedGroupNeedsUpToItsCapacity) {
  FusionBuffer buffer(std::size_t{8} << 20);
  EXPECT_EQ(buffer.allocated(), 0u);
  ASSERT_NE(buffer.data(100), nullptr);
  EXPECT_EQ(buffer.allocated(), std::size_t{1} << 20) << "the smallest allocation is 1 MiB";
  buffer.data(std::size_t{1} << 20);
  EXPECT_EQ(buffer.allocated(), std::size_t{1} << 20);
  buffer.data((std::size_t{1} << 20) + 1);
  EXPECT_EQ(buffer.allocated(), std::size_t{2} << 20) << "at least doubling";
  buffer.data(std::size_t{5} << 20);
  EXPECT_EQ(buffer.allocated(), std::size_t{5} << 20);
  buffer.data(std::size_t{100} << 20);
  EXPECT_EQ(buffer.allocated(), std::size_t{8} << 20) << "never past the threshold";
}

TEST(HostMemorySpace, PacksConvertsAndUnpacksSegmentsAndFillsStandIns) {
  ringfuse::memory::HostMemorySpace memory(std::size_t{8} << 20, nullptr);
  std::vector<float> a{1, 2, 3};
  std::vector<float> b{4, 5};
  auto* buffer = reinterpret_cast<double*>(memory.fusion_buffer(5 * sizeof(double)));
  std::vector<ringfuse::memory::CopySegment> in{{buffer, a.data(), 3}, {buffer + 3, b.data(), 2}};
  memory.begin();
  memory.convert(in, ringfuse::DataType::f64, ringfuse::DataType::f32, 0.5);
  memory.finish();
  EXPECT_EQ(std::vector<double>(buffer, buffer + 5), (std::vector<double>{0.5, 1, 1.5, 2, 2.5}));
  std::vector<ringfuse::memory::CopySegment> out{{a.data(), buffer, 3}, {b.data(), buffer + 3, 2}};
  memory.convert(out, ringfuse::DataType::f32, ringfuse::DataType::f64, 4.0);
  EXPECT_EQ(a, (std::vector<float>{2, 4, 6}));
  EXPECT_EQ(b, (std::vector<float>{8, 10}));

  auto* stand_in = reinterpret_cast<std::int32_t*>(memory.scratch(7 * sizeof(std::int32_t)));
  std::uint64_t identity = 0;
  ringfuse::memory::fill_identity(&identity, ringfuse::DataType::i32, ringfuse::ReduceOp::min, 1);
  memory.fill(stand_in, identity, sizeof(std::int32_t), 7);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(stand_in[i], std::numeric_limits<std::int32_t>::max());
}

TEST(HostMemorySpace, ScalesIntegersInF64TruncatingTowardZeroAndSaturating) {
  using ringfuse::DataType;
  using ringfuse::memory::convert_scaled;
  // Horovod's rule: trunc(double(x) * factor), so 7 * 0.5 is 3 and -7 * 0.5 is -3.
  std::vector<std::int32_t> i32{7, -7, 3, 1'000'000'001, 2'000'000'000, -2'000'000'000};
  convert_scaled(i32.data(), DataType::i32, i32.data(), DataType::i32, 3, 0.5);
  EXPECT_EQ(std::vector<std::int32_t>(i32.begin(), i32.begin() + 3),
            (std::vector<std::int32_t>{3, -3, 1}));
  convert_scaled(i32.data() + 3, DataType::i32, i32.data() + 3, DataType::i32, 3, 2.0);
  EXPECT_EQ(std::vector<std::int32_t>(i32.begin() + 3, i32.end()),
            (std::vector<std::int32_t>{2'000'000'002, std::numeric_limits<std::int32_t>::max(),
                                       std::numeric_limits<std::int32_t>::min()}))
      << "out of range saturates (a plain cast would be undefined)";

  std::vector<std::int8_t> i8{100, -100, 5, -5};
  convert_scaled(i8.data(), DataType::i8, i8.data(), DataType::i8, i8.size(), 2.0);
  EXPECT_EQ(i8, (std::vector<std::int8_t>{127, -128, 10, -10}));
  std::vector<std::uint8_t> u8{200, 3};
  convert_scaled(u8.data(), DataType::u8, u8.data(), DataType::u8, u8.size(), -1.5);
  EXPECT_EQ(u8, (std::vector<std::uint8_t>{0, 0}));
  std::vector<std::int16_t> i16{-32768, 999, 20000};
  convert_scaled(i16.data(), DataType::i16, i16.data(), DataType::i16, i16.size(), 0.1);
  EXPECT_EQ(i16, (std::vector<std::int16_t>{-3276, 99, 2000}));
  std::vector<std::int64_t> i64{-9, 9};
  convert_scaled(i64.data(), DataType::i64, i64.data(), DataType::i64, i64.size(), 0.5);
  EXPECT_EQ(i64, (std::vector<std::int64_t>{-4, 4}));
}

TEST(HostMemorySpace, FillsTheIdentitiesOfI16AndBoolForEveryOperator) {
  using ringfuse::DataType;
  using ringfuse::ReduceOp;
  using ringfuse::memory::fill_identity;
  std::int16_t i16[2] = {};
  fill_identity(i16, DataType::i16, ReduceOp::min, 2);
  EXPECT_EQ(i16[1], std::numeric_limits<std::int16_t>::max());
  fill_identity(i16, DataType::i16, ReduceOp::max, 2);
  EXPECT_EQ(i16[1], std::numeric_limits<std::int16_t>::min());
  fill_identity(i16, DataType::i16, ReduceOp::prod, 2);
  EXPECT_EQ(i16[1], 1);
  fill_identity(i16, DataType::i16, ReduceOp::band, 2);
  EXPECT_EQ(i16[1], -1) << "all bits set is the identity of bitwise and";
  for (const ReduceOp op : {ReduceOp::bor, ReduceOp::bxor}) {
    fill_identity(i16, DataType::i16, op, 2);
    EXPECT_EQ(i16[1], 0) << to_string(op);
  }
  std::uint8_t flags[3] = {7, 7, 7};
  for (const ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::bor, ReduceOp::bxor}) {
    fill_identity(flags, DataType::boolean, op, 3);
    EXPECT_EQ(flags[2], 0) << "false is the identity of or and exclusive or";
  }
  for (const ReduceOp op : {ReduceOp::min, ReduceOp::prod, ReduceOp::band}) {
    fill_identity(flags, DataType::boolean, op, 3);
    EXPECT_EQ(flags[2], 1) << "true is the identity of and";
  }
}

}  // namespace
