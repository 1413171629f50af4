// The all-reduce of elements that lie in several places (algo::rhd_allreduce over a
// ScatteredBuffer), as the engine runs a fused group of tensors in place: every dtype and
// operator, odd counts, pieces of uneven sizes (empty ones among them), each piece in its own
// misaligned allocation, on both transports (shared memory copies straight into and out of the
// pieces; TCP gathers them) and world sizes with and without the fold.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

// Piece sizes in elements, taken in turn until the buffer is used up: single elements, empty
// pieces, primes, and pieces larger than a quarter of a ring.
constexpr std::size_t kPieceCounts[] = {1, 7, 0, 13, 1000, 3, 0, 257, 70001, 2};

class ScatteredAllreduce : public ::testing::TestWithParam<WorldParam> {};

void check(const WorldParam& world, const AllreduceCases& cases) {
  run_in_world(world, [&](Rank& rank, transport::Transport& transport,
                          algo::Workspace& workspace) {
    std::size_t call = 0;
    check_allreduce(rank, cases, [&](const algo::ReduceBuffer& buffer) {
      const std::size_t element_bytes = element_size(buffer.type);
      // The buffer cut into pieces, each copied to its own guarded allocation at an odd
      // offset; the reduced pieces are copied back for check_allreduce to compare.
      std::vector<std::unique_ptr<GuardedBuffer>> storage;
      std::vector<transport::Piece> pieces;
      std::size_t done = 0;
      for (std::size_t i = call++; done < buffer.count; ++i) {
        const std::size_t count =
            std::min(kPieceCounts[i % std::size(kPieceCounts)], buffer.count - done);
        storage.push_back(std::make_unique<GuardedBuffer>(
            count * element_bytes, misalignment(buffer.type, i % 3 != 0, rank.rank(), i)));
        if (count > 0) {
          std::memcpy(storage.back()->data(), buffer.data + done * element_bytes,
                      count * element_bytes);
        }
        pieces.push_back({storage.back()->data(), count * element_bytes});
        done += count;
      }
      algo::rhd_allreduce(transport, workspace,
                          algo::ScatteredBuffer(pieces, buffer.type, buffer.op));
      done = 0;
      for (std::size_t i = 0; i < pieces.size(); ++i) {
        rank.expect(storage[i]->guards_intact(),
                    fmt::format("{}: piece {} written outside its bytes",
                                label(buffer.type, buffer.count, buffer.op), i));
        if (pieces[i].bytes > 0) {
          std::memcpy(buffer.data + done, pieces[i].data, pieces[i].bytes);
        }
        done += pieces[i].bytes;
      }
    });
  });
}

TEST_P(ScatteredAllreduce, EveryTypeAndOpMatchesTheReference) {
  check(GetParam(), every_type_and_op(odd_counts(GetParam().size, {13, 1009})));
}

TEST_P(ScatteredAllreduce, ManyPiecesThatWrapTheRings) {
  check(GetParam(), few_types_with_wrapping_counts(GetParam().size));
}

INSTANTIATE_TEST_SUITE_P(InProcess, ScatteredAllreduce, ::testing::ValuesIn(worlds({2, 3, 4, 5})),
                         world_name);

// The cursor the shared-memory transport walks pieces with: steps of any size visit the
// pieces' bytes in order, skip empty pieces, and report how far they got.
TEST(PieceCursor, StepsOfAnySizeVisitEveryByteInOrder) {
  std::vector<std::byte> bytes(40);
  const transport::Piece pieces[] = {
      {bytes.data(), 5}, {bytes.data() + 5, 0}, {bytes.data() + 10, 17}, {bytes.data() + 30, 10}};
  std::vector<std::byte*> visited;
  std::vector<std::size_t> offsets;
  transport::PieceCursor cursor(pieces);
  std::size_t walked = 0;
  for (std::size_t step : {3u, 4u, 0u, 20u, 100u}) {
    walked += cursor.advance(step, [&](std::byte* at, std::size_t n, std::size_t done) {
      for (std::size_t k = 0; k < n; ++k) {
        visited.push_back(at + k);
        offsets.push_back(done + k);
      }
    });
  }
  EXPECT_EQ(walked, 32u);
  ASSERT_EQ(visited.size(), 32u);
  std::vector<std::byte*> want;
  for (const auto& piece : pieces) {
    for (std::size_t k = 0; k < piece.bytes; ++k) want.push_back(piece.data + k);
  }
  EXPECT_EQ(visited, want);
  for (std::size_t k = 0; k < offsets.size(); ++k) EXPECT_EQ(offsets[k], k);
}

}  // namespace
}  // namespace ringfuse::inproc
