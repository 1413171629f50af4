// Context::split / subgroup and process sets, with ranks as threads: every rank builds a real
// Context (init() over one in-memory store), the children build their own transports, and
// every collective on a child is checked against a reference computed from global ranks.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/timeline.hpp"
#include "expect_error.hpp"
#include "meeting_point.hpp"
#include "one_host_world.hpp"
#include "rendezvous/memory_store.hpp"
#include "rendezvous/rank_exits.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse {
namespace {

using namespace std::chrono_literals;
using test_support::contains;

/// Fake hosts: `per_host` ranks on each (numbered host by host), as RINGFUSE_LOCAL_* and
/// RINGFUSE_CROSS_* describe them; 0: one host.
WorldSpec world_of(int rank, int size, int per_host, const std::string& job) {
  WorldSpec world = one_host_world(rank, size, job);
  const int local = per_host > 0 ? per_host : size;
  world.local_rank = rank % local;
  world.local_size = local;
  world.cross_rank = rank / local;
  world.cross_size = size / local;
  return world;
}

Options test_options() {
  Options options;
  options.connect_timeout = 30s;
  options.op_timeout = 30s;
  options.engine.cycle_time = 1ms;
  return options;
}

/// Runs body(rank) on `size` threads, one per rank; each rank that threw is reported as a test
/// failure naming it, after all of them finished.
void on_rank_threads(int size, const std::function<void(int rank)>& body) {
  std::vector<std::future<void>> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.push_back(std::async(std::launch::async, [rank, &body] { body(rank); }));
  }
  std::vector<std::string> failures;
  for (int rank = 0; rank < size; ++rank) {
    try {
      ranks[static_cast<std::size_t>(rank)].get();
    } catch (const std::exception& e) {
      failures.push_back(fmt::format("rank {} threw: {}", rank, e.what()));
    }
  }
  for (const auto& failure : failures) ADD_FAILURE() << failure;
}

/// Runs body(context) on `size` threads, each with its own Context over one shared store.
void run_world(int size, int per_host, const Options& options,
               const std::function<void(Context&)>& body) {
  static std::atomic<int> runs{0};
  const std::string job = fmt::format("split-{}-{}", ::getpid(), runs++);
  auto store = std::make_shared<rendezvous::MemoryStore>();
  on_rank_threads(size, [&](int rank) {
    auto context = init(world_of(rank, size, per_host, job), options, store);
    body(*context);
  });
}

/// A value only global rank `global` holds at index `i`: the reference can be computed.
double value_of(int global, std::size_t i) { return global * 100.0 + static_cast<double>(i); }

