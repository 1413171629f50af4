// Transport::reduce_and_return, the pipelined last halving / first doubling step (all of the
// all-reduce at N = 2): over TCP and shared memory it interleaves unreduced and reduced pieces
// on one connection or ring (transport/return_schedule.hpp), 64 KiB to 256 KiB each by the size
// of the exchange.
// The schedule and the piece size are checked alone, then every dtype and operator goes
// through ring and rhd at N = 2..4 on buffers of several pieces per half, with odd counts
// (halves one element apart, short last pieces) on both sides of each size where the piece
// size changes, so a piece reduced, divided or returned in the wrong place, or twice, or cut
// differently by the two ends, shows as a wrong element.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <vector>

#include "allreduce_check.hpp"
#include "transport/return_schedule.hpp"

namespace ringfuse::inproc {
namespace {

using transport::return_piece_bytes;
using transport::return_schedule;
using transport::ReturnSegment;

// Replays both ends of one exchange, each sending its segments in order while it can: a
// reduced piece j may go only after the peer's unreduced piece j has fully arrived. Returns
// whether both streams finish (a circular wait would leave both stuck).
bool both_streams_finish(std::size_t give_bytes, std::size_t keep_bytes, std::size_t piece,
                         std::size_t lookahead) {
  const std::vector<ReturnSegment> stream[2] = {
      return_schedule(give_bytes, keep_bytes, piece, lookahead),
      return_schedule(keep_bytes, give_bytes, piece, lookahead)};
  std::size_t next[2] = {0, 0};
  std::size_t gives_sent[2] = {0, 0};  // unreduced pieces each side has sent, in order
  for (bool moved = true; moved;) {
    moved = false;
    for (int side = 0; side < 2; ++side) {
      while (next[side] < stream[side].size()) {
        const ReturnSegment& segment = stream[side][next[side]];
        if (segment.kind == ReturnSegment::keep && segment.index >= gives_sent[1 - side]) break;
        if (segment.kind == ReturnSegment::give) ++gives_sent[side];
        ++next[side];
        moved = true;
      }
    }
  }
  return next[0] == stream[0].size() && next[1] == stream[1].size();
}

TEST(ReturnSchedule, CoversEachHalfInOrderAndCannotWaitInACircle) {
  const std::size_t piece = 256;
  for (std::size_t lookahead : {1, 2, 4}) {
    for (std::size_t give : {0, 1, 255, 256, 257, 1000, 4096, 10'000}) {
      for (std::size_t keep : {give, give + 1, give + 256, give > 0 ? give - 1 : 0}) {
        const auto order = return_schedule(give, keep, piece, lookahead);
        std::size_t covered[2] = {0, 0};  // give, keep: each half front to back, no gap
        std::size_t gives_before_first_keep = 0;
        bool keep_seen = false;
        for (const ReturnSegment& segment : order) {
          ASSERT_GT(segment.bytes, 0u);
          ASSERT_LE(segment.bytes, piece);
          EXPECT_EQ(segment.offset, covered[segment.kind]) << give << "/" << keep;
          EXPECT_EQ(segment.offset, segment.index * piece);
          covered[segment.kind] += segment.bytes;
          keep_seen = keep_seen || segment.kind == ReturnSegment::keep;
          if (!keep_seen) ++gives_before_first_keep;
        }
        EXPECT_EQ(covered[ReturnSegment::give], give);
        EXPECT_EQ(covered[ReturnSegment::keep], keep);
        // The lookahead: that many unreduced pieces (or all there are) lead the stream.
        if (keep > 0) {
          EXPECT_EQ(gives_before_first_keep, std::min(lookahead, (give + piece - 1) / piece));
        }
        EXPECT_TRUE(both_streams_finish(give, keep, piece, lookahead))
            << give << " / " << keep << " bytes, lookahead " << lookahead;
      }
    }
  }
}

// Both ends derive the piece from the total they share; it stays a power of two (a multiple of
// every element size) between 64 KiB and 256 KiB, 64 KiB up to 1 MiB (several pieces per half
// there), 256 KiB from 4 MiB, and never shrinks as the exchange grows.
TEST(ReturnPieces, GrowWithTheExchangeFrom64KiBTo256KiB) {
  constexpr std::size_t KiB = 1024;
  EXPECT_EQ(return_piece_bytes(0), 64 * KiB);
  EXPECT_EQ(return_piece_bytes(1), 64 * KiB);
  EXPECT_EQ(return_piece_bytes(1024 * KiB), 64 * KiB);
  EXPECT_EQ(return_piece_bytes(1024 * KiB + 2), 128 * KiB);
  EXPECT_EQ(return_piece_bytes(2048 * KiB), 128 * KiB);
  EXPECT_EQ(return_piece_bytes(4096 * KiB), 256 * KiB);
  EXPECT_EQ(return_piece_bytes(std::size_t{1} << 40), 256 * KiB);
  std::size_t previous = 0;
  for (std::size_t total = 0; total <= 16 * 1024 * KiB; total += 4093) {
    const std::size_t piece = return_piece_bytes(total);
    EXPECT_GE(piece, previous) << total;
    EXPECT_EQ(piece & (piece - 1), 0u) << total;
    EXPECT_GE(piece, 64 * KiB);
    EXPECT_LE(piece, 256 * KiB);
    previous = piece;
  }
}

struct PipelineCase {
  Algorithm algorithm;
  WorldParam world;
};

void PrintTo(const PipelineCase& param, std::ostream* out) {
  *out << to_string(param.algorithm) << " on ";
  inproc::PrintTo(param.world, out);
}

std::string case_name(const ::testing::TestParamInfo<PipelineCase>& info) {
  return fmt::format("{}_{}", to_string(info.param.algorithm),
                     world_name({info.param.world, info.index}));
}

std::vector<PipelineCase> pipeline_cases() {
  std::vector<PipelineCase> list;
  // Ring pairs its ranks only at N = 2; rhd's innermost step pairs them at every N (after
  // the fold at N = 3, after a halving step at N = 4).
  for (TransportKind kind : {TransportKind::tcp, TransportKind::shm}) {
    list.push_back({Algorithm::ring, {2, kind}});
    for (int size : {2, 3, 4}) list.push_back({Algorithm::rhd, {size, kind}});
  }
  // The path that runs the halves one after the other: several connections per peer.
  list.push_back({Algorithm::ring, {2, TransportKind::tcp, 2}});
  return list;
}

class ReduceAndReturn : public ::testing::TestWithParam<PipelineCase> {};

// The pair step covers the whole buffer at N = 2 and 3 and half of it at N = 4. Counts, whatever
// the element size: one element, a few, just over one 64 KiB piece; 1 MiB one element short and
// one element over (at N = 2 and 3 pieces of 64 KiB, eight per half, and of 128 KiB, four per
// half, each end cutting its own halves, one element apart, the same way); 2 MiB and one
// element (256 KiB pieces at N = 2 and 3; at N = 4 one pair exchanges 1 MiB, the other 1 MiB
// and one element: both sides of the first change again). Every count but the first is odd,
// so the halves differ by one element and the last piece of each is short; from the third on
// they are past the lookahead (one piece), so unreduced and reduced pieces alternate.
std::vector<std::size_t> pipelined_counts(DataType type) {
  const std::size_t element_bytes = element_size(type);
  constexpr std::size_t MiB = std::size_t{1} << 20;
  return {1,
          7,
          (std::size_t{64} << 10) / element_bytes + 1,
          MiB / element_bytes - 1,
          MiB / element_bytes + 1,
          2 * MiB / element_bytes + 1};
}

TEST_P(ReduceAndReturn, EveryTypeAndOpMatchesTheReference) {
  const PipelineCase param = GetParam();
  run_in_world(param.world,
               [&](Rank& rank, transport::Transport& transport, algo::Workspace& workspace) {
                 for (DataType type : kEveryType) {
                   check_allreduce(rank, {{type}, kEveryOp, pipelined_counts(type), /*seed=*/3},
                                   [&](const algo::ReduceBuffer& buffer) {
                                     algo::allreduce(param.algorithm, transport, workspace, buffer);
                                   });
                 }
               });
}

INSTANTIATE_TEST_SUITE_P(InProcess, ReduceAndReturn, ::testing::ValuesIn(pipeline_cases()),
                         case_name);

}  // namespace
}  // namespace ringfuse::inproc
