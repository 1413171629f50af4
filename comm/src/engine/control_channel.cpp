#include "engine/control_channel.hpp"

#include <cstring>

#include <fmt/format.h>

#include "ringfuse/error.hpp"

namespace ringfuse::engine {

void ControlChannel::send(int peer, const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> frame(sizeof(std::uint64_t) + payload.size());
  const std::uint64_t size = payload.size();
  std::memcpy(frame.data(), &size, sizeof(size));
  if (!payload.empty()) std::memcpy(frame.data() + sizeof(size), payload.data(), payload.size());
  transport_->set_operation("engine negotiation");
  transport_->send(peer, frame.data(), frame.size());
}

std::optional<std::vector<std::uint8_t>> ControlChannel::try_recv(int peer) {
  std::uint64_t size = 0;
  transport_->set_operation("engine negotiation");
  if (!transport_->wait_readable(peer, tick_)) return std::nullopt;  // nothing this tick
  transport_->recv(peer, &size, sizeof(size));
  if (size > (std::uint64_t{1} << 32)) {
    throw Error(ErrorKind::protocol,
                fmt::format("ringfuse engine: rank {} sent a negotiation message of {} bytes",
                            peer, size),
                transport_->rank(), peer);
  }
  std::vector<std::uint8_t> payload(size);
  // The frame was sent in one piece, so the rest follows at once; the transport's operation
  // timeout without progress here is a peer stopped mid-message, reported as an error.
  if (size > 0) transport_->recv(peer, payload.data(), payload.size());
  return payload;
}

}  // namespace ringfuse::engine