/// Every collective of `child` against a reference computed from its members' global ranks.
void check_every_collective(Context& child) {
  const int n = child.size();
  const int me = child.rank();
  std::vector<int> global(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) global[static_cast<std::size_t>(r)] = child.global_rank(r);
  const std::string where = fmt::format("{} rank {} (global {})", child.label(), me, global[me]);

  // allreduce, with a count not divisible by the size
  for (const std::size_t count : {std::size_t{1}, std::size_t{1001}, std::size_t{70000}}) {
    std::vector<double> data(count);
    for (std::size_t i = 0; i < count; ++i) data[i] = value_of(global[me], i);
    child.allreduce(data.data(), count, DataType::f64, ReduceOp::sum);
    for (std::size_t i = 0; i < count; ++i) {
      double expected = 0;
      for (const int g : global) expected += value_of(g, i);
      ASSERT_EQ(data[i], expected) << where << " allreduce of " << count << " at " << i;
    }
  }
  // broadcast from the last child rank
  {
    std::vector<double> data(333);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = value_of(global[me], i);
    child.broadcast(data.data(), data.size(), DataType::f64, n - 1);
    for (std::size_t i = 0; i < data.size(); ++i)
      ASSERT_EQ(data[i], value_of(global[n - 1], i)) << where << " broadcast";
  }
  // allgather and allgatherv (rank r contributes r + 1 elements)
  {
    const std::size_t count = 17;
    std::vector<double> send(count);
    for (std::size_t i = 0; i < count; ++i) send[i] = value_of(global[me], i);
    std::vector<double> recv(count * static_cast<std::size_t>(n));
    child.allgather(send.data(), recv.data(), count, DataType::f64);
    for (int r = 0; r < n; ++r)
      for (std::size_t i = 0; i < count; ++i)
        ASSERT_EQ(recv[r * count + i], value_of(global[r], i)) << where << " allgather";
    std::vector<std::size_t> counts(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) counts[static_cast<std::size_t>(r)] = std::size_t(r + 1);
    std::vector<double> recv_v(std::accumulate(counts.begin(), counts.end(), std::size_t{0}));
    child.allgatherv(send.data(), recv_v.data(), counts, DataType::f64);
    std::size_t at = 0;
    for (int r = 0; r < n; ++r)
      for (std::size_t i = 0; i < counts[r]; ++i)
        ASSERT_EQ(recv_v[at++], value_of(global[r], i)) << where << " allgatherv";
  }
  // reducescatter
  {
    const std::size_t block = 9;
    std::vector<double> send(block * static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < send.size(); ++i) send[i] = value_of(global[me], i);
    std::vector<double> recv(block);
    child.reducescatter(send.data(), recv.data(), block, DataType::f64, ReduceOp::max);
    for (std::size_t i = 0; i < block; ++i) {
      double expected = -1e300;
      for (const int g : global) expected = std::max(expected, value_of(g, me * block + i));
      ASSERT_EQ(recv[i], expected) << where << " reducescatter";
    }
  }
  // alltoall and alltoallv (rank i sends i + j + 1 elements to rank j)
  {
    const std::size_t count = 5;
    std::vector<double> send(count * static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < send.size(); ++i) send[i] = value_of(global[me], i);
    std::vector<double> recv(send.size());
    child.alltoall(send.data(), recv.data(), count, DataType::f64);
    for (int r = 0; r < n; ++r)
      for (std::size_t i = 0; i < count; ++i)
        ASSERT_EQ(recv[r * count + i], value_of(global[r], me * count + i)) << where << " alltoall";
    std::vector<std::size_t> send_counts, recv_counts;
    for (int r = 0; r < n; ++r) {
      send_counts.push_back(static_cast<std::size_t>(me + r + 1));
      recv_counts.push_back(static_cast<std::size_t>(r + me + 1));
    }
    const auto total = [](const auto& counts) {
      return std::accumulate(counts.begin(), counts.end(), std::size_t{0});
    };
    std::vector<double> send_v(total(send_counts));
    for (std::size_t i = 0; i < send_v.size(); ++i) send_v[i] = value_of(global[me], i);
    std::vector<double> recv_v(total(recv_counts));
    child.alltoallv(send_v.data(), send_counts, recv_v.data(), recv_counts, DataType::f64);
    std::size_t at = 0;
    for (int r = 0; r < n; ++r) {
      // rank r's block for me starts after its blocks for ranks 0..me-1
      std::size_t offset = 0;
      for (int j = 0; j < me; ++j) offset += static_cast<std::size_t>(r + j + 1);
      for (std::size_t i = 0; i < recv_counts[r]; ++i)
        ASSERT_EQ(recv_v[at++], value_of(global[r], offset + i)) << where << " alltoallv";
    }
  }
  child.barrier();
}

class SplitByParity : public ::testing::TestWithParam<int> {};

TEST_P(SplitByParity, EveryCollectiveOnEachChildMatchesTheReference) {
  const int size = GetParam();
  run_world(size, 0, test_options(), [](Context& world) {
    auto child = world.split(world.rank() % 2, world.rank());
    ASSERT_TRUE(child);
    const int expected_size = (world.size() + 1 - world.rank() % 2) / 2;
    EXPECT_EQ(child->size(), expected_size);
    EXPECT_EQ(child->rank(), world.rank() / 2);
    EXPECT_EQ(child->global_rank(child->rank()), world.rank());
    EXPECT_EQ(child->local_size(), expected_size);  // one host
    EXPECT_EQ(child->label(), fmt::format("split 1 (color {}) of world", world.rank() % 2));
    check_every_collective(*child);
    // The parent still works beside its child.
    double one = 1;
    world.allreduce(&one, 1, DataType::f64, ReduceOp::sum);
    EXPECT_EQ(one, world.size());
  });
}

INSTANTIATE_TEST_SUITE_P(Sizes, SplitByParity, ::testing::Values(2, 3, 4, 5, 6, 7, 8));

