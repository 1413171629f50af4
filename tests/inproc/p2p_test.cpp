// Point-to-point (Context::send/recv/send_recv_group, Engine::send/recv) between Contexts that
// are threads of this process over one in-memory store, on real sockets, for each transport
// the Contexts' collectives run on (the p2p connections are their own either way).
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "expect_error.hpp"
#include "p2p/messenger.hpp"
#include "rendezvous/memory_store.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse {
namespace {

using namespace std::chrono_literals;
using test_support::contains;
using test_support::expect_error;

std::atomic<int> worlds{0};

/// Runs `body(context)` on `size` Contexts, each on its own thread, and rethrows the first
/// failure (gtest assertions inside `body` are reported as usual).
void run_world(int size, TransportKind transport,
               const std::function<void(Context&)>& body) {
  auto store = std::make_shared<rendezvous::MemoryStore>();
  Options options;
  options.connect_timeout = 20s;
  options.op_timeout = 20s;
  options.transport = transport;
  const std::string job = "p2p-" + std::to_string(::getpid()) + "-" + std::to_string(worlds++);
  std::vector<std::future<void>> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.push_back(std::async(std::launch::async, [=, &body] {
      WorldSpec world;
      world.rank = rank;
      world.size = size;
      world.local_rank = rank;
      world.local_size = size;
      world.job_id = job;
      world.job_secret = "secret";
      auto context = init(world, options, store);
      body(*context);
      context->barrier();  // no Context goes while a peer still talks to it
    }));
  }
  for (auto& rank : ranks) rank.get();
}

class PointToPoint : public ::testing::TestWithParam<TransportKind> {};

std::vector<float> filled(std::size_t n, float base) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = base + static_cast<float>(i % 97);
  return v;
}

TEST_P(PointToPoint, TagsReceivedOutOfOrderAndOrderedPerTag) {
  run_world(2, GetParam(), [](Context& ctx) {
    if (ctx.rank() == 0) {
      for (int i = 0; i < 3; ++i) {
        for (int tag : {1, 2, 3}) {
          const auto v = filled(1000, static_cast<float>(tag * 100 + i));
          ctx.send(v.data(), v.size(), DataType::f32, 1, tag);
        }
      }
    } else {
      // Tags in reverse of the send order; within one tag, the send order.
      for (int tag : {3, 2, 1}) {
        for (int i = 0; i < 3; ++i) {
          std::vector<float> got(1000);
          const auto status = ctx.recv(got.data(), got.size(), DataType::f32, 0, tag);
          EXPECT_EQ(status.source, 0);
          EXPECT_EQ(status.tag, tag);
          EXPECT_EQ(status.count, 1000u);
          EXPECT_EQ(got, filled(1000, static_cast<float>(tag * 100 + i))) << "tag " << tag;
        }
      }
    }
  });
}

TEST_P(PointToPoint, AnySourceAndAnyTag) {
  run_world(3, GetParam(), [](Context& ctx) {
    if (ctx.rank() != 0) {
      const std::int32_t value = ctx.rank() * 10;
      ctx.send(&value, 1, DataType::i32, 0, /*tag=*/ctx.rank() + 4);
      return;
    }
    std::set<int> sources;
    for (int i = 0; i < 2; ++i) {
      std::int32_t value = -1;
      const auto status = ctx.recv(&value, 1, DataType::i32, kAnySource, kAnyTag);
      EXPECT_EQ(value, status.source * 10);
      EXPECT_EQ(status.tag, status.source + 4);
      EXPECT_EQ(status.count, 1u);
      sources.insert(status.source);
    }
    EXPECT_EQ(sources, (std::set<int>{1, 2}));
  });
}

