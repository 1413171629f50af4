// A relay between a store client and server on loopback that holds the client at a chosen step
// of its handshake (tests of the store going away at the worst moment, issue #17): real
// sockets both ways, and the worst moment hit every time, with no sleeps.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace ringfuse::test_support {

inline sockaddr_in loopback(std::uint16_t port) {
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
    return changed_.wait_for(lock, std::chrono::seconds(10), [&] { return held_; });
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

}  // namespace ringfuse::test_support
