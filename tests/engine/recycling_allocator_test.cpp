// The allocator behind Work states (comm/src/engine/recycling_allocator.hpp): a freed state's
// memory is handed to the next state made on the same thread, a thread keeps at most its
// bound, blocks freed on another thread go to that thread, and a Work still works over
// recycled memory.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>
#include <memory>
#include <thread>
#include <vector>

#include "engine/recycling_allocator.hpp"
#include "engine/work_state.hpp"

// Counts this thread's calls to the global operator new while a CountAllocations lives.
namespace {
thread_local bool counting_allocations = false;
std::atomic<std::size_t> allocations{0};

struct CountAllocations {
  CountAllocations() { counting_allocations = true; }
  ~CountAllocations() { counting_allocations = false; }
  static std::size_t total() { return allocations.load(); }
};
}  // namespace

void* operator new(std::size_t bytes) {
  if (counting_allocations) allocations.fetch_add(1);
  if (void* block = std::malloc(bytes == 0 ? 1 : bytes)) return block;
  throw std::bad_alloc();
}
void operator delete(void* block) noexcept { std::free(block); }
void operator delete(void* block, std::size_t) noexcept { std::free(block); }

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

// A fused step makes and frees hundreds of states; once a thread has freed that many, making
// them again allocates nothing (glibc's own cache would keep only 7).
TEST(RecyclingAllocator, AStepsWorthOfStatesIsMadeAgainWithoutAllocating) {
  constexpr int kStates = 1000;
  std::vector<std::shared_ptr<WorkState>> states;
  for (int i = 0; i < kStates; ++i) states.push_back(make_work_state());
  states.clear();
  states.reserve(kStates);
  const auto before = CountAllocations::total();
  {
    CountAllocations counting;
    for (int i = 0; i < kStates; ++i) states.push_back(make_work_state());
  }
  EXPECT_EQ(CountAllocations::total() - before, 0u);
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
    EXPECT_FALSE(state->is_done());
    EXPECT_FALSE(state->error);
    EXPECT_TRUE(state->callbacks.empty());
    EXPECT_EQ(state->remaining, 1);
    state->remaining = 2;
    state->complete(nullptr);
    state->complete(nullptr);
    EXPECT_TRUE(state->is_done());
  }
}

}  // namespace
