// init(world, options, store): a world of Contexts that meet over a store their caller already
// shares (as the torch.distributed backend's ranks meet over torch's c10d Store), never over
// world.store_host:store_port, which here points nowhere.
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "expect_error.hpp"
#include "one_host_world.hpp"
#include "rendezvous/memory_store.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse {
namespace {

using namespace std::chrono_literals;

WorldSpec world_of(int rank, int size) {
  WorldSpec world = one_host_world(rank, size, "over-store");
  world.store_host = "192.0.2.1";  // TEST-NET-1: unreachable, so using it would time out
  world.store_port = 9;
  return world;
}

// Connections get time on a loaded machine; collectives fail after `op_timeout`.
Options timeouts(std::chrono::milliseconds op_timeout) {
  Options options;
  options.connect_timeout = 20s;
  options.op_timeout = op_timeout;
  return options;
}

TEST(ContextOverStore, RanksMeetOverTheGivenStoreAndAllReduce) {
  constexpr int kSize = 3;
  auto store = std::make_shared<rendezvous::MemoryStore>();
  const Options options = timeouts(20s);
  std::vector<std::future<std::vector<float>>> ranks;
  for (int rank = 0; rank < kSize; ++rank) {
    ranks.push_back(std::async(std::launch::async, [=] {
      auto context = init(world_of(rank, kSize), options, store);
      std::vector<float> values(1000, static_cast<float>(rank + 1));
      context->allreduce(values.data(), values.size(), DataType::f32, ReduceOp::sum);
      context->barrier();
      return values;
    }));
  }
  for (auto& rank : ranks) {
    EXPECT_EQ(rank.get(), std::vector<float>(1000, 6.0f));
  }
}

TEST(ContextOverStore, NullStoreIsRefused) {
  const auto message = test_support::expect_error(
      ErrorKind::invalid_argument, [] { init(world_of(1, 2), Options{}, nullptr); });
  EXPECT_NE(message.find("rank 1: init() over a given store: the store is null"),
            std::string::npos)
      << message;
}

// A group of a larger job that meets over its own store (a torch.distributed new_group): its
// errors name the job's ranks and the group, as a child Context's do.
TEST(ContextOverStore, GroupOfALargerJobNamesGlobalRanksAndItsLabel) {
  constexpr int kSize = 2;
  auto store = std::make_shared<rendezvous::MemoryStore>();
  const Options options = timeouts(1s);
  std::vector<std::future<std::string>> ranks;
  for (int rank = 0; rank < kSize; ++rank) {
    ranks.push_back(std::async(std::launch::async, [=]() -> std::string {
      auto world = world_of(rank, kSize);
      world.global_ranks = {4, 7};
      world.label = "new_group([4, 7])";
      auto context = init(world, options, store);
      EXPECT_EQ(context->global_rank(1), 7);
      EXPECT_EQ(context->label(), "new_group([4, 7])");
      context->barrier();
      if (rank == 0) {
        // Never joins the all-reduce below, and stays connected past its peer's timeout, so
        // the peer times out rather than seeing this rank leave.
        std::this_thread::sleep_for(options.op_timeout * 3);
        return {};
      }
      std::vector<float> values(16, 1.0f);
      return test_support::expect_error(ErrorKind::timeout, [&] {
        context->allreduce(values.data(), values.size(), DataType::f32, ReduceOp::sum);
      });
    }));
  }
  EXPECT_EQ(ranks[0].get(), "");
  const auto message = ranks[1].get();
  EXPECT_EQ(message.rfind("rank 7: new_group([4, 7]): ", 0), 0u) << message;
  EXPECT_NE(message.find("rank 4"), std::string::npos) << message;
}

// A rank that never joins a collective stalls its neighbours, and their neighbours wait for
// them in turn: every rank that times out names the rank that stopped, whichever peer it
// waited for itself (context/stall_chain.hpp).
TEST(ContextOverStore, EveryRankThatTimesOutNamesTheRankThatStopped) {
  constexpr int kSize = 4;
  constexpr int kStopped = 1;
  for (const Algorithm algo : {Algorithm::tree, Algorithm::ring}) {
    auto store = std::make_shared<rendezvous::MemoryStore>();
    const Options options = timeouts(1s);
    std::vector<std::future<std::string>> ranks;
    for (int rank = 0; rank < kSize; ++rank) {
      ranks.push_back(std::async(std::launch::async, [=]() -> std::string {
        auto context = init(world_of(rank, kSize), options, store);
        context->barrier();
        if (rank == kStopped) {
          // Stays connected past the others' timeouts and their 2 s wait for each other's
          // reports, so they time out rather than see it leave.
          std::this_thread::sleep_for(options.op_timeout * 4);
          return {};
        }
        std::vector<float> values(16, 1.0f);
        return test_support::expect_error(ErrorKind::timeout, [&] {
          context->allreduce(values.data(), values.size(), DataType::f32, ReduceOp::sum, algo);
        });
      }));
    }
    for (int rank = 0; rank < kSize; ++rank) {
      const auto message = ranks[rank].get();
      if (rank == kStopped) continue;
      EXPECT_NE(message.find("ank 1 has not timed out waiting for another rank"),
                std::string::npos)
          << to_string(algo) << ", rank " << rank << ": " << message;
    }
  }
}

TEST(ContextOverStore, GlobalRanksMustCoverTheWorld) {
  auto world = world_of(0, 2);
  world.global_ranks = {3};
  const auto message = test_support::expect_error(ErrorKind::invalid_argument, [&] {
    init(world, Options{}, std::make_shared<rendezvous::MemoryStore>());
  });
  EXPECT_NE(message.find("1 global ranks for a world of 2"), std::string::npos) << message;
}

}  // namespace
}  // namespace ringfuse
