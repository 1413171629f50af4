// The shared-memory transport's pieces: the SPSC ring (wrap-around, odd sizes, a producer
// and a consumer thread), the segment owner (no name left behind, on-demand reservation), and
// ShmTransport itself with ranks as threads of one process (ring exchange, N=2 with the same
// peer both ways, reduction straight out of the ring, peer loss, the shared window and the
// all-reduce over it).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "rendezvous/tcp_store.hpp"
#include "ring_exchange.hpp"
#include "ringfuse/error.hpp"
#include "algo/algorithms.hpp"
#include "transport/hello.hpp"
#include "transport/shm_ring.hpp"
#include "transport/shm_segment.hpp"
#include "transport/shm_transport.hpp"
#include "transport/socket.hpp"

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

TEST(ShmSegment, OnDemandSegmentReservesAsItGrowsAndKeepsWhatWasWritten) {
  const std::string name = shm::segment_name("unit-on-demand-" + std::to_string(::getpid()));
  constexpr std::size_t kBytes = std::size_t{16} << 20;
  auto owner = shm::Segment::create_on_demand(name, kBytes);
  auto reader = shm::Segment::open_on_demand(name, kBytes);
  owner.unlink();
  EXPECT_FALSE(std::filesystem::exists("/dev/shm" + name));
  owner.reserve(100);  // at least 1 MiB
  const auto first = pattern(std::size_t{1} << 20, 7);
  std::memcpy(owner.data(), first.data(), first.size());
  owner.reserve(std::size_t{5} << 20);
  owner.reserve(kBytes + 1);  // clamped to the segment
  const auto last = pattern(4096, 8);
  std::memcpy(owner.data() + kBytes - last.size(), last.data(), last.size());
  EXPECT_EQ(std::memcmp(reader.data(), first.data(), first.size()), 0);
  EXPECT_EQ(std::memcmp(reader.data() + kBytes - last.size(), last.data(), last.size()), 0);
}

// ---- ShmTransport with ranks as threads ----

