// init(world, options, store): a world of Contexts that meet over a store their caller already
// shares (as the torch.distributed backend's ranks meet over torch's c10d Store), never over
// world.store_host:store_port, which here points nowhere.
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "expect_error.hpp"
#include "rendezvous/memory_store.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse {
namespace {

using namespace std::chrono_literals;

WorldSpec world_of(int rank, int size) {
  WorldSpec world;
  world.rank = rank;
  world.size = size;
  world.local_rank = rank;
  world.local_size = size;
  world.store_host = "192.0.2.1";  // TEST-NET-1: unreachable, so using it would time out
  world.store_port = 9;
  world.job_id = "over-store";
  world.job_secret = "secret";
  return world;
}

TEST(ContextOverStore, RanksMeetOverTheGivenStoreAndAllReduce) {
  constexpr int kSize = 3;
  auto store = std::make_shared<rendezvous::MemoryStore>();
  Options options;
  options.connect_timeout = 20s;
  options.op_timeout = 20s;
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

}  // namespace
}  // namespace ringfuse
