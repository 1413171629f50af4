// A rank that ringfuse-run started on another host through an rsh agent outlives the launcher
// when the agent does not pass signals on (ssh without -tt does not): Ctrl-C, or a launcher
// killed outright, would leave it running, holding its GPU. mpirun's daemons stop such ranks;
// here the rank watches a connection of its own to the launcher's store, and when that closes
// while the Context lives, stops itself as the launcher would have: SIGTERM, then SIGKILL.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "rendezvous/tcp_store.hpp"

namespace ringfuse {

class LauncherWatch {
 public:
  /// Connects to the store at host:port (proving `secret`) and starts watching. Throws what
  /// the store's client throws.
  LauncherWatch(const std::string& host, std::uint16_t port, const std::string& secret,
                std::chrono::milliseconds connect_timeout, int rank);
  /// Stops watching (also a rank already counting down to its SIGTERM).
  ~LauncherWatch();
  LauncherWatch(const LauncherWatch&) = delete;
  LauncherWatch& operator=(const LauncherWatch&) = delete;

 private:
  void watch();
  /// Waits up to `time` for the stop; true when it came.
  bool stopped_within(std::chrono::milliseconds time) const;

  std::unique_ptr<rendezvous::TcpStoreClient> client_;
  std::string address_;
  int rank_;
  int stop_fd_ = -1;  // an eventfd: written once to stop the thread
  std::thread thread_;
};

}  // namespace ringfuse
