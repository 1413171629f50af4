// The arithmetic behind the /dev/shm check (transport/shm_capacity): which ring size a channel
// gets for the room it has. The end-to-end behaviour, 8 real ranks in a 64 MiB /dev/shm, is
// tests/engine/small_devshm_test.cpp.
#include <gtest/gtest.h>

#include "transport/shm_capacity.hpp"

namespace ringfuse::transport {
namespace {

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * kKiB;

TEST(ShmCapacity, SegmentHoldsOneRingPerSenderInWholePages) {
  EXPECT_EQ(shm_segment_bytes(2, 1 * kMiB) % 4096, 0u);
  EXPECT_GT(shm_segment_bytes(2, 1 * kMiB), 1 * kMiB);
  EXPECT_LT(shm_segment_bytes(2, 1 * kMiB), 1 * kMiB + 8 * kKiB);
  EXPECT_GT(shm_segment_bytes(8, 1 * kMiB), 7 * kMiB);
  EXPECT_LT(shm_segment_bytes(8, 1 * kMiB), 7 * kMiB + 8 * kKiB);
}

TEST(ShmCapacity, RingsShrinkByHalvesUntilTheChannelFits) {
  // 8 ranks' 1 MiB rings take ~56 MiB: half of Docker's 64 MiB default is 32 MiB.
  EXPECT_EQ(ring_bytes_that_fit(32 * kMiB, 8, 1 * kMiB), 512 * kKiB);
  EXPECT_EQ(ring_bytes_that_fit(57 * kMiB, 8, 1 * kMiB), 1 * kMiB);
  EXPECT_EQ(ring_bytes_that_fit(8 * kMiB, 8, 1 * kMiB), 128 * kKiB);
  // A ring never grows past what was asked for.
  EXPECT_EQ(ring_bytes_that_fit(std::size_t{1} << 40, 8, 256 * kKiB), 256 * kKiB);
}

TEST(ShmCapacity, NoRoomForTheSmallestRingsMeansNone) {
  EXPECT_EQ(ring_bytes_that_fit(3 * kMiB, 8, 1 * kMiB), 0u);  // 64 KiB rings need ~3.5 MiB
  EXPECT_EQ(ring_bytes_that_fit(0, 2, 1 * kMiB), 0u);
  EXPECT_EQ(ring_bytes_that_fit(4 * kMiB, 8, 1 * kMiB), kMinShmRingBytes);
  // Rings asked for below the minimum are not refused for being small.
  EXPECT_EQ(ring_bytes_that_fit(4 * kMiB, 4, 4 * kKiB), 4 * kKiB);
  EXPECT_EQ(ring_bytes_that_fit(4 * kKiB, 4, 4 * kKiB), 0u);
}

}  // namespace
}  // namespace ringfuse::transport
