// The receiving side of lazy point-to-point connections: a thread that accepts on this rank's
// p2p listener and authenticates each connector (handshake.hpp), so that a peer's first send
// completes its handshake even while this rank is busy elsewhere (in a collective, say) and
// the message waits in the connection's buffers. The messenger polls wake_fd() beside its
// connections and take()s what was accepted.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "p2p/handshake.hpp"
#include "p2p/shm_pipe.hpp"
#include "transport/socket.hpp"

namespace ringfuse::p2p {

class Acceptor {
 public:
  /// Listens on `host` (port chosen by the kernel) and starts the thread.
  Acceptor(const std::string& host, Identity self, std::chrono::milliseconds user_timeout);
  /// Stops and joins the thread; connections not yet taken are closed.
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  std::uint16_t port() const { return port_; }
  /// Readable while authenticated connections wait to be taken.
  int wake_fd() const { return wake_.fd(); }
  struct Accepted {
    int peer;                       // the rank it proved to be
    transport::Socket socket;
    std::unique_ptr<ShmPipe> pipe;  // the pair shares memory: messages come through it
  };
  /// The connections authenticated since the last call.
  std::vector<Accepted> take();

 private:
  void run();

  Identity self_;
  std::chrono::milliseconds user_timeout_;
  transport::Socket listener_;
  std::uint16_t port_ = 0;
  transport::Socket wake_;  // eventfd: counts connections ready to be taken
  transport::Socket stop_;  // eventfd: written once by the destructor
  std::mutex mutex_;
  std::vector<Accepted> ready_;
  std::vector<bool> seen_;  // thread only: ranks already connected (a second one is refused)
  std::thread thread_;
};

}  // namespace ringfuse::p2p
