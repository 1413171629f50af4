// Framed negotiation messages over the engine's control connections. A receive first waits
// for the peer's bytes for at most one "tick" (Transport::wait_readable) and returns nullopt
// when none came, so the coordinator can inspect stalls and notice shutdown while a rank is
// silent; the transport's own (long) operation timeout only bounds a message once it started.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "transport/transport.hpp"

namespace ringfuse::engine {

/// How long one control-channel receive waits before the engine looks around.
inline constexpr std::chrono::milliseconds kControlTick{100};

class ControlChannel {
 public:
  explicit ControlChannel(std::unique_ptr<transport::Transport> transport,
                          std::chrono::microseconds tick = kControlTick)
      : transport_(std::move(transport)), tick_(tick) {}

  void send(int peer, const std::vector<std::uint8_t>& payload);
  /// A whole message from `peer`, or nullopt when none started arriving within one tick.
  std::optional<std::vector<std::uint8_t>> try_recv(int peer);

 private:
  std::unique_ptr<transport::Transport> transport_;
  std::chrono::microseconds tick_;
};

}  // namespace ringfuse::engine