TEST_P(PointToPoint, LongMessageIntoShortBufferIsRefusedAndKept) {
  run_world(2, GetParam(), [](Context& ctx) {
    const auto v = filled(100, 1.0f);
    if (ctx.rank() == 0) {
      ctx.send(v.data(), v.size(), DataType::f32, 1, 7);
      return;
    }
    std::vector<float> got(100);
    const auto message = expect_error(ErrorKind::invalid_argument, [&] {
      ctx.recv(got.data(), 10, DataType::f32, 0, 7);
    });
    EXPECT_TRUE(contains(message, "rank 1: ")) << message;
    EXPECT_TRUE(contains(message, "400 bytes")) << message;
    EXPECT_TRUE(contains(message, "40 bytes")) << message;
    const auto status = ctx.recv(got.data(), got.size(), DataType::f32, 0, 7);
    EXPECT_EQ(status.count, 100u);
    EXPECT_EQ(got, v);
  });
}

TEST_P(PointToPoint, RingInOneGroupDoesNotDeadlock) {
  constexpr std::size_t kCount = std::size_t{1} << 20;  // 4 MiB: far beyond socket buffers
  run_world(4, GetParam(), [](Context& ctx) {
    const int right = (ctx.rank() + 1) % ctx.size();
    const int left = (ctx.rank() + ctx.size() - 1) % ctx.size();
    auto out = filled(kCount, static_cast<float>(ctx.rank()));
    std::vector<float> in(kCount);
    const P2POp ops[] = {{P2POp::Kind::send, out.data(), kCount, DataType::f32, right, 0},
                         {P2POp::Kind::recv, in.data(), kCount, DataType::f32, left, 0}};
    const auto statuses = ctx.send_recv_group(ops);
    ASSERT_EQ(statuses.size(), 1u);
    EXPECT_EQ(statuses[0].source, left);
    EXPECT_EQ(in, filled(kCount, static_cast<float>(left)));
  });
}

// Four stages; at every step each stage sends to and receives from both neighbours in one
// group: activations forward (tag 0), gradients back (tag 1), 100 micro-batches.
TEST_P(PointToPoint, FourStagePipelineForwardAndBackward) {
  constexpr int kMicroBatches = 100;
  constexpr std::size_t kCount = 16 * 1024;
  run_world(4, GetParam(), [](Context& ctx) {
    const int s = ctx.rank();
    const int last = ctx.size() - 1;
    const int steps = kMicroBatches + 2 * last + 1;
    std::vector<float> received_act(kCount), received_grad(kCount);
    std::vector<float> out_act(kCount), out_grad(kCount);
    std::vector<std::vector<float>> kept(kMicroBatches);  // the last stage's activations
    int checked = 0;
    for (int t = 0; t < steps; ++t) {
      std::vector<P2POp> ops;
      const int fwd_send = t - s;                 // micro-batch this stage sends forward
      const int fwd_recv = t - (s - 1);           // micro-batch arriving from s-1
      const int bwd_send = t - (2 * last + 1 - s);  // gradient this stage sends back
      const int bwd_recv = t - (2 * last - s);      // gradient arriving from s+1
      const auto in_range = [](int m) { return m >= 0 && m < kMicroBatches; };
      if (s < last && in_range(fwd_send)) {
        if (s == 0) {
          out_act = filled(kCount, static_cast<float>(fwd_send));
        } else {
          out_act = received_act;  // from the previous step
          for (auto& x : out_act) x += 1.0f;
        }
        ops.push_back({P2POp::Kind::send, out_act.data(), kCount, DataType::f32, s + 1, 0});
      }
      if (s > 0 && s < last + 1 && in_range(bwd_send) && s != last) {
        out_grad = received_grad;
        for (auto& x : out_grad) x += 1.0f;
        ops.push_back({P2POp::Kind::send, out_grad.data(), kCount, DataType::f32, s - 1, 1});
      }
      if (s == last && in_range(bwd_send)) {
        out_grad = kept[bwd_send];
        for (auto& x : out_grad) x *= 2.0f;
        ops.push_back({P2POp::Kind::send, out_grad.data(), kCount, DataType::f32, s - 1, 1});
      }
      const bool get_act = s > 0 && in_range(fwd_recv);
      const bool get_grad = s < last && in_range(bwd_recv);
      if (get_act) {
        ops.push_back({P2POp::Kind::recv, received_act.data(), kCount, DataType::f32, s - 1, 0});
      }
      if (get_grad) {
        ops.push_back({P2POp::Kind::recv, received_grad.data(), kCount, DataType::f32, s + 1, 1});
      }
      ctx.send_recv_group(ops);
      if (get_act) {
        // Micro-batch m left stage 0 as m and gained 1 per stage since.
        ASSERT_EQ(received_act, filled(kCount, static_cast<float>(fwd_recv + s - 1)))
            << "stage " << s << " activation of micro-batch " << fwd_recv;
        if (s == last) kept[fwd_recv] = received_act;
        ++checked;
      }
      if (get_grad) {
        // 2 x the last stage's activation, plus 1 per stage passed on the way back.
        auto expected = filled(kCount, static_cast<float>(bwd_recv + last - 1));
        for (auto& x : expected) x = x * 2.0f + static_cast<float>(last - 1 - s);
        ASSERT_EQ(received_grad, expected)
            << "stage " << s << " gradient of micro-batch " << bwd_recv;
        ++checked;
      }
    }
    EXPECT_EQ(checked, s == 0 || s == last ? kMicroBatches : 2 * kMicroBatches);
  });
}