TEST(Split, ByHostGivesOneChildPerHost) {
  for (const auto& [size, per_host] :
       {std::pair{2, 1}, std::pair{4, 2}, std::pair{6, 2}, std::pair{8, 2}, std::pair{8, 4}}) {
    run_world(size, per_host, test_options(), [per_host = per_host](Context& world) {
      const int host = world.world().cross_rank;
      auto child = world.split(host, 0);
      ASSERT_TRUE(child);
      EXPECT_EQ(child->size(), per_host);
      EXPECT_EQ(child->local_size(), per_host);
      EXPECT_EQ(child->world().cross_size, 1);
      EXPECT_EQ(child->global_rank(0), host * per_host);
      check_every_collective(*child);
    });
  }
}

TEST(Split, ChildAcrossHostsKnowsItsHostsAndRunsHierarchical) {
  // 8 ranks, 4 per host; parity children have 2 ranks on each of the 2 hosts.
  Options options = test_options();
  options.hierarchical = Hierarchical::on;
  run_world(8, 4, options, [](Context& world) {
    auto child = world.split(world.rank() % 2, 0);
    ASSERT_TRUE(child);
    EXPECT_EQ(child->size(), 4);
    EXPECT_EQ(child->local_size(), 2);
    EXPECT_EQ(child->world().cross_size, 2);
    EXPECT_EQ(child->world().cross_rank, world.rank() / 4);
    EXPECT_EQ(child->local_rank(), (world.rank() % 4) / 2);
    check_every_collective(*child);
  });
}

TEST(Split, NestedSplitsNameGlobalRanks) {
  run_world(8, 0, test_options(), [](Context& world) {
    auto half = world.split(world.rank() < 4 ? 0 : 1, 0);
    ASSERT_TRUE(half);
    auto quarter = half->split(half->rank() % 2, -half->rank());  // reversed by key
    ASSERT_TRUE(quarter);
    EXPECT_EQ(quarter->size(), 2);
    const int base = world.rank() < 4 ? 0 : 4;
    const int parity = (world.rank() - base) % 2;
    // keys -0,-2 (parity 0): the higher half rank first
    EXPECT_EQ(quarter->global_rank(0), base + parity + 2);
    EXPECT_EQ(quarter->global_rank(1), base + parity);
    EXPECT_EQ(quarter->label(),
              fmt::format("split 1 (color {}) of split 1 (color {}) of world", parity,
                          world.rank() < 4 ? 0 : 1));
    check_every_collective(*quarter);
    check_every_collective(*half);
  });
}

TEST(Split, NegativeColorOptsOut) {
  run_world(4, 0, test_options(), [](Context& world) {
    auto child = world.split(world.rank() == 2 ? kUndefinedColor : 7, 0);
    if (world.rank() == 2) {
      EXPECT_EQ(child, nullptr);
      return;
    }
    ASSERT_TRUE(child);
    EXPECT_EQ(child->size(), 3);
    EXPECT_EQ(child->global_rank(2), 3);
    check_every_collective(*child);
  });
}

TEST(Split, ChildrenOfOneAndAWorldOfOne) {
  run_world(3, 0, test_options(), [](Context& world) {
    auto alone = world.split(world.rank(), 0);  // every rank a color of its own
    ASSERT_TRUE(alone);
    EXPECT_EQ(alone->size(), 1);
    EXPECT_EQ(alone->global_rank(0), world.rank());
    check_every_collective(*alone);
  });
  auto single = init(world_of(0, 1, 0, "split-single"), test_options());
  auto child = single->split(5, 0);
  ASSERT_TRUE(child);
  EXPECT_EQ(child->label(), "split 1 (color 5) of world");
  check_every_collective(*child);
  EXPECT_EQ(single->split(kUndefinedColor, 0), nullptr);
}

