// Which ranks share memory, from what each rank saw of the others' probe segments
// (transport/shared_memory_proof.hpp): the pure rules, without /dev/shm.
#include <gtest/gtest.h>

#include "transport/shared_memory_proof.hpp"

namespace {

using ringfuse::transport::pairs_without_shared_memory;
using ringfuse::transport::shared_memory_groups;
using Groups = std::vector<std::vector<int>>;

TEST(SharedMemoryGroups, EveryPairSharingIsOneGroup) {
  EXPECT_EQ(shared_memory_groups({"111", "111", "111"}), (Groups{{0, 1, 2}}));
  EXPECT_TRUE(pairs_without_shared_memory({"111", "111", "111"}).empty());
}

// Two "containers" with one hostname: ranks 0 and 1 in the first, rank 2 in the second.
TEST(SharedMemoryGroups, ContainersWithTheirOwnDevShmAreSeparateGroups) {
  const std::vector<std::string> seen{"110", "110", "001"};
  EXPECT_EQ(shared_memory_groups(seen), (Groups{{0, 1}, {2}}));
  EXPECT_EQ(pairs_without_shared_memory(seen), (std::vector<std::pair<int, int>>{{0, 2}, {1, 2}}));
}

// Sharing must be proven both ways, and a rank that could not create its own segment shares
// with nobody.
TEST(SharedMemoryGroups, OneWaySightOrNoOwnSegmentSharesNothing) {
  EXPECT_EQ(shared_memory_groups({"11", "01"}), (Groups{{0}, {1}}));  // 1 did not see 0
  EXPECT_EQ(shared_memory_groups({"111", "011", "111"}), (Groups{{0, 2}, {1}}));
  EXPECT_EQ(shared_memory_groups({"011", "111", "111"}), (Groups{{0}, {1, 2}}));  // 0 made none
}

// 0-1 and 1-2 share but 0-2 do not: every member of a group shares with every other, so 2
// cannot join 0 and 1.
TEST(SharedMemoryGroups, AGroupIsAlwaysAClique) {
  EXPECT_EQ(shared_memory_groups({"110", "111", "011"}), (Groups{{0, 1}, {2}}));
  EXPECT_EQ(shared_memory_groups({"1010", "0101", "1010", "0101"}), (Groups{{0, 2}, {1, 3}}));
}

}  // namespace
