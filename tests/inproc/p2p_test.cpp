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
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "expect_error.hpp"
#include "one_host_world.hpp"
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
void run_world(int size, TransportKind transport, const std::function<void(Context&)>& body,
               const std::function<void(Options&)>& tweak = {}) {
  auto store = std::make_shared<rendezvous::MemoryStore>();
  Options options;
  options.connect_timeout = 20s;
  options.op_timeout = 20s;
  options.transport = transport;
  if (tweak) tweak(options);
  const std::string job = "p2p-" + std::to_string(::getpid()) + "-" + std::to_string(worlds++);
  std::vector<std::future<void>> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.push_back(std::async(std::launch::async, [=, &body] {
      auto context = init(one_host_world(rank, size, job), options, store);
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

// Messages on both sides of the eager limit (64 KiB) and beyond the receiver's bound of
// unexpected data (256 KiB here, so small ones also wait for their receive): six tags, sent
// in one group, received with the tags in reverse, half in one group and half one by one.
// Within each tag the order is the send order (MPI's non-overtaking rule).
std::size_t boundary_size(int tag, int i) {
  constexpr std::size_t kSizes[] = {1024, 64 * 1024, 64 * 1024 + 4, 300 * 1024, 1024 * 1024};
  return kSizes[static_cast<std::size_t>(tag + i) % 5];
}

std::vector<std::uint8_t> boundary_payload(int tag, int i) {
  std::vector<std::uint8_t> v(boundary_size(tag, i));
  for (std::size_t k = 0; k < v.size(); ++k) v[k] = static_cast<std::uint8_t>(k * 7 + tag * 31 + i);
  return v;
}

TEST_P(PointToPoint, OrderPerTagAcrossTheEagerAndRendezvousBoundary) {
  constexpr int kTags = 6;
  constexpr int kPerTag = 4;
  run_world(
      2, GetParam(),
      [](Context& ctx) {
        if (ctx.rank() == 0) {
          std::vector<std::vector<std::uint8_t>> payloads;
          std::vector<P2POp> sends;
          for (int i = 0; i < kPerTag; ++i) {
            for (int tag = 0; tag < kTags; ++tag) payloads.push_back(boundary_payload(tag, i));
          }
          std::size_t at = 0;
          for (int i = 0; i < kPerTag; ++i) {
            for (int tag = 0; tag < kTags; ++tag, ++at) {
              sends.push_back({P2POp::Kind::send, payloads[at].data(), payloads[at].size(),
                               DataType::u8, 1, tag});
            }
          }
          ctx.send_recv_group(sends);
          return;
        }
        constexpr std::size_t kCapacity = 1024 * 1024;
        const auto check = [](const std::vector<std::uint8_t>& got, const RecvStatus& status,
                              int tag, int i) {
          EXPECT_EQ(status.source, 0);
          EXPECT_EQ(status.tag, tag);
          ASSERT_EQ(status.count, boundary_size(tag, i)) << "tag " << tag << " message " << i;
          const auto want = boundary_payload(tag, i);
          EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin()))
              << "tag " << tag << " message " << i;
        };
        // Even tags, in reverse, as one group.
        std::vector<std::vector<std::uint8_t>> buffers;
        std::vector<P2POp> receives;
        std::vector<std::pair<int, int>> which;
        for (int tag = kTags - 2; tag >= 0; tag -= 2) {
          for (int i = 0; i < kPerTag; ++i) {
            buffers.emplace_back(kCapacity);
            which.emplace_back(tag, i);
          }
        }
        for (std::size_t k = 0; k < buffers.size(); ++k) {
          receives.push_back({P2POp::Kind::recv, buffers[k].data(), kCapacity, DataType::u8, 0,
                              which[k].first});
        }
        const auto statuses = ctx.send_recv_group(receives);
        for (std::size_t k = 0; k < buffers.size(); ++k) {
          check(buffers[k], statuses[k], which[k].first, which[k].second);
        }
        // Odd tags, in reverse, one receive at a time.
        std::vector<std::uint8_t> got(kCapacity);
        for (int tag = kTags - 1; tag >= 1; tag -= 2) {
          for (int i = 0; i < kPerTag; ++i) {
            check(got, ctx.recv(got.data(), kCapacity, DataType::u8, 0, tag), tag, i);
          }
        }
      },
      [](Options& options) { options.p2p_unexpected_bytes = 256 * 1024; });
}

// Receives from any rank and with any tag take announced (rendezvous) messages as they take
// eager ones: each sender's messages in its send order, every one whole.
TEST_P(PointToPoint, AnySourceAcrossTheEagerAndRendezvousBoundary) {
  constexpr int kMessages = 10;
  constexpr std::size_t kLarge = 200 * 1024;
  run_world(
      3, GetParam(),
      [](Context& ctx) {
        const auto size_of = [](int i) { return i % 2 == 0 ? std::size_t{4096} : kLarge; };
        if (ctx.rank() != 0) {
          std::vector<std::vector<std::int32_t>> payloads;
          std::vector<P2POp> sends;
          for (int i = 0; i < kMessages; ++i) {
            payloads.emplace_back(size_of(i) / 4, ctx.rank() * 1000 + i);
          }
          for (int i = 0; i < kMessages; ++i) {
            sends.push_back({P2POp::Kind::send, payloads[i].data(), payloads[i].size(),
                             DataType::i32, 0, i % 3});
          }
          ctx.send_recv_group(sends);
          return;
        }
        std::vector<int> next(3, 0);  // by source: the message expected next
        std::vector<std::int32_t> got(kLarge / 4);
        for (int k = 0; k < 2 * kMessages; ++k) {
          const auto status = ctx.recv(got.data(), got.size(), DataType::i32, kAnySource, kAnyTag);
          ASSERT_TRUE(status.source == 1 || status.source == 2) << status.source;
          const int i = next[status.source]++;
          EXPECT_EQ(status.tag, i % 3);
          ASSERT_EQ(status.count, size_of(i) / 4) << "from rank " << status.source;
          EXPECT_EQ(got[0], status.source * 1000 + i);
          EXPECT_EQ(got[status.count - 1], status.source * 1000 + i);
        }
        EXPECT_EQ(next[1], int{kMessages});
        EXPECT_EQ(next[2], int{kMessages});
      },
      [](Options& options) { options.p2p_unexpected_bytes = 256 * 1024; });
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

// Through the engine's Work handles (torch.distributed's isend/irecv): a 1 MiB message
// (announced) and a small one after it, received in the other order, the large one from any
// rank.
TEST_P(PointToPoint, EngineWorkHandlesAnnouncedMessagesOutOfOrder) {
  run_world(2, GetParam(), [](Context& ctx) {
    auto& engine = ctx.engine();
    constexpr std::int64_t kLarge = 256 * 1024;  // f32: 1 MiB
    if (ctx.rank() == 0) {
      const auto large = filled(kLarge, 5.0f);
      const auto small = filled(16, 7.0f);
      auto sent_large = engine.send(TensorView{const_cast<float*>(large.data()), DataType::f32,
                                               {kLarge}},
                                    1, 1);
      auto sent_small =
          engine.send(TensorView{const_cast<float*>(small.data()), DataType::f32, {16}}, 1, 2);
      sent_small.wait(20s);
      sent_large.wait(20s);
      return;
    }
    std::vector<float> small(16), large(kLarge);
    auto got_small = engine.recv(TensorView{small.data(), DataType::f32, {16}}, 0, 2);
    got_small.wait(20s);
    EXPECT_EQ(small, filled(16, 7.0f));
    auto got_large = engine.recv(TensorView{large.data(), DataType::f32, {kLarge}}, kAnySource, 1);
    got_large.wait(20s);
    EXPECT_EQ(got_large.source_rank(), 0);
    EXPECT_EQ(large, filled(kLarge, 5.0f));
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
        contexts[rank] = init(one_host_world(rank, kSize, job), options, store);
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

// Two messengers of one world of 2 (built together: each reads the other's address at
// construction), on real sockets; `shared_memory` false keeps the pair on TCP.
struct MessengerPair {
  rendezvous::MemoryStore store;
  std::unique_ptr<p2p::Messenger> sender;    // rank 0
  std::unique_ptr<p2p::Messenger> receiver;  // rank 1
};

std::unique_ptr<MessengerPair> messenger_pair(
    bool shared_memory, const std::function<void(p2p::MessengerOptions&)>& tweak = {}) {
  auto pair = std::make_unique<MessengerPair>();
  const std::string job = "p2p-pair-" + std::to_string(::getpid()) + "-" + std::to_string(worlds++);
  const auto options = [&](int rank) {
    p2p::MessengerOptions o;
    o.rank = rank;
    o.size = 2;
    o.job_id = job;
    o.secret = "secret";
    o.key_prefix = job + "/";
    o.connect_timeout = 20s;
    o.op_timeout = 20s;
    o.shared_memory = shared_memory;
    if (tweak) tweak(o);
    return o;
  };
  auto building = std::async(std::launch::async, [&] {
    return std::make_unique<p2p::Messenger>(&pair->store, options(0));
  });
  pair->receiver = std::make_unique<p2p::Messenger>(&pair->store, options(1));
  pair->sender = building.get();
  return pair;
}

/// Progresses `messenger` until `ops` of its ids have completed (all without error) or 20 s
/// have passed; returns the completions in the order they came.
std::vector<p2p::Completion> progress_until_done(p2p::Messenger& messenger, std::size_t ops) {
  std::vector<p2p::Completion> done, all;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (all.size() < ops && std::chrono::steady_clock::now() < deadline) {
    done.clear();
    messenger.progress(std::chrono::milliseconds(10), done);
    for (const auto& completion : done) {
      EXPECT_FALSE(completion.error) << completion.error->what();
      all.push_back(completion);
    }
  }
  return all;
}

/// `messages` messages of `count` floats, the i-th filled with i.
std::vector<std::vector<float>> numbered_messages(int messages, std::size_t count) {
  std::vector<std::vector<float>> sent;
  for (int i = 0; i < messages; ++i) sent.push_back(filled(count, static_cast<float>(i)));
  return sent;
}

/// Posts every message of `sent` from the pair's sender to rank 1 (tag 5) and progresses it
/// until all completed, on a thread of its own; the future ends with that thread.
std::future<void> send_all_on_a_thread(MessengerPair& pair,
                                       const std::vector<std::vector<float>>& sent) {
  return std::async(std::launch::async, [&pair, &sent] {
    for (const auto& v : sent) pair.sender->post_send(v.data(), v.size() * 4, 1, 5);
    EXPECT_EQ(progress_until_done(*pair.sender, sent.size()).size(), sent.size());
  });
}

/// Progresses both messengers of `pair` (the receiver never posts) until the sender's first
/// completion, or 20 s; its completions.
std::vector<p2p::Completion> sender_outcome(MessengerPair& pair) {
  std::vector<p2p::Completion> done;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (done.empty() && std::chrono::steady_clock::now() < deadline) {
    pair.sender->progress(std::chrono::milliseconds(10), done);
    std::vector<p2p::Completion> ignored;
    pair.receiver->progress(std::chrono::milliseconds(1), ignored);
  }
  return done;
}

class BoundedUnexpected : public ::testing::TestWithParam<TransportKind> {};

// A sender running 1,000 messages ahead of its receiver (a pipeline stage, a loop of isend)
// must not make the receiver hold more of its unexpected data than the bound
// (RINGFUSE_P2P_UNEXPECTED_BYTES, 4 MiB by default); every message still arrives, in order.
TEST_P(BoundedUnexpected, SenderThousandMessagesAheadStaysUnderTheBound) {
  constexpr int kMessages = 1000;
  constexpr std::size_t kCount = 4096;  // 16 KiB each: 16 MiB in all
  constexpr std::size_t kBound = std::size_t{4} << 20;
  auto pair = messenger_pair(GetParam() == TransportKind::shm);
  const auto sent = numbered_messages(kMessages, kCount);
  auto sending = send_all_on_a_thread(*pair, sent);
  // The sender runs alone a while first (its socket or ring fills up), then the receiver
  // reads, posting no receive until every message has been sent or announced.
  std::this_thread::sleep_for(200ms);
  p2p::Messenger& receiver = *pair->receiver;
  std::vector<p2p::Completion> done;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (receiver.stats().unexpected_messages < kMessages &&
         std::chrono::steady_clock::now() < deadline) {
    receiver.progress(std::chrono::milliseconds(10), done);
  }
  EXPECT_EQ(receiver.stats().unexpected_messages, std::size_t{kMessages});
  EXPECT_LE(receiver.stats().unexpected_peak, kBound)
      << "the receiver held " << receiver.stats().unexpected_peak
      << " bytes of unexpected messages";
  std::vector<std::vector<float>> got(kMessages, std::vector<float>(kCount));
  for (auto& v : got) receiver.post_recv(v.data(), kCount * 4, 4, 0, 5);
  EXPECT_EQ(progress_until_done(receiver, kMessages).size(), std::size_t{kMessages});
  sending.get();
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(got[i], sent[i]) << "message " << i;
  EXPECT_LE(receiver.stats().unexpected_peak, kBound);
  EXPECT_EQ(receiver.stats().unexpected_bytes, 0u);
  // What did not fit was announced and waited for its receive; each message went one way,
  // decided once (also when the socket or ring was full as it came up).
  EXPECT_GT(pair->sender->stats().eager_sends, 0u);
  EXPECT_GT(pair->sender->stats().rendezvous_sends, 0u);
  EXPECT_EQ(pair->sender->stats().eager_sends + pair->sender->stats().rendezvous_sends,
            std::uint64_t{kMessages});
}

// A message whose first byte finds its ring (or socket) full waits there, chosen once: eager
// with its credit taken, or announced. Choosing again on each pass until it fits charged its
// credit again every time (fixed in d0584a1): credit ran out, later messages were announced
// and each choice was counted. Each frame (the messenger's 32-byte header and its payload)
// is 16 KiB, so four fill a 64 KiB ring exactly and the fifth finds no room for its first
// byte; the receiver comes after 200 ms.
TEST_P(BoundedUnexpected, AMessageWaitingForRoomIsChargedOnce) {
  constexpr int kMessages = 200;  // 3.2 MiB in all: within the 4 MiB of credit
  constexpr std::size_t kCount = (16384 - 32) / 4;
  auto pair = messenger_pair(GetParam() == TransportKind::shm,
                             [](p2p::MessengerOptions& o) { o.pipe_bytes = 64 << 10; });
  const auto sent = numbered_messages(kMessages, kCount);
  auto sending = send_all_on_a_thread(*pair, sent);
  std::this_thread::sleep_for(200ms);
  std::vector<std::vector<float>> got(kMessages, std::vector<float>(kCount));
  for (auto& v : got) pair->receiver->post_recv(v.data(), kCount * 4, 4, 0, 5);
  EXPECT_EQ(progress_until_done(*pair->receiver, kMessages).size(), std::size_t{kMessages});
  sending.get();
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(got[i], sent[i]) << "message " << i;
  const auto& stats = pair->sender->stats();
  EXPECT_EQ(stats.eager_sends, std::uint64_t{kMessages})
      << "each message fits the credit: every one goes eagerly, once (announced: "
      << stats.rendezvous_sends << ")";
  EXPECT_EQ(stats.rendezvous_sends, 0u);
}

// A send cancelled before a byte of it went gives back the credit it was charged: credit
// lost there would turn a later message that fits into an announcement (fixed in d0584a1).
// Four 16 KiB frames fill the 64 KiB ring of a receiver that does not read yet, so the fifth
// is chosen (eager, charged) and waits for room; cancelled, it must leave the credit as it
// was: exactly the 4 MiB minus the four messages, which 252 more take, eagerly.
TEST(BoundedUnexpectedShm, ACancelledSendGivesItsCreditBack) {
  constexpr std::size_t kCount = (16384 - 32) / 4;  // each frame 16 KiB with its header
  constexpr std::size_t kBytes = kCount * 4;
  constexpr int kAfter = static_cast<int>(((std::size_t{4} << 20) - 4 * kBytes) / kBytes);
  static_assert(kAfter == 252);
  auto pair = messenger_pair(true, [](p2p::MessengerOptions& o) { o.pipe_bytes = 64 << 10; });
  const auto first = numbered_messages(5, kCount);
  std::vector<p2p::OpId> ids;
  for (const auto& v : first) ids.push_back(pair->sender->post_send(v.data(), kBytes, 1, 5));
  std::vector<p2p::Completion> done;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (done.size() < 4 && std::chrono::steady_clock::now() < deadline) {
    pair->sender->progress(std::chrono::milliseconds(1), done);
  }
  ASSERT_EQ(done.size(), 4u) << "four frames fill the ring";
  ASSERT_TRUE(pair->sender->cancel(ids.back())) << "the fifth has not written a byte";
  const auto after = numbered_messages(kAfter, kCount);
  auto sending = send_all_on_a_thread(*pair, after);
  while (pair->receiver->stats().unexpected_messages < 4 + kAfter &&
         std::chrono::steady_clock::now() < deadline) {
    std::vector<p2p::Completion> ignored;
    pair->receiver->progress(std::chrono::milliseconds(10), ignored);
  }
  sending.get();
  EXPECT_EQ(pair->receiver->stats().unexpected_messages, std::size_t{4 + kAfter});
  EXPECT_EQ(pair->sender->stats().rendezvous_sends, 0u)
      << "the credit the cancelled send was charged did not come back";
}

// A sender whose Context goes away after it announced a message (its payload never sent):
// the receive that matches the announcement fails, naming the rank, the tag and the bytes,
// instead of waiting for a payload that will not come.
TEST_P(BoundedUnexpected, SenderLeavingDuringARendezvousIsReported) {
  auto pair = messenger_pair(GetParam() == TransportKind::shm);
  std::vector<float> payload = filled(256 * 1024, 1.0f);  // 1 MiB: announced
  pair->sender->post_send(payload.data(), payload.size() * 4, 1, 3);
  p2p::Messenger& receiver = *pair->receiver;
  std::vector<p2p::Completion> done;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (receiver.stats().unexpected_messages == 0 && std::chrono::steady_clock::now() < deadline) {
    pair->sender->progress(std::chrono::milliseconds(1), done);
    receiver.progress(std::chrono::milliseconds(1), done);
  }
  ASSERT_EQ(receiver.stats().unexpected_messages, 1u);
  EXPECT_EQ(pair->sender->stats().rendezvous_sends, 1u);
  pair->sender.reset();  // leaves in order, the payload unsent
  std::vector<float> got(payload.size());
  const auto id = receiver.post_recv(got.data(), got.size() * 4, 4, 0, 3);
  done.clear();
  while (done.empty() && std::chrono::steady_clock::now() < deadline) {
    receiver.progress(std::chrono::milliseconds(10), done);
  }
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, id);
  ASSERT_TRUE(done[0].error);
  EXPECT_EQ(done[0].error->kind(), ErrorKind::peer_failure);
  const std::string message = done[0].error->what();
  EXPECT_TRUE(contains(message, "rank 1: point-to-point: recv of up to 1048576 bytes from rank 0 "
                                "(tag 3): rank 0 has left (its Context was destroyed) without "
                                "sending the 1048576 bytes (tag 3) it announced"))
      << message;
}

// A sender waiting to be cleared to send is told when its receiver does not post the
// receive within the operation timeout, with why the message waited.
TEST_P(BoundedUnexpected, AnnouncedSendTimesOutNamingPeerTagAndBytes) {
  auto pair = messenger_pair(GetParam() == TransportKind::shm,
                             [](p2p::MessengerOptions& o) { o.op_timeout = 500ms; });
  std::vector<float> payload = filled(256 * 1024, 1.0f);
  const auto id = pair->sender->post_send(payload.data(), payload.size() * 4, 1, 3);
  const auto done = sender_outcome(*pair);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, id);
  ASSERT_TRUE(done[0].error);
  const std::string message = done[0].error->what();
  EXPECT_TRUE(contains(message, "rank 0: point-to-point: send of 1048576 bytes (tag 3) to rank "
                                "1: no receive for it after 0.5 s (larger than "
                                "RINGFUSE_P2P_EAGER_BYTES"))
      << message;
}

// A small message beyond the receiver's room for unexpected data (none here) waits for its
// receive too, and its timeout says that the receiver's bound is why.
TEST_P(BoundedUnexpected, SendWaitingForCreditSaysSoWhenItTimesOut) {
  auto pair = messenger_pair(GetParam() == TransportKind::shm, [](p2p::MessengerOptions& o) {
    o.op_timeout = 500ms;
    o.unexpected_bytes = 0;
  });
  const float value = 1.0f;
  const auto id = pair->sender->post_send(&value, sizeof(value), 1, 4);
  const auto done = sender_outcome(*pair);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, id);
  ASSERT_TRUE(done[0].error);
  const std::string message = done[0].error->what();
  EXPECT_TRUE(contains(message, "rank 0: point-to-point: send of 4 bytes (tag 4) to rank 1: no "
                                "receive for it after 0.5 s (the receiver holds "
                                "RINGFUSE_P2P_UNEXPECTED_BYTES of this rank's messages already"))
      << message;
  EXPECT_EQ(pair->receiver->stats().unexpected_bytes, 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, BoundedUnexpected,
                         ::testing::Values(TransportKind::tcp, TransportKind::shm),
                         [](const auto& info) {
                           return std::string(info.param == TransportKind::tcp ? "tcp" : "shm");
                         });

INSTANTIATE_TEST_SUITE_P(Transports, PointToPoint,
                         ::testing::Values(TransportKind::tcp, TransportKind::shm),
                         [](const auto& info) {
                           return std::string(info.param == TransportKind::tcp ? "tcp" : "shm");
                         });

}  // namespace
}  // namespace ringfuse