// Every rank of the parent takes part in a split, members or not. One that never does is named
// by its global rank and what was being made, not by the store key the others waited on; one
// whose end the launcher recorded in the store is named at once.
TEST(Split, ARankThatNeverSplitsIsNamedAndOneThatEndedIsNamedAtOnce) {
  Options options = test_options();
  options.connect_timeout = 2s;
  // Rank 2 keeps its Context until the others have given up: one it destroyed is said so at
  // once (ARankThatDestroyedItsContextIsNamedAtOnceButNotInTheNextWorld).
  test_support::MeetingPoint gave_up(3, "ranks 0 and 1 gave up on rank 2");
  run_world(3, 0, options, [&](Context& world) {
    if (world.rank() != 2) {
      const auto waited =
          test_support::expect_error(ErrorKind::timeout, [&] { world.split(0, 0); });
      EXPECT_TRUE(contains(waited, "split 1 (color 0) of world: rank 2 did not arrive within 2 s"))
          << waited;
    }
    gave_up.arrive_and_wait();
  });
  auto store = std::make_shared<rendezvous::MemoryStore>();
  test_support::MeetingPoint joined(3, "every rank joined");
  test_support::MeetingPoint recorded(3, "rank 2's exit recorded");
  on_rank_threads(3, [&](int rank) {
    auto context = init(world_of(rank, 3, 0, fmt::format("ended-{}", ::getpid())), options,
                        store);
    joined.arrive_and_wait();
    // Rank 2 "ends" once every rank has joined: ringfuse-run records it in the store.
    if (rank == 2) {
      rendezvous::record_rank_exit(*store, 2, "exited with status 0");
    }
    recorded.arrive_and_wait();
    if (rank == 2) return;
    const auto started = std::chrono::steady_clock::now();
    const auto ended =
        test_support::expect_error(ErrorKind::peer_failure, [&] { context->split(0, 0); });
    EXPECT_TRUE(contains(ended, "split 1 (color 0) of world: rank 2 exited with status 0 "
                                "before it joined"))
        << ended;
    EXPECT_LT(std::chrono::steady_clock::now() - started, 1900ms);
  });
}

// hvd.shutdown() in a program that goes on: the others' split (or add_process_set) stops at
// once, naming the rank, instead of waiting out the connect timeout for it. The record
// belongs to that world's generation: the same job initialised again splits as usual.
TEST(Split, ARankThatDestroyedItsContextIsNamedAtOnceButNotInTheNextWorld) {
  Options options = test_options();
  options.connect_timeout = 2s;
  const std::string job = fmt::format("closed-{}", ::getpid());
  auto store = std::make_shared<rendezvous::MemoryStore>();
  test_support::MeetingPoint joined(3, "every rank joined");
  test_support::MeetingPoint closed(3, "rank 2's Context destroyed");
  on_rank_threads(3, [&](int rank) {
    auto context = init(world_of(rank, 3, 0, job), options, store);
    joined.arrive_and_wait();
    if (rank == 2) context.reset();
    closed.arrive_and_wait();
    if (context) {
      const auto started = std::chrono::steady_clock::now();
      const auto refused =
          test_support::expect_error(ErrorKind::peer_failure, [&] { context->split(0, 0); });
      EXPECT_TRUE(contains(refused, "split 1 (color 0) of world: rank 2 shut Ringfuse down "
                                    "(destroyed its Context"))
          << refused;
      EXPECT_TRUE(contains(refused, "so it will never arrive. Every rank must make the same "
                                    "splits"))
          << refused;
      EXPECT_LT(std::chrono::steady_clock::now() - started, 1900ms);
      context.reset();
    }
    auto again = init(world_of(rank, 3, 0, job), options, store);
    auto child = again->split(rank == 2 ? kUndefinedColor : 0, 0);
    ASSERT_EQ(child == nullptr, rank == 2);
    if (child) {
      double value = rank + 1;
      child->allreduce(&value, 1, DataType::f64, ReduceOp::sum);
      EXPECT_EQ(value, 3.0);
    }
  });
}

TEST(Subgroup, ReorderedRanksAreTheChildsOrder) {
  run_world(4, 0, test_options(), [](Context& world) {
    const std::vector<int> ranks{3, 1, 2};
    auto child = world.subgroup(ranks);
    if (world.rank() == 0) {
      EXPECT_EQ(child, nullptr);
      return;
    }
    ASSERT_TRUE(child);
    const int position =
        static_cast<int>(std::find(ranks.begin(), ranks.end(), world.rank()) - ranks.begin());
    EXPECT_EQ(child->rank(), position);
    EXPECT_EQ(child->global_rank(0), 3);
    EXPECT_EQ(child->label(), "subgroup 1 (ranks 3,1,2) of world");
    double value = world.rank();
    child->broadcast(&value, 1, DataType::f64, 0);
    EXPECT_EQ(value, 3.0);
    check_every_collective(*child);
  });
}

