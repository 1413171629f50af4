// The store server going away while a client connects, authenticates or waits (pod 0's
// launcher exiting at the end of its grace period, issue #17): the client must be told that
// the store is shutting down, never that the server is of another version or that the secrets
// differ. Real server, real client, real sockets on loopback; a relay between them holds the
// client at the chosen step of its handshake, so the worst moment is hit every time.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "expect_error.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::rendezvous {
namespace {

using namespace std::chrono_literals;
using test_support::contains;

constexpr auto kConnect = 5000ms;
constexpr auto kLong = 10000ms;  // a deadline the test expects never to reach
const std::string kSecret = "store-shutdown-test-secret";

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// Where the relay holds the client.
enum class HoldAt {
  // Connected, hello sent, but not yet accepted by the server: what a connection still queued
  // in the kernel is when the server's listening socket closes. On release the relay connects
  // to the server; refused, it does what the kernel does to such a connection (resets it) and
  // closes its own port, as the server's is.
  accept,
  hello,  // the client's hello is held back from the server
  proof,  // the challenge was answered; the client's proof is held back from the server
};

// Passes bytes between one store client and the server as they come, except that it holds the
// client at `hold`. Frames are a 4-byte big-endian length and a body (framing.hpp).
class HoldingRelay {
 public:
  HoldingRelay(std::uint16_t server_port, HoldAt hold)
      : server_port_(server_port), hold_(hold), listener_(::socket(AF_INET, SOCK_STREAM, 0)) {
    auto addr = loopback(0);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listener_, 4), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~HoldingRelay() {
    stop_ = true;
    release();
    thread_.join();
    for (const int fd : {listener_, client_, server_})
      if (fd >= 0) ::close(fd);
  }
  HoldingRelay(const HoldingRelay&) = delete;
  HoldingRelay& operator=(const HoldingRelay&) = delete;

  std::uint16_t port() const { return port_; }

  /// Waits until the client is held where asked (false after 10 s).
  bool wait_until_held() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] { return held_; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }

 private:
  void mark_held() {
    std::lock_guard lock(mutex_);
    held_ = true;
    changed_.notify_all();
  }

