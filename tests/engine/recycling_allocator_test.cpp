// The allocator behind Work states (comm/src/engine/recycling_allocator.hpp): a freed state's
// memory is handed to the next state made on the same thread, a thread keeps at most its
// bound, blocks freed on another thread go to that thread, and a Work still works over
// recycled memory.
#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <thread>
#include <vector>

#include "engine/recycling_allocator.hpp"
#include "engine/work_state.hpp"

namespace {

using ringfuse::engine::make_work_state;
using ringfuse::engine::RecyclingAllocator;
using ringfuse::engine::WorkState;

TEST(RecyclingAllocator, TheNextStateReusesTheMemoryOfTheLastOneFreed) {
  auto first = make_work_state();
  const void* address = first.get();
  first.reset();
  auto second = make_work_state();
  EXPECT_EQ(second.get(), address);
}

TEST(RecyclingAllocator, AThreadKeepsAtMostItsBoundAndFreesTheRestAndAllOnExit) {
  using Allocator = RecyclingAllocator<std::array<char, 200>>;
  constexpr std::size_t kBound = ringfuse::engine::detail::BlockList<200>::kMaxBlocks;
  std::thread([&] {
    Allocator allocator;
    std::vector<std::array<char, 200>*> blocks;
    for (std::size_t i = 0; i < kBound + 10; ++i) blocks.push_back(allocator.allocate(1));
    EXPECT_EQ(Allocator::kept(), 0u);
    for (auto* block : blocks) allocator.deallocate(block, 1);
    EXPECT_EQ(Allocator::kept(), kBound);
    // Allocating takes kept blocks first.
    auto* again = allocator.allocate(1);
    EXPECT_EQ(Allocator::kept(), kBound - 1);
    allocator.deallocate(again, 1);
  }).join();  // the kept blocks are freed here (a leak checker would say otherwise)
}

TEST(RecyclingAllocator, AStateFreedOnAnotherThreadIsReusedByThatThread) {
  auto state = make_work_state();
  const void* address = state.get();
  std::thread([state = std::move(state), address]() mutable {
    state.reset();
    auto again = make_work_state();
    EXPECT_EQ(again.get(), address);
  }).join();
}

TEST(RecyclingAllocator, AWorkOverRecycledMemoryStartsNotDone) {
  for (int round = 0; round < 3; ++round) {
    auto state = make_work_state();
    EXPECT_FALSE(state->done);
    EXPECT_FALSE(state->error);
    EXPECT_TRUE(state->callbacks.empty());
    EXPECT_EQ(state->remaining, 1);
    state->remaining = 2;
    state->complete(nullptr);
    state->complete(nullptr);
    EXPECT_TRUE(state->done);
  }
}

}  // namespace
