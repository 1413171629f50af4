// context/stall_chain.hpp over an in-memory store: each rank that timed out reports whom it
// waited for, and the chain of reports leads to the rank that reported none.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "context/stall_chain.hpp"
#include "rendezvous/memory_store.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::context::explain_stall;

TEST(StallChain, APeerThatReportedNoWaitIsTheOneThatStopped) {
  ringfuse::rendezvous::MemoryStore store;
  const auto why = explain_stall(store, "c/7/", 0, 1, 7, 100ms);
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "Rank 1 has not timed out waiting for another rank in collective #7 (in the 0.1 "
                  "s after this rank did): it probably stopped there (stalled, or calling another "
                  "collective).");
  EXPECT_EQ(store.get("c/7/stall/0", 0ms), "1") << "this rank's own wait is reported";
}

TEST(StallChain, TheChainOfWaitsIsFollowedToItsEnd) {
  ringfuse::rendezvous::MemoryStore store;
  store.set("c/7/stall/0", "1");
  store.set("c/7/stall/1", "3");
  const auto why = explain_stall(store, "c/7/", 2, 0, 7, 100ms);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("collective #7: rank 2 waits for rank 0, which waits for rank 1, which "
                      "waits for rank 3, and rank 3 has not timed out"),
            std::string::npos)
      << *why;
  EXPECT_NE(why->find("rank 3 probably stopped there"), std::string::npos) << *why;
}

TEST(StallChain, AReportThatComesALittleLaterIsWaitedFor) {
  ringfuse::rendezvous::MemoryStore store;
  std::thread late([&] {
    std::this_thread::sleep_for(100ms);
    store.set("c/3/stall/1", "2");
  });
  const auto why = explain_stall(store, "c/3/", 0, 1, 3, 1s);
  late.join();
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("rank 0 waits for rank 1, which waits for rank 2, and rank 2 has not"),
            std::string::npos)
      << *why;
}

TEST(StallChain, RanksWaitingForEachOtherAreNamedAsACycle) {
  ringfuse::rendezvous::MemoryStore store;
  store.set("c/9/stall/1", "2");
  store.set("c/9/stall/2", "0");
  const auto why = explain_stall(store, "c/9/", 0, 1, 9, 100ms);
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "In collective #9, rank 0 waits for rank 1, which waits for rank 2, which waits "
                  "for rank 0: these ranks wait for each other, so none of them stopped alone: "
                  "they are not making the same collective calls in the same order.");
}

}  // namespace