  // Whole frames the client has sent so far, and whether `pending_` ends inside one.
  int whole_frames() const {
    int frames = 0;
    std::size_t at = 0;
    while (pending_.size() - at >= 4) {
      const auto* p = reinterpret_cast<const unsigned char*>(pending_.data() + at);
      const std::size_t length = (std::size_t{p[0]} << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
      if (pending_.size() - at - 4 < length) break;
      at += 4 + length;
      ++frames;
    }
    return frames;
  }

  // Bytes of the first `frames` frames of `pending_`.
  std::size_t frame_bytes(int frames) const {
    std::size_t at = 0;
    for (int i = 0; i < frames; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(pending_.data() + at);
      at += 4 + ((std::size_t{p[0]} << 24) | (p[1] << 16) | (p[2] << 8) | p[3]);
    }
    return at;
  }

  bool wait_readable(int fd) {
    while (!stop_) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 20) > 0) return true;
    }
    return false;
  }

  void run() {
    if (!wait_readable(listener_)) return;
    client_ = ::accept(listener_, nullptr, nullptr);
    if (client_ < 0) return;
    if (hold_ == HoldAt::accept) {
      char hello[256];
      if (!wait_readable(client_) || ::recv(client_, hello, sizeof(hello), 0) <= 0) return;
      mark_held();
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return released_; });
      }
      server_ = ::socket(AF_INET, SOCK_STREAM, 0);
      auto addr = loopback(server_port_);
      if (::connect(server_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        ADD_FAILURE() << "the server still accepts connections after it was destroyed";
        return;
      }
      // What the kernel does to a queued connection when the listening socket closes.
      ::close(listener_);
      listener_ = -1;
      const linger reset{1, 0};
      ::setsockopt(client_, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
      ::close(client_);
      client_ = -1;
      return;
    }
    server_ = ::socket(AF_INET, SOCK_STREAM, 0);
    auto addr = loopback(server_port_);
    if (::connect(server_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    const int held_frame = hold_ == HoldAt::hello ? 0 : 1;
    int forwarded = 0;
    bool holding = false;
    char buffer[4096];
    while (!stop_) {
      pollfd fds[2] = {{client_, POLLIN, 0}, {server_, POLLIN, 0}};
      if (::poll(fds, 2, 20) <= 0) continue;
      if (fds[1].revents != 0) {
        const auto n = ::recv(server_, buffer, sizeof(buffer), 0);
        if (n <= 0) {
          ::shutdown(client_, SHUT_WR);  // the server's end of stream, passed on
          fds[1].fd = -1;
          if (n < 0) return;
          // Drop what the client still sends until it hangs up, and pass that on.
          while (wait_readable(client_) && ::recv(client_, buffer, sizeof(buffer), 0) > 0) {
          }
          ::shutdown(server_, SHUT_WR);
          return;
        }
        ::send(client_, buffer, static_cast<std::size_t>(n), MSG_NOSIGNAL);
      }
      if (fds[0].revents != 0) {
        const auto n = ::recv(client_, buffer, sizeof(buffer), 0);
        if (n <= 0) {
          ::shutdown(server_, SHUT_WR);  // the client hung up: so does its relay
          while (wait_readable(server_) && ::recv(server_, buffer, sizeof(buffer), 0) > 0) {
          }
          return;
        }
        if (holding) continue;  // nothing after the held frame reaches the server
        pending_.append(buffer, static_cast<std::size_t>(n));
        const int frames = whole_frames();
        const int to_forward = std::min(frames, held_frame - forwarded);
        const auto bytes = frame_bytes(to_forward);
        ::send(server_, pending_.data(), bytes, MSG_NOSIGNAL);
        pending_.erase(0, bytes);
        forwarded += to_forward;
        if (forwarded == held_frame && frames > to_forward) {
          holding = true;
          mark_held();
        }
      }
    }
  }

  const std::uint16_t server_port_;
  const HoldAt hold_;
  int listener_;
  int client_ = -1;
  int server_ = -1;
  std::uint16_t port_ = 0;
  std::string pending_;  // the client's bytes not yet forwarded
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable changed_;
  bool held_ = false;
  bool released_ = false;
  std::thread thread_;
};

struct Outcome {
  bool store_closing = false;  // a StoreClosingError, not another Error
  std::string message;
};

// Connects a client through the relay, shuts the server down while the relay holds the client,
// and returns what the client said.
Outcome shut_down_while_held(HoldAt hold) {
  auto server = std::make_unique<TcpStoreServer>("127.0.0.1", 0, kSecret);
  HoldingRelay relay(server->port(), hold);
  auto client = std::async(std::launch::async, [&] {
    Outcome outcome;
    try {
      TcpStoreClient store("127.0.0.1", relay.port(), kConnect, kSecret);
      outcome.message = "connected";
    } catch (const StoreClosingError& e) {
      outcome = {true, e.what()};
    } catch (const Error& e) {
      outcome.message = e.what();
    }
    return outcome;
  });
  EXPECT_TRUE(relay.wait_until_held()) << "the client never reached the step to hold it at";
  server.reset();
  relay.release();
  EXPECT_EQ(client.wait_for(kLong), std::future_status::ready) << "the client hung";
  return client.get();
}

void expect_told_store_is_closing(const Outcome& outcome) {
  EXPECT_TRUE(outcome.store_closing) << outcome.message;
  EXPECT_TRUE(contains(outcome.message, "shut")) << outcome.message;
  // Neither a version nor a secret problem: the server simply went away.
  EXPECT_FALSE(contains(outcome.message, "version")) << outcome.message;
  EXPECT_FALSE(contains(outcome.message, "secret")) << outcome.message;
}

TEST(StoreShutdown, ClientWhoseHelloIsUnansweredIsToldTheStoreIsClosing) {
  expect_told_store_is_closing(shut_down_while_held(HoldAt::hello));
}

TEST(StoreShutdown, ClientWhoseProofIsUnansweredIsToldTheStoreIsClosingNotAWrongSecret) {
  expect_told_store_is_closing(shut_down_while_held(HoldAt::proof));
}

TEST(StoreShutdown, ClientQueuedBeforeAcceptIsToldTheStoreHasShutDown) {
  expect_told_store_is_closing(shut_down_while_held(HoldAt::accept));
}

TEST(StoreShutdown, ParkedWaitIsToldTheStoreIsClosing) {
  auto server = std::make_unique<TcpStoreServer>("127.0.0.1", 0, kSecret);
  TcpStoreClient store("127.0.0.1", server->port(), kConnect, kSecret);
  store.set("present", "1");
  auto waiting = std::async(std::launch::async, [&] {
    Outcome outcome;
    try {
      store.get("never", 60s);
    } catch (const StoreClosingError& e) {
      outcome = {true, e.what()};
    } catch (const Error& e) {
      outcome.message = e.what();
    }
    return outcome;
  });
  // Parked or still on its way, the get is answered by the notice the server sends every
  // connection as it closes.
  server.reset();
  ASSERT_EQ(waiting.wait_for(kLong), std::future_status::ready) << "client hung";
  const auto outcome = waiting.get();
  EXPECT_TRUE(outcome.store_closing) << outcome.message;
  EXPECT_TRUE(contains(outcome.message, "get 'never'")) << outcome.message;
  EXPECT_TRUE(contains(outcome.message, "shutting down")) << outcome.message;
}

TEST(StoreShutdown, ConnectingAfterShutdownIsRefused) {
  auto server = std::make_unique<TcpStoreServer>("127.0.0.1", 0, kSecret);
  const auto port = server->port();
  server.reset();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  auto addr = loopback(port);
  EXPECT_NE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(errno, ECONNREFUSED);
  ::close(fd);
}

}  // namespace
}  // namespace ringfuse::rendezvous