// Point-to-point inside a child names global ranks, as its collectives do: child rank 1 here
// is global rank 0, and its Context going away mid-receive is reported as rank 0's.
TEST(Subgroup, PointToPointErrorsNameGlobalRanks) {
  run_world(3, 0, test_options(), [](Context& world) {
    auto child = world.subgroup(std::vector<int>{2, 0});
    if (world.rank() == 1) return;
    ASSERT_TRUE(child);
    float value = 1.0f;
    if (world.rank() == 0) {
      child->send(&value, 1, DataType::f32, 0, 0);  // connects, then leaves without tag 1
      child.reset();
      return;
    }
    child->recv(&value, 1, DataType::f32, 1, 0);
    try {
      child->recv(&value, 1, DataType::f32, 1, 1);
      ADD_FAILURE() << "the receive from a destroyed Context succeeded";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::peer_failure) << message;
      EXPECT_EQ(e.rank(), 2) << message;
      EXPECT_EQ(e.peer(), 0) << message;
      EXPECT_TRUE(contains(message, "rank 2: subgroup 1 (ranks 2,0) of world: point-to-point: "
                                    "recv of up to 4 bytes from rank 0 (tag 1): rank 0 has left"))
          << message;
      EXPECT_FALSE(contains(message, "rank 1")) << message;
    }
  });
}

TEST(Subgroup, BadInputIsRefusedOnEveryRankAlike) {
  run_world(3, 0, test_options(), [](Context& world) {
    const std::vector<int> twice{0, 1, 0};
    auto message = test_support::expect_error(ErrorKind::invalid_argument,
                                              [&] { world.subgroup(twice); });
    EXPECT_TRUE(contains(message, "rank 0 is listed twice")) << message;
    const std::vector<int> outside{0, 3};
    message = test_support::expect_error(ErrorKind::invalid_argument,
                                         [&] { world.subgroup(outside); });
    EXPECT_TRUE(contains(message, "rank 3 is out of range")) << message;
    message = test_support::expect_error(ErrorKind::invalid_argument,
                                         [&] { world.subgroup(std::vector<int>{}); });
    EXPECT_TRUE(contains(message, "empty")) << message;
    // Lists that differ between ranks: every rank sees them all and refuses alike.
    const std::vector<int> mine =
        world.rank() == 1 ? std::vector<int>{1, 0} : std::vector<int>{0, 1};
    message = test_support::expect_error(ErrorKind::invalid_argument,
                                         [&] { world.subgroup(mine); });
    EXPECT_TRUE(contains(message, "the ranks passed different lists")) << message;
    EXPECT_TRUE(contains(message, "rank 1: [1,0]")) << message;
    // The parent is still in step.
    double one = 1;
    world.allreduce(&one, 1, DataType::f64, ReduceOp::sum);
    EXPECT_EQ(one, 3.0);
    auto child = world.subgroup(std::vector<int>{2, 0});
    if (world.rank() != 1) check_every_collective(*child);
  });
}

TEST(Split, ParentDestroyedFirstFailsTheChildClearly) {
  static std::atomic<int> runs{0};
  const std::string job = fmt::format("split-parent-{}-{}", ::getpid(), runs++);
  auto store = std::make_shared<rendezvous::MemoryStore>();
  constexpr int kSize = 2;
  std::vector<std::future<std::string>> ranks;
  for (int rank = 0; rank < kSize; ++rank) {
    ranks.push_back(std::async(std::launch::async, [=] {
      auto world = init(world_of(rank, kSize, 0, job), test_options(), store);
      auto child = world->split(0, 0);
      world->barrier();
      world.reset();  // the parent first: an error, logged
      double value = 1;
      try {
        child->allreduce(&value, 1, DataType::f64, ReduceOp::sum);
      } catch (const Error& e) {
        return std::string(e.what());
      }
      return std::string("no error");
    }));
  }
  for (int rank = 0; rank < kSize; ++rank) {
    const auto message = ranks[static_cast<std::size_t>(rank)].get();
    EXPECT_TRUE(contains(message, fmt::format("rank {}: split 1 (color 0) of world: the parent "
                                              "Context was destroyed first",
                                              rank)))
        << message;
  }
}

// ---------------------------------------------------------------------------------------------
// Process sets

