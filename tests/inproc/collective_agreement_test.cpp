// agree_on_collective(): ranks (threads with Contexts over one store) that are about to run the
// same collective pass; ranks that are not all fail alike, naming which ranks called what, and
// the Context stays usable.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "expect_error.hpp"
#include "one_host_world.hpp"
#include "rendezvous/memory_store.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse {
namespace {

using namespace std::chrono_literals;

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
      auto context = init(one_host_world(rank, size, job), options, store);
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
    auto context = init(one_host_world(1, 2, "agree-timeout"), options, store);
    checked.get_future().wait_for(60s);  // never calls the check
  });
  auto context = init(one_host_world(0, 2, "agree-timeout"), options, store);
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

// agree_and_allreduce(): in a world of two, a small all-reduce travels inside the check.

/// Rank-dependent bytes of `count` elements of `type` (any bit pattern is a value of every
/// type but floats' NaNs, which these avoid: small integers in each element's low byte).
std::vector<std::byte> inputs_of(int rank, std::size_t count, DataType type) {
  std::vector<std::byte> bytes(count * element_size(type));
  for (std::size_t i = 0; i < count; ++i) {
    auto* element = bytes.data() + i * element_size(type);
    const auto value = static_cast<std::uint8_t>((i * 7 + static_cast<std::size_t>(rank) * 3) % 5);
    switch (type) {
      case DataType::f32: {
        const float f = value;
        std::memcpy(element, &f, sizeof f);
        break;
      }
      case DataType::f64: {
        const double d = value - 2.5;
        std::memcpy(element, &d, sizeof d);
        break;
      }
      case DataType::boolean: element[0] = std::byte{static_cast<std::uint8_t>(value % 2)}; break;
      default: element[0] = std::byte{value};  // i32, i64: small non-negative integers
    }
  }
  return bytes;
}

struct Case {
  DataType type;
  ReduceOp op;
  std::size_t count;
};

TEST(AgreeAndAllreduce, ASmallAllReduceGivesTheContextsResultInOneExchange) {
  const std::vector<Case> cases = {{DataType::f32, ReduceOp::sum, 1024},
                                   {DataType::f32, ReduceOp::avg, 3},
                                   {DataType::i32, ReduceOp::avg, 7},
                                   {DataType::i64, ReduceOp::prod, 512},
                                   {DataType::f64, ReduceOp::min, 5},
                                   {DataType::boolean, ReduceOp::max, 9},
                                   {DataType::f32, ReduceOp::sum, 0}};
  for (const auto& result : on_ranks(2, "agree-carry", [&](Context& context) {
         std::string wrong;
         for (const auto& c : cases) {
           auto carried = inputs_of(context.rank(), c.count, c.type);
           auto expected = carried;
           context.allreduce(expected.data(), c.count, c.type, c.op);  // the reference
           const SmallAllreduce small{carried.data(), c.count, c.type, c.op};
           const auto signature = fmt::format("{}[{}] {}", to_string(c.type), c.count,
                                              to_string(c.op));
           if (!agree_and_allreduce(context, {"allreduce", signature}, "test", &small)) {
             wrong += " [" + signature + " not carried]";
           } else if (carried != expected) {
             wrong += " [" + signature + " differs from Context::allreduce]";
           }
         }
         return "ok" + wrong;
       })) {
    EXPECT_EQ(result, "ok");
  }
  // One exchange: in a fresh Context the collective after it is #2 (agree_on_collective and
  // a separate all-reduce would make it #3).
  for (const auto& result : on_ranks(2, "agree-carry-count", [](Context& context) {
         std::vector<float> values(1024, 1.0f);
         const SmallAllreduce small{values.data(), values.size(), DataType::f32, ReduceOp::sum};
         agree_and_allreduce(context, {"allreduce", "f32[1024] sum"}, "test", &small);
         try {
           context.broadcast(values.data(), 1, DataType::f32, /*root=*/2);  // refused
         } catch (const Error& error) {
           return std::string(error.what());
         }
         return std::string("broadcast from rank 2 in a world of two was not refused");
       })) {
    EXPECT_NE(result.find("(collective #2)"), std::string::npos) << result;
  }
}

TEST(AgreeAndAllreduce, AMismatchFailsEveryRankAndLeavesTheBufferAsItWas) {
  const auto results = on_ranks(2, "agree-carry-mismatch", [](Context& context) {
    std::vector<float> values(1024, static_cast<float>(context.rank() + 1));
    const SmallAllreduce small{values.data(), values.size(), DataType::f32, ReduceOp::sum};
    const auto message = test_support::expect_error(ErrorKind::invalid_argument, [&] {
      if (context.rank() == 0) {
        agree_and_allreduce(context, {"allreduce", "f32[1024] sum"}, "test", &small);
      } else {
        agree_and_allreduce(context, {"broadcast", "f32[10] broadcast root 0"}, "test", nullptr);
      }
    });
    const bool kept = values == std::vector<float>(1024, static_cast<float>(context.rank() + 1));
    // Still in step: a matching call goes through.
    const bool carried =
        agree_and_allreduce(context, {"allreduce", "f32[1024] sum"}, "test", &small);
    return message + (kept ? "" : " [buffer changed]") +
           (carried && values == std::vector<float>(1024, 3.0f) ? "" : " [broken]");
  });
  for (const auto& message : results) {
    EXPECT_NE(message.find("test: collective does not match across ranks: rank 0: 'allreduce' "
                           "f32[1024] sum; rank 1: 'broadcast' f32[10] broadcast root 0;"),
              std::string::npos)
        << message;
    EXPECT_EQ(message.find("[buffer changed]"), std::string::npos) << message;
    EXPECT_EQ(message.find("[broken]"), std::string::npos) << message;
  }
}

// What it leaves to the caller: more than kCheckCarriesBytes, no all-reduce, or a world of
// three (checked as agree_on_collective does); a world of one needs no exchange at all.
TEST(AgreeAndAllreduce, LargerAllReducesAndWorldsAreLeftToTheCaller) {
  const auto call = [](Context& context, std::size_t count) {
    std::vector<float> values(count, 1.0f);
    const SmallAllreduce small{values.data(), count, DataType::f32, ReduceOp::sum};
    const bool carried = agree_and_allreduce(
        context, {"allreduce", fmt::format("f32[{}] sum", count)}, "test", &small);
    const bool untouched = values == std::vector<float>(count, 1.0f);
    return fmt::format("{}{}", carried ? "carried" : "left",
                       untouched || carried ? "" : " [changed]");
  };
  for (const auto& result : on_ranks(2, "agree-carry-large", [&](Context& context) {
         return call(context, kCheckCarriesBytes / 4 + 1) + " " +
                std::to_string(agree_and_allreduce(context, {"barrier", "barrier"}, "test",
                                                   nullptr));
       })) {
    EXPECT_EQ(result, "left 0");
  }
  for (const auto& result :
       on_ranks(3, "agree-carry-three", [&](Context& context) { return call(context, 16); })) {
    EXPECT_EQ(result, "left");
  }
  for (const auto& result :
       on_ranks(1, "agree-carry-one", [&](Context& context) { return call(context, 16); })) {
    EXPECT_EQ(result, "carried");
  }
}

}  // namespace
}  // namespace ringfuse
