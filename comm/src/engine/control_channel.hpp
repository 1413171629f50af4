// Framed negotiation messages over the engine's control connections. The transport under it
// has a short no-progress timeout (one "tick"), so a receive that finds nothing returns
// nullopt after a tick instead of blocking: the coordinator can inspect stalls and notice
// shutdown while a rank is silent.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "transport/transport.hpp"

namespace ringfuse::engine {

class ControlChannel {
 public:
  explicit ControlChannel(std::unique_ptr<transport::Transport> transport)
      : transport_(std::move(transport)) {}

  void send(int peer, const std::vector<std::uint8_t>& payload);
  /// A whole message from `peer`, or nullopt when none started arriving within one tick.
  std::optional<std::vector<std::uint8_t>> try_recv(int peer);

 private:
  std::unique_ptr<transport::Transport> transport_;
};

}  // namespace ringfuse::engine
