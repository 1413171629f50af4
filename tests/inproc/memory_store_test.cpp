// The in-memory store: the TCP store's semantics and error texts (tests/unit/store_test.cpp),
// with ranks as threads. Every wait has a short deadline, so a broken store fails, not hangs.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <limits>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "expect_error.hpp"
#include "increments.hpp"
#include "rendezvous/memory_store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::rendezvous {
namespace {

using namespace std::chrono_literals;

constexpr auto kLong = 10000ms;  // a deadline the test expects never to reach

using test_support::contains;
using test_support::expect_error;
using test_support::expect_every_increment_once;

TEST(MemoryStore, SetGetReplaceAndBinaryValues) {
  MemoryStore store;
  store.set("addr/0", "10.0.0.1:5000");
  EXPECT_EQ(store.get("addr/0", kLong), "10.0.0.1:5000");
  store.set("addr/0", "10.0.0.2:6000");
  EXPECT_EQ(store.get("addr/0", kLong), "10.0.0.2:6000");
  const std::string value("\0\xff\x01 binary\n", 11);
  store.set(std::string("k\xfe\x80", 3), value);
  EXPECT_EQ(store.get(std::string("k\xfe\x80", 3), kLong), value);
  store.set("empty", "");
  EXPECT_EQ(store.get("empty", 0ms), "");
}

TEST(MemoryStore, GetWaitsForALaterSetFromAnotherThread) {
  MemoryStore store;
  auto value = std::async(std::launch::async, [&] { return store.get("late", kLong); });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(value.wait_for(0ms), std::future_status::timeout);
  store.set("late", "here");
  ASSERT_EQ(value.wait_for(kLong), std::future_status::ready);
  EXPECT_EQ(value.get(), "here");
}

TEST(MemoryStore, WaitReturnsOnceEveryKeyExistsAndAddWakesIt) {
  MemoryStore store;
  auto done = std::async(std::launch::async, [&] { store.wait({"a", "b", "c", "a"}, kLong); });
  store.set("a", "1");
  store.add("b", 5);  // add creates a key too, and must wake waiters
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(done.wait_for(0ms), std::future_status::timeout);
  store.set("c", "3");
  ASSERT_EQ(done.wait_for(kLong), std::future_status::ready);
  done.get();
}

TEST(MemoryStore, TimeoutNamesTheMissingKeysAsTheTcpStoreDoes) {
  MemoryStore store("test-store");
  store.set("addr/0", "x");
  const auto message = expect_error(ErrorKind::timeout, [&] {
    store.wait({"addr/0", "addr/1", "addr/3", "addr/1"}, 200ms);
  });
  EXPECT_TRUE(contains(message,
                       "rendezvous store test-store: timed out after 0.2 s waiting for "
                       "keys [addr/1, addr/3]; are the ranks that publish them running?"))
      << message;
  const auto get_message = expect_error(ErrorKind::timeout, [&] { store.get("addr/7", 0ms); });
  EXPECT_TRUE(contains(get_message, "[addr/7]")) << get_message;
  EXPECT_EQ(store.get("addr/0", kLong), "x");  // still usable
}

TEST(MemoryStore, TimeoutListsAtMostSixteenKeys) {
  MemoryStore store;
  std::vector<std::string> keys;
  for (int i = 0; i < 20; ++i) {
    keys.push_back("k");  // appended, not "k" + ...: GCC 12's -Wrestrict misfires on that
    keys.back() += std::to_string(i);
  }
  const auto message = expect_error(ErrorKind::timeout, [&] { store.wait(keys, 1ms); });
  EXPECT_TRUE(contains(message, "k15, ... and 4 more]")) << message;
}

TEST(MemoryStore, HugeTimeoutIsClampedNotOverflowed) {
  MemoryStore store;
  store.set("k", "v");
  EXPECT_EQ(store.get("k", std::chrono::milliseconds::max()), "v");
  store.wait({"k"}, std::chrono::milliseconds::max());
  expect_error(ErrorKind::timeout, [&] { store.get("missing", std::chrono::milliseconds::min()); });
}

TEST(MemoryStore, AddCountsAndRefusesNonIntegersAndOverflow) {
  MemoryStore store;
  EXPECT_EQ(store.add("counter", 1), 1);
  EXPECT_EQ(store.add("counter", 41), 42);
  EXPECT_EQ(store.add("counter", -50), -8);
  EXPECT_EQ(store.get("counter", kLong), "-8");
  store.set("text", "not a number");
  const auto message = expect_error(ErrorKind::invalid_argument, [&] { store.add("text", 1); });
  EXPECT_TRUE(contains(message,
                       "add on key 'text': its value (12 bytes) is not a decimal "
                       "integer; use a separate key for counters"))
      << message;
  store.set("big", std::to_string(std::numeric_limits<std::int64_t>::max()));
  const auto overflow = expect_error(ErrorKind::invalid_argument, [&] { store.add("big", 1); });
  EXPECT_TRUE(contains(overflow, "overflows a 64-bit integer")) << overflow;
  EXPECT_EQ(store.get("big", kLong), std::to_string(std::numeric_limits<std::int64_t>::max()));
  EXPECT_EQ(store.add("counter", 0), -8);
}

TEST(MemoryStore, AddIsAtomicAcrossThreads) {
  constexpr int kThreads = 8;
  constexpr int kAdds = 200;
  MemoryStore store;
  std::vector<std::vector<std::int64_t>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAdds; ++i) seen[t].push_back(store.add("n", 1));
    });
  }
  for (auto& thread : threads) thread.join();
  expect_every_increment_once(seen, kThreads * kAdds);
}

TEST(MemoryStore, RemoveAndCheck) {
  MemoryStore store;
  EXPECT_FALSE(store.check({"x"}));
  EXPECT_TRUE(store.check({}));
  store.set("x", "1");
  store.set("y", "2");
  EXPECT_TRUE(store.check({"x", "y"}));
  EXPECT_FALSE(store.check({"x", "y", "z"}));
  EXPECT_TRUE(store.remove("x"));
  EXPECT_FALSE(store.remove("x"));
  EXPECT_FALSE(store.check({"x"}));
  expect_error(ErrorKind::timeout, [&] { store.get("x", 20ms); });
}

TEST(MemoryStore, RefusesWhatTheTcpStoreCouldNotCarry) {
  MemoryStore store;
  const std::string huge(std::size_t{64} << 20, 'x');
  const auto message = expect_error(ErrorKind::invalid_argument, [&] { store.set("blob", huge); });
  EXPECT_TRUE(contains(message, "send bulk data over the transport")) << message;
  EXPECT_FALSE(store.check({"blob"}));
}

}  // namespace
}  // namespace ringfuse::rendezvous
