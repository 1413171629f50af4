// The shared-memory transport's pieces: the SPSC ring (wrap-around, odd sizes, a producer
// and a consumer thread), the segment owner (no name left behind), and ShmTransport itself
// with ranks as threads of one process (ring exchange, N=2 with the same peer both ways,
// reduction straight out of the ring, peer loss).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"
#include "transport/shm_ring.hpp"
#include "transport/shm_segment.hpp"
#include "transport/shm_transport.hpp"

namespace {

using namespace ringfuse::transport;
using namespace std::chrono_literals;

struct LocalRing {
  explicit LocalRing(std::size_t capacity) : capacity(capacity), data(capacity) {}
  std::size_t capacity;
  shm::RingControl control{};
  std::vector<std::byte> data;
  shm::RingWriter writer() { return {&control, data.data(), capacity}; }
  shm::RingReader reader() { return {&control, data.data(), capacity}; }
};

std::vector<std::byte> pattern(std::size_t bytes, unsigned seed) {
  std::vector<std::byte> out(bytes);
  std::mt19937 gen(seed);
  for (auto& b : out) b = static_cast<std::byte>(gen());
  return out;
}

// Reads exactly `bytes` (in whatever pieces arrive) into `out`.
void drain(shm::RingReader& reader, std::byte* out, std::size_t bytes, std::size_t max_piece) {
  std::size_t got = 0;
  while (got < bytes) {
    const auto piece = reader.peek(std::min(max_piece, bytes - got));
    std::memcpy(out + got, piece.data(), piece.size());
    reader.consume(piece.size());
    got += piece.size();
  }
}

TEST(ShmRing, FillsToCapacityThenRefuses) {
  LocalRing ring(4096);
  auto writer = ring.writer();
  auto reader = ring.reader();
  const auto data = pattern(5000, 1);
  writer.begin_message();
  EXPECT_EQ(writer.write(data.data(), data.size()), 4096u);
  EXPECT_EQ(writer.write(data.data() + 4096, 904), 0u);
  EXPECT_FALSE(writer.has_space());
  reader.begin_message();
  EXPECT_TRUE(reader.has_data(4096));
  EXPECT_FALSE(reader.has_data(4097));
  std::vector<std::byte> out(5000);
  drain(reader, out.data(), 1000, 1000);
  EXPECT_EQ(writer.write(data.data() + 4096, 904), 904u);
  drain(reader, out.data() + 1000, 4000, 4096);
  EXPECT_EQ(out, data);
  EXPECT_FALSE(reader.has_data());
}

TEST(ShmRing, OddSizedMessagesWrapAroundAndStayAligned) {
  LocalRing ring(4096);
  auto writer = ring.writer();
  auto reader = ring.reader();
  // Odd sizes and 1-byte messages push the stream across the wrap many times; each message
  // must start aligned (so elements never straddle the wrap) and arrive intact.
  std::mt19937 gen(7);
  for (int message = 0; message < 500; ++message) {
    const std::size_t bytes = message % 5 == 0 ? 1 : 1 + gen() % 3001;
    const auto data = pattern(bytes, static_cast<unsigned>(message));
    std::vector<std::byte> out(bytes);
    writer.begin_message();
    reader.begin_message();
    std::size_t sent = 0;
    std::size_t got = 0;
    bool first = true;
    while (got < bytes) {
      if (sent < bytes) sent += writer.write(data.data() + sent, std::min<std::size_t>(bytes - sent, 777));
      const auto piece = reader.peek(bytes - got);
      if (first && !piece.empty()) {
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(piece.data()) % shm::kMessageAlign,
                  reinterpret_cast<std::uintptr_t>(ring.data.data()) % shm::kMessageAlign);
        first = false;
      }
      std::memcpy(out.data() + got, piece.data(), piece.size());
      reader.consume(piece.size());
      got += piece.size();
    }
    ASSERT_EQ(out, data) << "message " << message << " of " << bytes << " bytes";
  }
}

TEST(ShmRing, ProducerAndConsumerThreads) {
  LocalRing ring(1 << 14);
  const auto data = pattern((std::size_t{8} << 20) + 13, 3);
  std::vector<std::byte> out(data.size());
  std::thread producer([&] {
    auto writer = ring.writer();
    writer.begin_message();
    std::size_t sent = 0;
    while (sent < data.size()) {
      const std::size_t n = writer.write(data.data() + sent, std::min<std::size_t>(data.size() - sent, 3000));
      if (n == 0) std::this_thread::yield();
      sent += n;
    }
  });
  auto reader = ring.reader();
  reader.begin_message();
  std::size_t got = 0;
  while (got < out.size()) {
    const auto piece = reader.peek(out.size() - got);
    if (piece.empty()) {
      std::this_thread::yield();
      continue;
    }
    std::memcpy(out.data() + got, piece.data(), piece.size());
    reader.consume(piece.size());
    got += piece.size();
  }
  producer.join();
  EXPECT_EQ(out, data);
}

TEST(ShmRing, DoorbellWakesASleeper) {
  shm::Doorbell bell{};
  std::atomic<bool> flag{false};
  std::thread waker([&] {
    std::this_thread::sleep_for(20ms);
    flag.store(true);
    shm::ring(bell);
  });
  const auto start = std::chrono::steady_clock::now();
  while (!flag.load()) shm::sleep(bell, 5s, [&] { return flag.load(); });
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  waker.join();
}

std::string leftover(const std::string& name) {
  return std::filesystem::exists("/dev/shm" + name) ? name : std::string();
}

