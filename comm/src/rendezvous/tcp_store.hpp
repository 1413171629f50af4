// The TCP rendezvous store: a server (hosted by ringfuse-run, or by rank 0 under torchrun-style
// launching) and a client implementing Store. Messages are length-prefixed protobuf
// (store.proto) over Boost.Asio.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "rendezvous/store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::rendezvous {

/// The store server is shutting down (the launcher or rank 0 hosting it is exiting), so the
/// job it served has ended or given up: thrown by TcpStoreClient instead of a lost
/// connection or an authentication failure, so a caller can say so. Kind peer_failure.
class StoreClosingError : public Error {
 public:
  explicit StoreClosingError(std::string message)
      : Error(ErrorKind::peer_failure, std::move(message)) {}
};

class TcpStoreServer {
 public:
  /// Binds host:port (port 0 picks a free one) and serves on a background thread until
  /// destroyed. Throws Error(ErrorKind::system) naming the address if it cannot bind.
  /// Destruction is orderly: no new connection is let in (a client connecting then is
  /// refused), and every connected client, authenticated or not, is sent a notice that the
  /// store is closing (its calls throw StoreClosingError) before its connection is closed;
  /// the destructor waits up to 2 s for a client it sent the notice while its request was
  /// unread.
  /// Every client must prove it knows `secret` (the job secret) before anything else; a client
  /// that cannot is logged and disconnected while the others carry on.
  TcpStoreServer(const std::string& host, std::uint16_t port, std::string secret = {});
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  std::uint16_t port() const;
  const std::string& host() const;

  /// Sets `key` as a client's set would (waking its waiters), from the process hosting the
  /// server: for the launcher's own records (rank_exits.hpp). Returns without waiting for it.
  void set(const std::string& key, std::string_view value);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

class TcpStoreClient final : public Store {
 public:
  /// Connects to host:port, retrying refused connections until `connect_timeout` passes (the
  /// server may start after the client). Throws Error(ErrorKind::timeout) naming the address.
  /// Authenticates with `secret` both ways; Error(ErrorKind::peer_failure) when the server
  /// refuses it or cannot prove the same secret. StoreClosingError (here or from any call)
  /// when the server says it is shutting down, or closed a connection without answering and
  /// then refused the next: it has gone away.
  TcpStoreClient(const std::string& host, std::uint16_t port,
                 std::chrono::milliseconds connect_timeout, std::string secret = {});
  ~TcpStoreClient() override;

  void set(const std::string& key, std::string_view value) override;
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  std::int64_t add(const std::string& key, std::int64_t delta) override;
  bool remove(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;

  /// The local IP address of the connection to the server: the address peers can reach us at.
  std::string local_address() const;
  /// The connection's descriptor, for poll() to notice the server going away (POLLRDHUP);
  /// never for reading or writing, which would break the protocol.
  int connection_handle();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringfuse::rendezvous