TEST_P(PointToPoint, EveryDataTypeSize) {
  run_world(2, GetParam(), [](Context& ctx) {
    for (const DataType type : kAllDataTypes) {
      constexpr std::size_t kCount = 37;
      const std::size_t bytes = kCount * element_size(type);
      std::vector<std::uint8_t> buffer(bytes + 8);
      if (ctx.rank() == 0) {
        std::iota(buffer.begin(), buffer.end(), static_cast<std::uint8_t>(type));
        ctx.send(buffer.data(), kCount, type, 1, static_cast<int>(type));
      } else {
        const auto status = ctx.recv(buffer.data(), kCount + 1, type, 0, kAnyTag);
        EXPECT_EQ(status.count, kCount) << to_string(type);
        EXPECT_EQ(status.tag, static_cast<int>(type));
        std::vector<std::uint8_t> expected(bytes);
        std::iota(expected.begin(), expected.end(), static_cast<std::uint8_t>(type));
        EXPECT_TRUE(std::equal(expected.begin(), expected.end(), buffer.begin()))
            << to_string(type);
      }
    }
  });
}

// A message in flight between two ranks is never read by a collective between them.
TEST_P(PointToPoint, CollectivesBetweenASendAndItsReceive) {
  run_world(2, GetParam(), [](Context& ctx) {
    const auto v = filled(5000, 3.0f);
    if (ctx.rank() == 0) ctx.send(v.data(), v.size(), DataType::f32, 1, 0);
    std::vector<float> sum(1000, 1.0f);
    ctx.allreduce(sum.data(), sum.size(), DataType::f32, ReduceOp::sum);
    EXPECT_EQ(sum, std::vector<float>(1000, 2.0f));
    if (ctx.rank() == 1) {
      std::vector<float> got(5000);
      ctx.recv(got.data(), got.size(), DataType::f32, 0, 0);
      EXPECT_EQ(got, v);
    }
  });
}

TEST_P(PointToPoint, BadArgumentsAreRefusedOnTheCallingRank) {
  run_world(2, GetParam(), [](Context& ctx) {
    float x = 0;
    auto message = expect_error(ErrorKind::invalid_argument,
                                [&] { ctx.send(&x, 1, DataType::f32, 5, 0); });
    EXPECT_TRUE(contains(message, "peer 5 is not a rank")) << message;
    message = expect_error(ErrorKind::invalid_argument,
                           [&] { ctx.send(&x, 1, DataType::f32, 1 - ctx.rank(), -3); });
    EXPECT_TRUE(contains(message, "tag -3")) << message;
  });
}