std::vector<float> iota_tensor(std::size_t count, float base) {
  std::vector<float> data(count);
  for (std::size_t i = 0; i < count; ++i) data[i] = base + static_cast<float>(i);
  return data;
}

TensorView view_of(std::vector<float>& data) {
  return TensorView{data.data(), DataType::f32, {static_cast<std::int64_t>(data.size())}};
}

void overlapping_sets(MatchMode match) {
  Options options = test_options();
  options.engine.match = match;
  run_world(4, 0, options, [match](Context& world) {
    const std::vector<int> first{0, 1, 2};
    const std::vector<int> second{3, 2, 1};
    const int a = world.add_process_set(first);
    const int b = world.add_process_set(second);
    EXPECT_EQ(a, 1);
    EXPECT_EQ(b, 2);
    EXPECT_EQ(world.process_set_ranks(b), second);
    const bool in_a = world.rank() != 3;
    const bool in_b = world.rank() != 0;
    constexpr int kSteps = 20;
    std::vector<std::vector<float>> tensors_a, tensors_b;
    std::vector<Work> works;
    tensors_a.reserve(kSteps);
    tensors_b.reserve(kSteps);
    // Interleaved: a, b, a, b ... (in name mode rank 2 enqueues set b's in reverse order).
    for (int step = 0; step < kSteps; ++step) {
      tensors_a.push_back(iota_tensor(100 + step, static_cast<float>(world.rank())));
      tensors_b.push_back(iota_tensor(50 + step, static_cast<float>(10 * world.rank())));
    }
    for (int i = 0; i < kSteps; ++i) {
      if (in_a) {
        works.push_back(world.engine(a).allreduce(fmt::format("a.{}", i), view_of(tensors_a[i])));
      }
      const int j = match == MatchMode::name && world.rank() == 2 ? kSteps - 1 - i : i;
      if (in_b) {
        works.push_back(world.engine(b).allreduce(fmt::format("b.{}", j), view_of(tensors_b[j])));
      }
    }
    for (auto& work : works) work.wait(30s);
    for (int i = 0; i < kSteps && in_a; ++i) {
      for (std::size_t k = 0; k < tensors_a[i].size(); ++k) {
        ASSERT_EQ(tensors_a[i][k], 0 + 1 + 2 + 3.0f * static_cast<float>(k)) << "set a " << i;
      }
    }
    for (int i = 0; i < kSteps && in_b; ++i) {
      for (std::size_t k = 0; k < tensors_b[i].size(); ++k) {
        ASSERT_EQ(tensors_b[i][k], 10.0f * (1 + 2 + 3) + 3.0f * static_cast<float>(k))
            << "set b " << i;
      }
    }
    if (in_a) {
      EXPECT_GT(world.engine(a).stats().fused_tensors, 0u);
    }
    if (!in_a) {
      const auto message = test_support::expect_error(ErrorKind::invalid_argument,
                                                      [&] { world.engine(a); });
      EXPECT_TRUE(contains(message, "rank 3 is not in process set 1 (ranks 0,1,2)")) << message;
    }
    world.remove_process_set(a);
    world.remove_process_set(b);
    const auto message = test_support::expect_error(ErrorKind::invalid_argument,
                                                    [&] { world.process_set_ranks(a); });
    EXPECT_TRUE(contains(message, "process set 1 of world is unknown")) << message;
  });
}

TEST(ProcessSets, OverlappingSetsRunInterleavedFusedAllreducesBySequence) {
  overlapping_sets(MatchMode::sequence);
}

TEST(ProcessSets, OverlappingSetsRunInterleavedFusedAllreducesByName) {
  overlapping_sets(MatchMode::name);
}

TEST(ProcessSets, MismatchInsideASetNamesTheSetAndGlobalRanks) {
  run_world(4, 0, test_options(), [](Context& world) {
    const int set = world.add_process_set(std::vector<int>{1, 3});
    if (world.rank() != 1 && world.rank() != 3) return;
    std::vector<float> data(world.rank() == 1 ? 10 : 11, 1.0f);
    auto work = world.engine(set).allreduce("grad", view_of(data));
    const auto message = test_support::expect_error(ErrorKind::invalid_argument,
                                                    [&] { work.wait(30s); });
    EXPECT_TRUE(contains(message, "ringfuse engine (process set 1)")) << message;
    EXPECT_TRUE(contains(message, "rank 1: ")) << message;
    EXPECT_TRUE(contains(message, "rank 3: ")) << message;
    EXPECT_TRUE(contains(message, fmt::format("rank {}: ringfuse engine", world.rank())))
        << message;
  });
}

