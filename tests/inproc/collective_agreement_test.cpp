// agree_on_collective(): ranks (threads with Contexts over one store) that are about to run the
// same collective pass; ranks that are not all fail alike, naming which ranks called what, and
// the Context stays usable.
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "expect_error.hpp"
#include "rendezvous/memory_store.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse {
namespace {

using namespace std::chrono_literals;

WorldSpec world_of(int rank, int size, const std::string& job) {
  WorldSpec world;
  world.rank = rank;
  world.size = size;
  world.local_rank = rank;
  world.local_size = size;
  world.job_id = job;
  world.job_secret = "secret";
  return world;
}

/// Runs body(context) on `size` ranks, each on its own thread; returns what each returned.
std::vector<std::string> on_ranks(int size, const std::string& job,
                                  const std::function<std::string(Context&)>& body) {
  auto store = std::make_shared<rendezvous::MemoryStore>();
  Options options;
  options.connect_timeout = 20s;
  options.op_timeout = 20s;
  std::vector<std::future<std::string>> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.push_back(std::async(std::launch::async, [=] {
      auto context = init(world_of(rank, size, job), options, store);
      return body(*context);
    }));
  }
  std::vector<std::string> results;
  for (auto& rank : ranks) results.push_back(rank.get());
  return results;
}

/// After the check, an all-reduce must still give the right sum on every rank.
std::string still_usable(Context& context) {
  std::vector<float> values(100, 1.0f);
  context.allreduce(values.data(), values.size(), DataType::f32, ReduceOp::sum);
  return values == std::vector<float>(100, static_cast<float>(context.size())) ? "" : " [broken]";
}

TEST(CollectiveAgreement, RanksThatCallTheSameCollectivePass) {
  for (const auto& result : on_ranks(3, "agree-same", [](Context& context) {
         for (int i = 0; i < 20; ++i) {
           agree_on_collective(context, {"allreduce", "f32[1024] sum"}, "test");
         }
         return "ok" + still_usable(context);
       })) {
    EXPECT_EQ(result, "ok");
  }
}

TEST(CollectiveAgreement, EveryRankNamesWhichRanksSentWhat) {
  const auto results = on_ranks(3, "agree-shape", [](Context& context) {
    const std::string signature = context.rank() == 0 ? "f32[10] sum" : "f32[12] sum";
    const auto message = test_support::expect_error(ErrorKind::invalid_argument, [&] {
      agree_on_collective(context, {"allreduce", signature}, "test group");
    });
    return message + still_usable(context);
  });
  for (int rank = 0; rank < 3; ++rank) {
    const auto& message = results[static_cast<std::size_t>(rank)];
    EXPECT_EQ(message.rfind(fmt::format("rank {}: test group: collective 'allreduce' does not "
                                        "match across ranks: rank 0: f32[10] sum; ranks {{1,2}}: "
                                        "f32[12] sum; every rank must call",
                                        rank),
                            0),
              0u)
        << message;
    EXPECT_EQ(message.find("[broken]"), std::string::npos) << message;
  }
}

TEST(CollectiveAgreement, DifferentCollectivesAreNamed) {
  const auto results = on_ranks(2, "agree-name", [](Context& context) {
    const CollectiveCall call = context.rank() == 0
                                    ? CollectiveCall{"allreduce", "f32[10] sum"}
                                    : CollectiveCall{"broadcast", "f32[10] broadcast root 0"};
    return test_support::expect_error(ErrorKind::invalid_argument,
                                      [&] { agree_on_collective(context, call, "test"); }) +
           still_usable(context);
  });
  for (const auto& message : results) {
    EXPECT_NE(message.find("collective does not match across ranks: rank 0: 'allreduce' "
                           "f32[10] sum; rank 1: 'broadcast' f32[10] broadcast root 0;"),
              std::string::npos)
        << message;
    EXPECT_EQ(message.find("[broken]"), std::string::npos) << message;
  }
}

// A rank whose peer never calls the collective: the check times out, and its error names the
// collective checked (what the user called), not only the check's own all-reduce.
TEST(CollectiveAgreement, APeerThatNeverCallsTimesOutNamingTheCollective) {
  auto store = std::make_shared<rendezvous::MemoryStore>();
  Options options;
  options.connect_timeout = 20s;
  options.op_timeout = 1s;
  std::promise<void> checked;
  auto peer = std::async(std::launch::async, [&] {
    auto context = init(world_of(1, 2, "agree-timeout"), options, store);
    checked.get_future().wait();  // never calls the check
  });
  auto context = init(world_of(0, 2, "agree-timeout"), options, store);
  const auto message = test_support::expect_error(ErrorKind::timeout, [&] {
    agree_on_collective(*context, {"barrier", "barrier"}, "test group");
  });
  checked.set_value();
  peer.get();
  EXPECT_EQ(message.rfind("rank 0: test group: collective 'barrier' barrier: while checking that "
                          "every rank calls it: ",
                          0),
            0u)
      << message;
}

TEST(CollectiveAgreement, AWorldOfOneAlwaysAgrees) {
  for (const auto& result : on_ranks(1, "agree-one", [](Context& context) {
         agree_on_collective(context, {"barrier", "barrier"}, "test");
         return std::string("ok");
       })) {
    EXPECT_EQ(result, "ok");
  }
}

// The check of a world of one exchanges nothing: the collective after it is the Context's
// first (its label counts collectives), not its second.
TEST(CollectiveAgreement, AWorldOfOneRunsNoCollectiveForTheCheck) {
  for (const auto& result : on_ranks(1, "agree-one-free", [](Context& context) {
         agree_on_collective(context, {"allreduce", "f32[4] sum"}, "test");
         float value = 1.0f;
         try {
           context.broadcast(&value, 1, DataType::f32, /*root=*/1);  // no rank 1: refused
         } catch (const Error& error) {
           return std::string(error.what());
         }
         return std::string("broadcast from rank 1 in a world of one was not refused");
       })) {
    EXPECT_NE(result.find("(collective #1)"), std::string::npos) << result;
  }
}

}  // namespace
}  // namespace ringfuse
