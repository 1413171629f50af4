// Unit tests of the TCP rendezvous store: server and clients in one process, over loopback.
// Every wait in here has a short deadline, so a broken store fails a test instead of hanging it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "expect_error.hpp"
#include "increments.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"
#include "store.pb.h"

namespace ringfuse::rendezvous {
namespace {

using namespace std::chrono_literals;

constexpr auto kConnect = 5000ms;
constexpr auto kLong = 10000ms;  // a deadline the test expects never to reach

// A raw POSIX socket, for sending bytes no well-behaved client would.
class RawSocket {
 public:
  explicit RawSocket(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    EXPECT_GE(fd_, 0);
    timeval tv{5, 0};  // a read the server should answer with EOF must not block the test
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  ~RawSocket() { ::close(fd_); }
  int fd() const { return fd_; }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  void send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  /// True when the server closed the connection (EOF or reset) within the receive timeout.
  bool closed_by_peer() {
    char buffer[64];
    for (;;) {
      const auto n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  int fd_;
};

// A port with a bound but not listening socket: connects to it are refused for as long as
// this object lives, and no other test can grab it meanwhile.
class ClosedPort {
 public:
  ClosedPort() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~ClosedPort() { ::close(fd_); }
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_;
  std::uint16_t port_ = 0;
};

class StoreTest : public testing::Test {
 protected:
  std::unique_ptr<TcpStoreClient> connect() {
    return std::make_unique<TcpStoreClient>("127.0.0.1", server_->port(), kConnect);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }

  // `clients` clients, each on a thread and a connection of its own, publish their address
  // under `key_prefix` + their number, wait for all the others' and read them back, as ranks
  // do at start-up. Returns how many saw every address and an arrival count in range.
  int rendezvous(int clients, const std::string& key_prefix) {
    std::vector<std::string> keys;
    for (int i = 0; i < clients; ++i) keys.push_back(key_prefix + std::to_string(i));
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([&, i] {
        try {
          auto client = connect();
          client->set(keys[i], "addr-" + std::to_string(i));
          client->wait(keys, kLong);
          for (int j = 0; j < clients; ++j) {
            if (client->get(keys[j], kLong) != "addr-" + std::to_string(j)) return;
          }
          if (client->add(key_prefix + "arrived", 1) <= clients) ++ok;
        } catch (const Error& e) {
          ADD_FAILURE() << "client " << i << ": " << e.what();
        }
      });
    }
    for (auto& thread : threads) thread.join();
    return ok.load();
  }

  std::unique_ptr<TcpStoreServer> server_ = std::make_unique<TcpStoreServer>("127.0.0.1", 0);
};

using test_support::contains;
using test_support::expect_error;
using test_support::expect_every_increment_once;

TEST_F(StoreTest, ServerReportsItsAddress) {
  EXPECT_NE(server_->port(), 0);
  EXPECT_EQ(server_->host(), "127.0.0.1");
}

TEST_F(StoreTest, SetThenGet) {
  auto client = connect();
  client->set("addr/0", "10.0.0.1:5000");
  EXPECT_EQ(client->get("addr/0", kLong), "10.0.0.1:5000");
  client->set("addr/0", "10.0.0.2:6000");  // replaces
  EXPECT_EQ(client->get("addr/0", kLong), "10.0.0.2:6000");
  EXPECT_EQ(client->local_address(), "127.0.0.1");
}

TEST_F(StoreTest, BinaryValuesAndKeysRoundTrip) {
  auto client = connect();
  const std::string value("\0\xff\x01 binary\n", 11);
  const std::string key("k\xfe\x80", 3);  // not UTF-8: keys are bytes on the wire
  client->set(key, value);
  EXPECT_EQ(client->get(key, kLong), value);
  client->set("empty", "");
  EXPECT_EQ(client->get("empty", kLong), "");
  EXPECT_TRUE(client->check({"empty"}));
}

TEST_F(StoreTest, GetWaitsForLaterSetFromAnotherClient) {
  auto reader = connect();
  auto writer = connect();
  auto value = std::async(std::launch::async, [&] { return reader->get("late", kLong); });
  std::this_thread::sleep_for(100ms);  // let the get park on the server first
  writer->set("late", "here");
  ASSERT_EQ(value.wait_for(kLong), std::future_status::ready);
  EXPECT_EQ(value.get(), "here");
}

TEST_F(StoreTest, WaitReturnsOnceEveryKeyExists) {
  auto waiter = connect();
  auto writer = connect();
  auto done = std::async(std::launch::async,
                         [&] { waiter->wait({"a", "b", "c", "a"}, kLong); });
  writer->set("a", "1");
  writer->add("b", 5);  // add creates a key too, and must wake waiters
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(done.wait_for(0ms), std::future_status::timeout);
  writer->set("c", "3");
  ASSERT_EQ(done.wait_for(kLong), std::future_status::ready);
  done.get();
}

TEST_F(StoreTest, WaitTimeoutNamesMissingKeysAndAddress) {
  auto client = connect();
  client->set("addr/0", "x");
  const auto message = expect_error(ErrorKind::timeout, [&] {
    client->wait({"addr/0", "addr/1", "addr/3"}, 200ms);
  });
  EXPECT_TRUE(contains(message, address())) << message;
  EXPECT_TRUE(contains(message, "[addr/1, addr/3]")) << message;
  EXPECT_TRUE(contains(message, "0.2 s")) << message;
  // The connection stays usable after a timeout reply.
  EXPECT_EQ(client->get("addr/0", kLong), "x");
}

TEST_F(StoreTest, GetTimeoutNamesTheKey) {
  auto client = connect();
  const auto message =
      expect_error(ErrorKind::timeout, [&] { client->get("addr/7", 100ms); });
  EXPECT_TRUE(contains(message, "[addr/7]")) << message;
  EXPECT_TRUE(contains(message, address())) << message;
  // Zero timeout: answered at once.
  expect_error(ErrorKind::timeout, [&] { client->get("addr/7", 0ms); });
}

TEST_F(StoreTest, HugeTimeoutIsClampedNotOverflowed) {
  auto client = connect();
  client->set("k", "v");
  EXPECT_EQ(client->get("k", std::chrono::milliseconds::max()), "v");
  client->wait({"k"}, std::chrono::milliseconds::max());
}

TEST_F(StoreTest, AddCountsAndRejectsNonIntegers) {
  auto client = connect();
  EXPECT_EQ(client->add("counter", 1), 1);
  EXPECT_EQ(client->add("counter", 41), 42);
  EXPECT_EQ(client->add("counter", -50), -8);
  EXPECT_EQ(client->get("counter", kLong), "-8");
  client->set("text", "not a number");
  const auto message =
      expect_error(ErrorKind::invalid_argument, [&] { client->add("text", 1); });
  EXPECT_TRUE(contains(message, "text")) << message;
  EXPECT_EQ(client->add("counter", 0), -8);  // still usable
}

TEST_F(StoreTest, AddIsAtomicAcrossClientsAndThreads) {
  constexpr int kThreads = 8;
  constexpr int kAdds = 50;
  auto shared = connect();  // also exercise one client used from several threads
  std::vector<std::vector<std::int64_t>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto own = connect();
      for (int i = 0; i < kAdds; ++i) {
        auto& client = (i % 2 == 0) ? *own : *shared;
        seen[t].push_back(client.add("n", 1));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  expect_every_increment_once(seen, kThreads * kAdds);
}

TEST_F(StoreTest, RemoveAndCheck) {
  auto client = connect();
  EXPECT_FALSE(client->check({"x"}));
  EXPECT_TRUE(client->check({}));
  client->set("x", "1");
  client->set("y", "2");
  EXPECT_TRUE(client->check({"x", "y"}));
  EXPECT_FALSE(client->check({"x", "y", "z"}));
  EXPECT_TRUE(client->remove("x"));
  EXPECT_FALSE(client->remove("x"));
  EXPECT_FALSE(client->check({"x"}));
  expect_error(ErrorKind::timeout, [&] { client->get("x", 50ms); });
}

TEST_F(StoreTest, ServerDestroyedWhileClientWaits) {
  auto client = connect();
  auto result = std::async(std::launch::async, [&] {
    return expect_error(ErrorKind::peer_failure, [&] { client->get("never", 60s); });
  });
  std::this_thread::sleep_for(100ms);
  server_.reset();  // must not hang although a waiter is parked
  ASSERT_EQ(result.wait_for(kLong), std::future_status::ready) << "client hung";
  const auto message = result.get();
  EXPECT_TRUE(contains(message, "127.0.0.1:")) << message;
  // Later calls fail at once with the same kind.
  expect_error(ErrorKind::peer_failure, [&] { client->set("k", "v"); });
}

TEST_F(StoreTest, CallAfterServerGoneFailsFast) {
  auto client = connect();
  client->set("k", "v");
  server_.reset();
  auto result = std::async(std::launch::async, [&] {
    expect_error(ErrorKind::peer_failure, [&] { client->get("k", kLong); });
  });
  ASSERT_EQ(result.wait_for(kLong), std::future_status::ready) << "client hung";
}

TEST(StoreConnectTest, ConnectTimeoutNamesAddress) {
  ClosedPort closed;
  const auto message = expect_error(ErrorKind::timeout, [&] {
    TcpStoreClient client("127.0.0.1", closed.port(), 300ms);
  });
  EXPECT_TRUE(contains(message, "127.0.0.1:" + std::to_string(closed.port()))) << message;
  EXPECT_TRUE(contains(message, "refused")) << message;
}

TEST(StoreConnectTest, ClientRetriesUntilServerStarts) {
  std::uint16_t port = 0;
  {
    ClosedPort probe;  // a port that was free a moment ago
    port = probe.port();
  }
  auto client = std::async(std::launch::async, [&] {
    return std::make_unique<TcpStoreClient>("127.0.0.1", port, kLong);
  });
  std::this_thread::sleep_for(200ms);
  TcpStoreServer server("127.0.0.1", port);
  ASSERT_EQ(client.wait_for(kLong), std::future_status::ready);
  auto connected = client.get();
  connected->set("k", "v");
  EXPECT_EQ(connected->get("k", kLong), "v");
}

TEST(StoreBindTest, BindFailureIsSystemErrorNamingAddress) {
  TcpStoreServer first("127.0.0.1", 0);
  const auto message = expect_error(ErrorKind::system, [&] {
    TcpStoreServer second("127.0.0.1", first.port());
  });
  EXPECT_TRUE(contains(message, "127.0.0.1:" + std::to_string(first.port()))) << message;
}

TEST_F(StoreTest, GarbageFromOneConnectionDoesNotDisturbOthers) {
  auto good = connect();
  good->set("before", "1");
  auto waiting = std::async(std::launch::async, [&] { return good->get("after", kLong); });

  {
    RawSocket garbage(server_->port());
    garbage.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");  // "GET " reads as a ~1.2 GB length
    EXPECT_TRUE(garbage.closed_by_peer());
  }
  {
    RawSocket oversized(server_->port());
    oversized.send(std::string("\xff\xff\xff\xff", 4));
    EXPECT_TRUE(oversized.closed_by_peer());
  }
  {
    RawSocket unparsable(server_->port());
    unparsable.send(std::string("\x00\x00\x00\x04\xff\xff\xff\xff", 8));
    EXPECT_TRUE(unparsable.closed_by_peer());
  }
  {
    RawSocket empty(server_->port());  // a well-formed frame holding no operation
    empty.send(std::string("\x00\x00\x00\x00", 4));
    EXPECT_TRUE(empty.closed_by_peer());
  }
  {
    RawSocket truncated(server_->port());
    truncated.send(std::string("\x00\x00\x01\x00partial", 11));
  }  // closed mid-message

  auto other = connect();
  other->set("after", "2");
  ASSERT_EQ(waiting.wait_for(kLong), std::future_status::ready);
  EXPECT_EQ(waiting.get(), "2");
  EXPECT_EQ(good->get("before", kLong), "1");
  EXPECT_EQ(other->add("count", 3), 3);
}

TEST_F(StoreTest, ManyConcurrentClientsRendezvous) { EXPECT_EQ(rendezvous(16, "rank/"), 16); }

TEST_F(StoreTest, ClientLeavingWhileParkedIsCleanedUp) {
  {
    // A well-formed wait sent by hand, so the connection can close while the server holds it.
    wire::Request request;
    request.set_id(1);
    request.mutable_wait()->add_keys("gone");
    request.mutable_wait()->set_timeout_ms(60'000);
    const auto body = request.SerializeAsString();
    const auto size = static_cast<std::uint32_t>(body.size());
    std::string frame{static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                      static_cast<char>(size >> 8), static_cast<char>(size)};
    RawSocket leaving(server_->port());
    leaving.send(frame + body);
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(50ms);
  auto client = connect();
  client->set("gone", "1");  // must not answer on the closed connection or crash the server
  EXPECT_TRUE(client->check({"gone"}));
  // A parked waiter that times out leaves its connection usable.
  expect_error(ErrorKind::timeout, [&] { client->wait({"other"}, 50ms); });
  EXPECT_EQ(client->get("gone", kLong), "1");
}

// Keeps every line logged through spdlog while it is the default logger, so a test can count
// what the server wrote.
class CapturedLog {
 public:
  CapturedLog()
      : sink_(std::make_shared<Sink>()), previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink_));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  std::vector<std::string> lines() const { return sink_->lines(); }

 private:
  class Sink : public spdlog::sinks::base_sink<std::mutex> {
   public:
    std::vector<std::string> lines() {
      std::lock_guard lock(mutex_);
      return lines_;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& message) override {
      lines_.emplace_back(message.payload.data(), message.payload.size());
    }
    void flush_() override {}

   private:
    std::vector<std::string> lines_;
  };
  std::shared_ptr<Sink> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

// How many of `sockets` the server closes before `deadline` passes, waiting on all at once.
std::size_t count_closed_by_server(std::vector<std::unique_ptr<RawSocket>>& sockets,
                                   std::chrono::steady_clock::time_point deadline) {
  std::vector<bool> closed(sockets.size(), false);
  std::size_t count = 0;
  while (count < sockets.size()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    std::vector<pollfd> fds;
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < sockets.size(); ++i) {
      if (closed[i]) continue;
      fds.push_back({sockets[i]->fd(), POLLIN, 0});
      index.push_back(i);
    }
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) <= 0) continue;
    for (std::size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      char buffer[256];
      const auto n = ::recv(fds[k].fd, buffer, sizeof(buffer), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno == ECONNRESET) || (fds[k].revents & (POLLHUP | POLLERR))) {
        closed[index[k]] = true;
        ++count;
      }
    }
  }
  return count;
}

// Issue #22, item 5: 200 connections that never authenticate (some idle, some trickling part
// of a frame) must neither keep ranks from rendezvousing nor stay open: they are capped per
// address (the oldest dropped) and closed a few seconds after connecting.
TEST_F(StoreTest, IdleUnauthenticatedConnectionsAreCappedAndClosedWhileRanksRendezvous) {
  constexpr int kIdle = 200;
  std::vector<std::unique_ptr<RawSocket>> idle;
  for (int i = 0; i < kIdle; ++i) {
    idle.push_back(std::make_unique<RawSocket>(server_->port()));
    if (i % 20 == 0) idle.back()->send(std::string("\x00\x00", 2));  // half a header
  }
  const auto opened = std::chrono::steady_clock::now();

  EXPECT_EQ(rendezvous(8, "addr/"), 8);

  // Closed within the handshake deadline (5 s), with room for a loaded machine.
  const auto closed = count_closed_by_server(idle, opened + 15s);
  EXPECT_EQ(closed, idle.size()) << "unauthenticated connections left open by the server";
  // The authenticated clients of a job are not subject to that deadline.
  auto late = connect();
  late->set("k", "v");
  std::this_thread::sleep_for(6s);
  EXPECT_EQ(late->get("k", kLong), "v");
}

// Issue #22, item 5: 1,000 strangers sending garbage wrote a warning line each. The first few
// are logged; the rest are counted in one summary line per interval (10 s).
TEST(StoreWarningsTest, WarningsStrangersCauseAreRateLimited) {
  CapturedLog log;
  TcpStoreServer server("127.0.0.1", 0);
  constexpr int kStrangers = 1000;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kStrangers; ++i) {
    RawSocket garbage(server.port());
    garbage.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(garbage.closed_by_peer()) << "connection " << i;
  }
  const auto flood = std::chrono::steady_clock::now() - started;
  const auto is_summary = [](const std::string& line) {
    return contains(line, "not logged one by one");
  };
  const auto count_lines = [&](bool summaries) {
    const auto lines = log.lines();
    return std::count_if(lines.begin(), lines.end(), [&](const std::string& line) {
      return summaries ? is_summary(line)
                       : contains(line, "rejected input from") && !is_summary(line);
    });
  };
  // Ten lines per 10 s interval the flood lasted, plus the summaries.
  const auto intervals = 1 + flood / 10s;
  EXPECT_LE(count_lines(false), 10 * intervals) << "one warning line per rejected connection";
  // Every rejection is in a line of its own or in a summary's count. The summary comes when
  // the interval ends, without waiting for another warning.
  const auto counted_so_far = [&] {
    long long counted = 0;
    for (const auto& line : log.lines()) {
      if (contains(line, "rejected input from") && !is_summary(line)) ++counted;
      const auto more = line.find(" more warning");
      if (more != std::string::npos && is_summary(line)) {
        const auto start = line.rfind(": ", more);
        if (start != std::string::npos) {
          counted += std::stoll(line.substr(start + 2, more - start - 2));
        }
      }
    }
    return counted;
  };
  const auto summary_deadline = std::chrono::steady_clock::now() + 15s;
  while (counted_so_far() < kStrangers && std::chrono::steady_clock::now() < summary_deadline) {
    std::this_thread::sleep_for(100ms);
  }
  const long long counted = counted_so_far();
  const auto lines = log.lines();
  EXPECT_EQ(counted, kStrangers) << "summary line missing or miscounted; lines:\n"
                                 << (lines.empty() ? std::string() : lines.back());
  EXPECT_LE(lines.size(), static_cast<std::size_t>(11 * intervals + 1));
}

}  // namespace
}  // namespace ringfuse::rendezvous