struct World {
  /// `window_bytes`: each rank's ShmOptions::window_bytes (none when empty).
  explicit World(int size, std::size_t ring_bytes = 1 << 16,
                 std::vector<std::size_t> window_bytes = {})
      : size(size) {
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
        if (!window_bytes.empty()) options.window_bytes = window_bytes[rank];
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

// ---- The shared window ----

std::vector<float> window_input(int rank, std::size_t count) {
  std::vector<float> values(count);
  for (std::size_t i = 0; i < count; ++i) values[i] = static_cast<float>((rank + 1) * (i % 13 + 1));
  return values;
}

TEST(ShmTransport, WindowAllreduceOfOddCountsAtAnOffset) {
  for (const int size : {2, 3, 5, 8}) {
    World world(size, 1 << 16, std::vector<std::size_t>(size, std::size_t{4} << 20));
    world.run([&](int rank, Transport& t) {
      SharedWindow* window = t.shared_window();
      ASSERT_NE(window, nullptr);
      EXPECT_EQ(window->capacity(), std::size_t{4} << 20);
      for (const std::size_t count : {std::size_t{1}, std::size_t{7}, std::size_t{1009},
                                      std::size_t{300'001}}) {
        for (const std::size_t offset : {std::size_t{0}, std::size_t{4096 + 8}}) {
          // sum, then max of the sums, then avg: each result feeds the next call.
          auto* data = reinterpret_cast<float*>(window->reserve(offset + count * 4) + offset);
          const auto input = window_input(rank, count);
          std::memcpy(data, input.data(), count * sizeof(float));
          const auto buffer = [&](ringfuse::ReduceOp op) {
            return ringfuse::algo::ReduceBuffer{reinterpret_cast<std::byte*>(data), count,
                                                ringfuse::DataType::f32, op};
          };
          ringfuse::algo::window_allreduce(*window, offset, buffer(ringfuse::ReduceOp::sum));
          const float ranks_sum = static_cast<float>(size * (size + 1) / 2);
          for (std::size_t i = 0; i < count; i += 1 + count / 101) {
            ASSERT_EQ(data[i], ranks_sum * static_cast<float>(i % 13 + 1))
                << "size " << size << " rank " << rank << " count " << count << " at " << i;
          }
          ASSERT_EQ(data[count - 1], ranks_sum * static_cast<float>((count - 1) % 13 + 1));
          data[0] += static_cast<float>(rank);  // only the max keeps the last rank's
          ringfuse::algo::window_allreduce(*window, offset, buffer(ringfuse::ReduceOp::max));
          ASSERT_EQ(data[0], ranks_sum + static_cast<float>(size - 1));
          // Every rank holds the same values now, so their average is each of them.
          const std::vector<float> agreed(data, data + count);
          ringfuse::algo::window_allreduce(*window, offset, buffer(ringfuse::ReduceOp::avg));
          ASSERT_EQ(data[count - 1], agreed[count - 1]);
          ASSERT_EQ(data[count / 2], agreed[count / 2]);
        }
      }
    });
  }
}

TEST(ShmTransport, WindowOnlyWhenEveryRankAskedForOneOfTheSameSize) {
  const std::size_t mib = std::size_t{1} << 20;
  for (const auto& sizes : {std::vector<std::size_t>{mib, 0, mib},
                            std::vector<std::size_t>{mib, 2 * mib, mib}}) {
    World world(3, 1 << 16, sizes);
    for (const auto& transport : world.transports) EXPECT_EQ(transport->shared_window(), nullptr);
  }
  World world(3, 1 << 16, {mib, mib, mib});
  for (const auto& transport : world.transports) EXPECT_NE(transport->shared_window(), nullptr);
  // Nothing of the windows is left in /dev/shm once every rank has mapped them.
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    EXPECT_EQ(entry.path().filename().string().find("unit_" + std::to_string(::getpid())),
              std::string::npos)
        << entry.path();
  }
}

TEST(ShmTransport, WindowBarrierFailsNamingALostPeer) {
  World world(3, 1 << 16, {1 << 20, 1 << 20, 1 << 20});
  world.transports[2].reset();  // its liveness connections close
  const auto start = std::chrono::steady_clock::now();
  try {
    world.transports[0]->shared_window()->barrier();
    FAIL() << "expected an error";
  } catch (const ringfuse::Error& e) {
    // Rank 1 has not arrived either, but only rank 2 is gone.
    EXPECT_EQ(e.kind(), ringfuse::ErrorKind::peer_failure);
    EXPECT_EQ(e.peer(), 2) << e.what();
    EXPECT_NE(std::string(e.what()).find("lost rank 2"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

// ---- Set-up and signals (issue #22.2) ----

void on_sighup(int) {}

TEST(ShmTransport, SetUpLeavesTheSignalDispositionsAsItFoundThem) {
  // During set-up SIGTERM/SIGINT/SIGHUP unlink the rank's names before killing it
  // (tests/launcher/shm_setup_leak_test.cpp); afterwards the program's choices stand.
  struct sigaction own {};
  own.sa_handler = on_sighup;
  ::sigemptyset(&own.sa_mask);
  struct sigaction previous {};
  ASSERT_EQ(::sigaction(SIGHUP, &own, &previous), 0);
  {
    World world(3);
  }
  struct sigaction now {};
  ASSERT_EQ(::sigaction(SIGTERM, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
  ASSERT_EQ(::sigaction(SIGHUP, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, &on_sighup);
  ::sigaction(SIGHUP, &previous, nullptr);
}

// ---- Every liveness connection proves the job secret (issue #22.1) ----

std::uint32_t job_hash(const std::string& job_id) {  // FNV-1a, as the hellos carry it
  std::uint32_t hash = 2166136261u;
  for (unsigned char c : job_id) {
    hash ^= c;
    hash *= 16777619u;
  }
  return hash;
}

/// Reads until the peer closes or `limit` passes; returns the bytes read, or nullopt when the
/// connection was still open at `limit`.
std::optional<std::string> read_until_closed(int fd, std::chrono::seconds limit) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    char byte = 0;
    try {
      if (!read_all(fd, &byte, 1, std::min(deadline, std::chrono::steady_clock::now() + 100ms))) {
        continue;
      }
    } catch (const std::exception&) {
      return got;  // EOF or reset: the rank closed it
    }
    got.push_back(byte);
  }
  return std::nullopt;
}

TEST(ShmTransport, StrayLivenessClientWithoutTheSecretIsRefusedAndTheJobIsUnaffected) {
  // A local stranger knows the job id (segment names in /dev/shm carry it) and finds a rank's
  // liveness port; it claims to be rank 2 before the real rank 2 arrives. It must not take
  // rank 2's place: the real rank 2 connects and the world works.
  constexpr int kSize = 3;
  constexpr char kSecret[] = "the-job-secret";
  ringfuse::rendezvous::TcpStoreServer server("127.0.0.1", 0, kSecret);
  ShmOptions options;
  options.mesh.key_prefix = "stray/" + std::to_string(::getpid()) + "/";
  options.mesh.job_id = "stray-liveness-test";
  options.mesh.secret = kSecret;
  options.mesh.connect_timeout = 30s;
  options.mesh.op_timeout = 10s;
  options.ring_bytes = 1 << 16;
  std::vector<std::unique_ptr<ringfuse::rendezvous::TcpStoreClient>> stores;
  for (int rank = 0; rank < kSize; ++rank) {
    stores.push_back(std::make_unique<ringfuse::rendezvous::TcpStoreClient>(
        "127.0.0.1", server.port(), 10s, kSecret));
  }
  const auto start = [&](int rank) {
    return std::async(std::launch::async, [&, rank] {
      return std::make_unique<ShmTransport>(rank, kSize, *stores[rank], options);
    });
  };
  auto rank0 = start(0);
  auto rank1 = start(1);

  ringfuse::rendezvous::TcpStoreClient spy("127.0.0.1", server.port(), 10s, kSecret);
  const std::string address = spy.get(options.mesh.key_prefix + "shm/live/0", 20s);
  const auto connect = [&] {
    const auto colon = address.rfind(':');
    return connect_with_retry(address.substr(0, colon),
                              static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))),
                              std::chrono::steady_clock::now() + 5s);
  };
  // The hello the liveness connections used to accept: magic "RFLV", rank, job hash, size.
  const std::array<std::uint32_t, 4> liveness_hello{0x52464c56, 2, job_hash(options.mesh.job_id),
                                                    kSize};
  Socket stray = connect();
  ASSERT_TRUE(write_all(stray.fd(), liveness_hello.data(), sizeof(liveness_hello),
                        std::chrono::steady_clock::now() + 5s));
  // A second stranger speaks the authenticated hello but cannot prove the secret.
  struct {
    std::uint32_t magic, version, rank, job_hash;
    std::array<char, 16> nonce;
  } mesh_hello{0x52465345, ringfuse::transport::kHelloVersion, 2, job_hash(options.mesh.job_id),
               {}};
  Socket forger = connect();
  ASSERT_TRUE(write_all(forger.fd(), &mesh_hello, sizeof(mesh_hello),
                        std::chrono::steady_clock::now() + 5s));
  auto forger_done = std::async(std::launch::async, [&] {
    std::array<char, sizeof(mesh_hello) + 32> reply{};
    try {
      if (read_all(forger.fd(), reply.data(), reply.size(), std::chrono::steady_clock::now() + 20s)) {
        const std::array<char, 32> forged{};
        write_all(forger.fd(), forged.data(), forged.size(), std::chrono::steady_clock::now() + 5s);
      }
    } catch (const std::exception&) {
      // Refused before the proof: fine.
    }
    return read_until_closed(forger.fd(), 20s);
  });

  auto rank2 = start(2);
  std::vector<std::unique_ptr<ShmTransport>> transports;
  for (auto* pending : {&rank0, &rank1, &rank2}) {
    ASSERT_EQ(pending->wait_for(40s), std::future_status::ready) << "set-up did not finish";
    try {
      transports.push_back(pending->get());
    } catch (const std::exception& e) {
      FAIL() << "rank " << transports.size() << " failed to set up: " << e.what();
    }
  }
  // Neither stranger holds a liveness connection of the job.
  const auto stray_saw = read_until_closed(stray.fd(), 10s);
  ASSERT_TRUE(stray_saw.has_value()) << "the stray liveness client is still connected";
  EXPECT_EQ(*stray_saw, "") << "the stray liveness client was answered as a peer";
  const auto forger_saw = forger_done.get();
  EXPECT_TRUE(forger_saw.has_value()) << "the forging client is still connected";

  // The world works: a ring exchange, and the liveness connections tell a real loss.
  ASSERT_NO_FATAL_FAILURE(ringfuse::test_support::expect_ring_exchange(transports));
  transports[2].reset();
  int sink = 0;
  EXPECT_THROW(transports[0]->recv(2, &sink, sizeof(sink)), ringfuse::Error);
}

}  // namespace