TEST_P(PointToPoint, EngineWorkHandlesRingAndAnySource) {
  run_world(3, GetParam(), [](Context& ctx) {
    auto& engine = ctx.engine();
    const int right = (ctx.rank() + 1) % ctx.size();
    const int left = (ctx.rank() + ctx.size() - 1) % ctx.size();
    // Receive posted before the send on every rank: the engine progresses both together.
    std::vector<float> in(4096), out = filled(4096, static_cast<float>(ctx.rank()));
    auto received = engine.recv(TensorView{in.data(), DataType::f32, {4096}}, kAnySource, 9);
    auto sent = engine.send(TensorView{out.data(), DataType::f32, {4096}}, right, 9);
    sent.wait(20s);
    received.wait(20s);
    EXPECT_EQ(received.source_rank(), left);
    EXPECT_EQ(sent.source_rank(), -1);
    EXPECT_EQ(in, filled(4096, static_cast<float>(left)));
    // Per (peer, tag) order: five sends, five receives, in order.
    std::vector<std::int64_t> values(5), got(5, -1);
    std::vector<Work> works;
    for (int i = 0; i < 5; ++i) {
      values[i] = ctx.rank() * 100 + i;
      works.push_back(engine.send(TensorView{&values[i], DataType::i64, {1}}, right, 2));
    }
    for (int i = 0; i < 5; ++i) {
      works.push_back(engine.recv(TensorView{&got[i], DataType::i64, {1}}, left, 2));
    }
    for (auto& work : works) work.wait(20s);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(got[i], left * 100 + i);
  });
}

/// The store of the job, until refuse_lookups(): from then on every get() and wait() fails,
/// as a store whose client is held by another thread would leave them waiting. Point-to-point
/// must not need the store once the Contexts (and engines) are built.
class StoreThatStopsAnswering final : public rendezvous::Store {
 public:
  void refuse_lookups() { refusing_ = true; }

  void set(const std::string& key, std::string_view value) override { inner_.set(key, value); }
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override {
    refuse(key);
    return inner_.get(key, timeout);
  }
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override {
    refuse(keys.empty() ? std::string() : keys.front());
    inner_.wait(keys, timeout);
  }
  std::int64_t add(const std::string& key, std::int64_t delta) override {
    return inner_.add(key, delta);
  }
  bool remove(const std::string& key) override { return inner_.remove(key); }
  bool check(const std::vector<std::string>& keys) override { return inner_.check(keys); }

 private:
  void refuse(const std::string& key) const {
    if (refusing_) {
      throw Error(ErrorKind::timeout, "test store: a look-up of " + key + " after set-up");
    }
  }

  rendezvous::MemoryStore inner_;
  std::atomic<bool> refusing_{false};
};