TEST(ProcessSets, StallInsideASetNamesTheSetAndTheMissingGlobalRank) {
  Options options = test_options();
  options.engine.stall_warning = 200ms;
  options.engine.stall_abort = 600ms;
  run_world(4, 0, options, [](Context& world) {
    const int set = world.add_process_set(std::vector<int>{1, 3});
    if (world.rank() == 1) {
      std::vector<float> data(8, 1.0f);
      auto work = world.engine(set).allreduce("late", view_of(data));
      const auto message = test_support::expect_error(ErrorKind::timeout,
                                                      [&] { work.wait(30s); });
      EXPECT_TRUE(contains(message, "rank 1: ringfuse engine (process set 1): stall")) << message;
      EXPECT_TRUE(contains(message, "rank 3")) << message;
    }
    // Rank 3 submits nothing; every rank leaves together once rank 1 has its error.
    world.barrier();
  });
}

// ---------------------------------------------------------------------------------------------
// The timeline covers process sets: one file per rank, shared by the world's engine and every
// set's, each set on a Chrome-trace process row ("pid") of its own.

/// One rank's timeline file, parsed: the events, and the name of each process row.
struct ParsedTimeline {
  nlohmann::json events;
  std::map<int, std::string> process_names;  // pid -> process_name metadata

  /// The pids of the complete events called `name` on row `tid`.
  std::vector<int> pids_of(const std::string& name, int tid) const {
    std::vector<int> pids;
    for (const auto& event : events) {
      if (event.value("ph", "") == "X" && event.value("name", "") == name &&
          event.value("tid", -1) == tid) {
        pids.push_back(event.at("pid").get<int>());
      }
    }
    return pids;
  }
  /// Whether row `tid` of `pid` is named (thread_name metadata).
  bool row_named(int pid, int tid) const {
    for (const auto& event : events) {
      if (event.value("name", "") == "thread_name" && event.value("pid", -1) == pid &&
          event.value("tid", -1) == tid) {
        return true;
      }
    }
    return false;
  }
};

/// Reads and parses `file` (a failure of the test when it is no valid JSON array).
ParsedTimeline parse_timeline(const std::string& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  ParsedTimeline parsed;
  try {
    parsed.events = nlohmann::json::parse(text.str());
  } catch (const std::exception& e) {
    ADD_FAILURE() << file << " is not valid JSON (" << e.what() << "):\n" << text.str();
    return parsed;
  }
  EXPECT_TRUE(parsed.events.is_array()) << file;
  for (const auto& event : parsed.events) {
    if (event.value("name", "") == "process_name") {
      parsed.process_names[event.at("pid").get<int>()] = event.at("args").value("name", "");
    }
  }
  return parsed;
}

/// On `rank`'s timeline: the one all-reduce `tensor` of process set `set` (global ranks
/// `ranks`) queued (row 2) on a row of its own, named after the set, which also holds the
/// collective (row 4) and names all four rows. Returns that row's pid (-1 when missing).
int expect_set_row(const ParsedTimeline& timeline, int rank, const std::string& tensor,
                   int set, const std::string& ranks) {
  const auto queued = timeline.pids_of("QUEUE " + tensor, 2);
  EXPECT_EQ(queued.size(), 1u) << "rank " << rank << ": QUEUE " << tensor << "\n"
                               << timeline.events.dump(1);
  if (queued.size() != 1) return -1;
  const int pid = queued.front();
  EXPECT_NE(pid, rank) << "rank " << rank << ": " << tensor << " is on the global set's row";
  const auto name = timeline.process_names.find(pid);
  EXPECT_NE(name, timeline.process_names.end()) << "rank " << rank << ": pid " << pid;
  if (name != timeline.process_names.end()) {
    EXPECT_TRUE(contains(name->second, fmt::format("process set {} ", set))) << name->second;
    EXPECT_TRUE(contains(name->second, fmt::format("global ranks {}", ranks))) << name->second;
  }
  bool collective = false;
  for (const auto& event : timeline.events) {
    collective |= event.value("ph", "") == "X" && event.value("pid", -1) == pid &&
                  event.value("tid", -1) == 4 &&
                  event.value("name", "").rfind("ALLREDUCE ", 0) == 0;
  }
  EXPECT_TRUE(collective) << "rank " << rank << ": no ALLREDUCE on pid " << pid;
  for (int tid = 1; tid <= 4; ++tid) {
    EXPECT_TRUE(timeline.row_named(pid, tid)) << "rank " << rank << ": pid " << pid << " tid "
                                              << tid;
  }
  return pid;
}