TEST(ShmSegment, CreateOpenUnlinkLeavesNothing) {
  const std::string name = shm::segment_name("unit/test/" + std::to_string(::getpid()));
  {
    auto created = shm::Segment::create(name, 1 << 16);
    auto opened = shm::Segment::open(name, 1 << 16);
    created.data()[100] = std::byte{42};
    EXPECT_EQ(opened.data()[100], std::byte{42});
    created.unlink();
    EXPECT_EQ(leftover(name), "");
    opened.data()[200] = std::byte{7};  // still mapped after the name is gone
    EXPECT_EQ(created.data()[200], std::byte{7});
    EXPECT_THROW(shm::Segment::open(name, 1 << 16), std::system_error);
  }
  { auto abandoned = shm::Segment::create(name, 4096); }  // never unlinked explicitly
  EXPECT_EQ(leftover(name), "");
}

TEST(ShmSegment, NamesAreSafe) {
  const auto name = shm::segment_name("ringfuse/job with spaces/0/main/r3");
  EXPECT_EQ(name.front(), '/');
  EXPECT_EQ(name.find('/', 1), std::string::npos);
  EXPECT_EQ(name.find(' '), std::string::npos);
  EXPECT_LE(shm::segment_name(std::string(1000, 'x')).size(), 200u);
  EXPECT_NE(shm::segment_name(std::string(1000, 'x')), shm::segment_name(std::string(1001, 'x')));
}

// ---- ShmTransport with ranks as threads ----

struct World {
  explicit World(int size, std::size_t ring_bytes = 1 << 16) : size(size) {
    server = std::make_unique<ringfuse::rendezvous::TcpStoreServer>("127.0.0.1", 0);
    transports.resize(size);
    std::vector<std::thread> threads;
    for (int rank = 0; rank < size; ++rank) {
      stores.push_back(std::make_unique<ringfuse::rendezvous::TcpStoreClient>(
          "127.0.0.1", server->port(), 10s));
    }
    for (int rank = 0; rank < size; ++rank) {
      threads.emplace_back([&, rank] {
        ShmOptions options;
        options.mesh.key_prefix = "unit/" + std::to_string(::getpid()) + "/";
        options.mesh.job_id = "unit";
        options.mesh.connect_timeout = 10s;
        options.mesh.op_timeout = 10s;
        options.ring_bytes = ring_bytes;
        transports[rank] = std::make_unique<ShmTransport>(rank, size, *stores[rank], options);
      });
    }
    for (auto& t : threads) t.join();
  }
  template <class Body>
  void run(Body body) {
    std::vector<std::thread> threads;
    for (int rank = 0; rank < size; ++rank) threads.emplace_back([&, rank] { body(rank, *transports[rank]); });
    for (auto& t : threads) t.join();
  }
  int size;
  std::unique_ptr<ringfuse::rendezvous::TcpStoreServer> server;
  std::vector<std::unique_ptr<ringfuse::rendezvous::TcpStoreClient>> stores;
  std::vector<std::unique_ptr<ShmTransport>> transports;
};

TEST(ShmTransport, RingExchangeBiggerThanTheRingDoesNotDeadlock) {
  for (int size : {2, 3, 5}) {
    World world(size);
    const std::size_t bytes = (std::size_t{1} << 20) + 3;  // 16 rings' worth, odd
    world.run([&](int rank, Transport& t) {
      const int right = (rank + 1) % size;
      const int left = (rank + size - 1) % size;
      for (int round = 0; round < 3; ++round) {
        const auto out = pattern(bytes, static_cast<unsigned>(rank * 10 + round));
        std::vector<std::byte> in(bytes);
        t.send_recv(right, out.data(), bytes, left, in.data(), bytes);
        EXPECT_EQ(in, pattern(bytes, static_cast<unsigned>(left * 10 + round))) << "size " << size;
        std::byte token{1};
        t.send_recv(right, &token, 1, left, &token, 1);  // tiny messages between big ones
      }
    });
  }
}

TEST(ShmTransport, ReducesStraightOutOfTheRing) {
  World world(2);
  const std::size_t count = 300'001;
  world.run([&](int rank, Transport& t) {
    std::vector<float> mine(count), theirs(count);
    std::iota(mine.begin(), mine.end(), static_cast<float>(rank));
    const int peer = 1 - rank;
    bool staged = false;
    // A send with nothing to reduce, then the reducing exchange proper.
    t.send_recv_reduce(peer, mine.data(), 16 * sizeof(float), peer, nullptr, 0,
                       ringfuse::DataType::f32, ringfuse::ReduceOp::sum,
                       [&](std::size_t) { staged = true; return nullptr; });
    std::vector<float> first(16);
    t.recv(peer, first.data(), 16 * sizeof(float));
    EXPECT_EQ(first[5], 5.0f + static_cast<float>(peer));
    std::vector<float> dst(count, 1.0f);
    t.send_recv_reduce(peer, mine.data(), count * sizeof(float), peer, dst.data(), count,
                       ringfuse::DataType::f32, ringfuse::ReduceOp::sum,
                       [&](std::size_t) { staged = true; return nullptr; });
    EXPECT_FALSE(staged);
    for (std::size_t i = 0; i < count; i += 9973) {
      ASSERT_EQ(dst[i], 1.0f + static_cast<float>(i + peer)) << i;
    }
  });
}

TEST(ShmTransport, LostPeerFailsNamingIt) {
  World world(2);
  world.transports[1].reset();  // rank 1 goes away: its liveness connection closes
  std::vector<std::byte> buf(1 << 20);
  const auto start = std::chrono::steady_clock::now();
  try {
    world.transports[0]->recv(1, buf.data(), buf.size());
    FAIL() << "expected an error";
  } catch (const ringfuse::Error& e) {
    EXPECT_EQ(e.kind(), ringfuse::ErrorKind::peer_failure);
    EXPECT_EQ(e.peer(), 1);
    EXPECT_NE(std::string(e.what()).find("lost rank 1"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

}  // namespace