// A first send to each peer (Context::send and Engine::send) reads nothing from the store: with
// torch's TCPStore a look-up from the engine's thread can wait on a client another thread of
// the rank holds, until the timeout.
TEST(PointToPointStore, FirstSendsNeedNoStoreLookups) {
  constexpr int kSize = 3;
  auto store = std::make_shared<StoreThatStopsAnswering>();
  Options options;
  options.connect_timeout = 20s;
  options.op_timeout = 20s;
  const std::string job = "p2p-store-" + std::to_string(::getpid());
  std::vector<std::unique_ptr<Context>> contexts(kSize);
  {
    std::vector<std::future<void>> ranks;
    for (int rank = 0; rank < kSize; ++rank) {
      ranks.push_back(std::async(std::launch::async, [&, rank] {
        WorldSpec world;
        world.rank = rank;
        world.size = kSize;
        world.local_rank = rank;
        world.local_size = kSize;
        world.job_id = job;
        world.job_secret = "secret";
        contexts[rank] = init(world, options, store);
        contexts[rank]->engine();  // its messenger is built now
        contexts[rank]->barrier();
      }));
    }
    for (auto& rank : ranks) rank.get();
  }
  store->refuse_lookups();
  std::vector<std::future<void>> ranks;
  for (int rank = 0; rank < kSize; ++rank) {
    ranks.push_back(std::async(std::launch::async, [&, rank] {
      Context& ctx = *contexts[rank];
      const int right = (rank + 1) % kSize;
      const int left = (rank + kSize - 1) % kSize;
      std::vector<float> out = filled(1024, static_cast<float>(rank)), in(1024);
      const P2POp ring[] = {{P2POp::Kind::recv, in.data(), in.size(), DataType::f32, left, 3},
                            {P2POp::Kind::send, out.data(), out.size(), DataType::f32, right, 3}};
      ctx.send_recv_group(ring);
      EXPECT_EQ(in, filled(1024, static_cast<float>(left)));
      std::vector<float> engine_in(1024);
      auto received =
          ctx.engine().recv(TensorView{engine_in.data(), DataType::f32, {1024}}, left, 4);
      auto sent = ctx.engine().send(TensorView{out.data(), DataType::f32, {1024}}, right, 4);
      sent.wait(20s);
      received.wait(20s);
      EXPECT_EQ(engine_in, filled(1024, static_cast<float>(left)));
    }));
  }
  for (auto& rank : ranks) rank.get();
  std::vector<std::future<void>> closing;
  for (int rank = 0; rank < kSize; ++rank) {
    closing.push_back(std::async(std::launch::async, [&, rank] { contexts[rank].reset(); }));
  }
  for (auto& rank : closing) rank.get();
}

// The p2p listener admits only a peer that proves this job's secret (SECURITY.md): a sender
// with another secret is turned away, and the sender's error says why.
TEST(PointToPointSecurity, APeerWithAnotherSecretIsRefused) {
  rendezvous::MemoryStore store;
  const auto options = [](int rank, const std::string& secret) {
    p2p::MessengerOptions o;
    o.rank = rank;
    o.size = 2;
    o.job_id = "secret-test";
    o.secret = secret;
    o.key_prefix = "p2p-secret-test/";
    o.connect_timeout = 5s;
    o.op_timeout = 5s;
    return o;
  };
  auto receiver_options = options(0, "right");
  receiver_options.op_timeout = 300ms;
  // Built together: each reads the other's address at construction.
  auto building = std::async(std::launch::async, [&] {
    return std::make_unique<p2p::Messenger>(&store, options(1, "wrong"));
  });
  p2p::Messenger receiver(&store, receiver_options);
  const auto intruder_messenger = building.get();
  p2p::Messenger& intruder = *intruder_messenger;
  float x = 1.0f;
  const P2POp send{P2POp::Kind::send, &x, 1, DataType::f32, 0, 0};
  const auto message =
      expect_error(ErrorKind::peer_failure, [&] { intruder.run({&send, 1}); });
  EXPECT_TRUE(contains(message, "rank 1: point-to-point: rank 0 could not prove this job's "
                                "secret"))
      << message;
  // Nothing reached the receiver: its receive from rank 1 times out.
  const P2POp recv{P2POp::Kind::recv, &x, 1, DataType::f32, 1, 0};
  const auto waited = expect_error(ErrorKind::timeout, [&] { receiver.run({&recv, 1}); });
  EXPECT_TRUE(contains(waited, "nothing came; is rank 1 sending it?")) << waited;
}

INSTANTIATE_TEST_SUITE_P(Transports, PointToPoint,
                         ::testing::Values(TransportKind::tcp, TransportKind::shm),
                         [](const auto& info) {
                           return std::string(info.param == TransportKind::tcp ? "tcp" : "shm");
                         });

}  // namespace
}  // namespace ringfuse