/// An all-reduce of a few floats called `name` on `engine`, waited for.
void allreduce_once(Engine& engine, const std::string& name) {
  std::vector<float> data(16, 1.0f);
  engine.allreduce(name, view_of(data)).wait(30s);
}

// Engine::start_timeline on the world's engine covers the sets registered before it and
// after it, a set removed and added again included (on a row of its own); stop_timeline on
// it closes one document that holds them all.
TEST(ProcessSets, TimelineStartedOnTheWorldEngineCoversEverySetOfTheRank) {
  const std::string path =
      fmt::format("{}/sets_timeline_{}.json", ::testing::TempDir(), ::getpid());
  run_world(3, 0, test_options(), [&](Context& world) {
    const int rank = world.rank();
    const std::string file = engine::Timeline::path_for_rank(path, rank);
    std::remove(file.c_str());
    const int early = world.add_process_set(std::vector<int>{0, 2});
    world.engine().start_timeline(path);
    const int later = world.add_process_set(std::vector<int>{1, 2});
    allreduce_once(world.engine(), "world.t");
    if (rank != 1) allreduce_once(world.engine(early), "early.t");
    if (rank != 0) allreduce_once(world.engine(later), "later.t");
    world.remove_process_set(early);
    const int again = world.add_process_set(std::vector<int>{0, 2});
    if (rank != 1) allreduce_once(world.engine(again), "again.t");
    world.engine().stop_timeline();

    const auto timeline = parse_timeline(file);
    EXPECT_EQ(timeline.pids_of("QUEUE world.t", 2), std::vector<int>{rank});
    EXPECT_FALSE(timeline.process_names.count(rank)) << "the global set's row is as it was";
    std::vector<int> set_rows;
    if (rank != 1) set_rows.push_back(expect_set_row(timeline, rank, "early.t", early, "0,2"));
    if (rank != 0) set_rows.push_back(expect_set_row(timeline, rank, "later.t", later, "1,2"));
    if (rank != 1) set_rows.push_back(expect_set_row(timeline, rank, "again.t", again, "0,2"));
    std::sort(set_rows.begin(), set_rows.end());
    EXPECT_EQ(std::adjacent_find(set_rows.begin(), set_rows.end()), set_rows.end())
        << "rank " << rank << ": two sets share a row";
    if (rank == 1) {
      EXPECT_TRUE(timeline.pids_of("QUEUE early.t", 2).empty());
    }
    if (rank == 0) {
      EXPECT_TRUE(timeline.pids_of("QUEUE later.t", 2).empty());
    }
    world.remove_process_set(later);
    world.remove_process_set(again);
  });
}

// RINGFUSE_TIMELINE (EngineConfig::timeline_path) covers a set whose engine started before the
// world's; the file is one complete document once the Context is gone.
TEST(ProcessSets, ConfiguredTimelineCoversASetStartedBeforeTheWorldEngine) {
  const std::string path =
      fmt::format("{}/configured_sets_timeline_{}.json", ::testing::TempDir(), ::getpid());
  for (int rank = 0; rank < 2; ++rank) {
    std::remove(engine::Timeline::path_for_rank(path, rank).c_str());
  }
  Options options = test_options();
  options.engine.timeline_path = path;
  run_world(2, 0, options, [](Context& world) {
    const int set = world.add_process_set(std::vector<int>{1, 0});
    allreduce_once(world.engine(set), "set.t");
    allreduce_once(world.engine(), "world.t");
  });
  for (int rank = 0; rank < 2; ++rank) {
    const auto timeline = parse_timeline(engine::Timeline::path_for_rank(path, rank));
    expect_set_row(timeline, rank, "set.t", 1, "1,0");
    EXPECT_EQ(timeline.pids_of("QUEUE world.t", 2), std::vector<int>{rank});
  }
}

}  // namespace
}  // namespace ringfuse
