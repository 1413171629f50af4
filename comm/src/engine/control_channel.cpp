#include "engine/control_channel.hpp"

#include <sched.h>

#include <fmt/format.h>

#include "core/errors.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::engine {
namespace {

// How long a receive keeps checking (yielding the CPU between checks) before it sleeps in
// poll(): about one negotiation round trip when both ranks are running. A sleeping engine
// thread is woken by the peer's bytes only when the scheduler gets to it, which on a busy
// host (or a rank bound to one core with its main thread) costs far more than the round trip.
constexpr std::chrono::microseconds kSpinBeforeSleep{100};

}  // namespace

void ControlChannel::send(int peer, const std::vector<std::uint8_t>& payload) {
  // The size and the payload go as two messages because try_recv receives them as two: a
  // shared-memory transport matches each receive with one send.
  const std::uint64_t size = payload.size();
  transport_->set_operation("engine negotiation");
  transport_->send(peer, &size, sizeof(size));
  if (!payload.empty()) transport_->send(peer, payload.data(), payload.size());
}

std::optional<std::vector<std::uint8_t>> ControlChannel::try_recv(int peer) {
  std::uint64_t size = 0;
  transport_->set_operation("engine negotiation");
  bool readable = transport_->wait_readable(peer, std::chrono::microseconds{0});
  for (const auto spin_until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
       !readable && std::chrono::steady_clock::now() < spin_until;) {
    ::sched_yield();
    readable = transport_->wait_readable(peer, std::chrono::microseconds{0});
  }
  if (!readable && !transport_->wait_readable(peer, tick_)) return std::nullopt;  // this tick
  transport_->recv(peer, &size, sizeof(size));
  if (size > (std::uint64_t{1} << 32)) {
    throw core::error_at(ErrorKind::protocol, transport_->rank(), peer,
                         "ringfuse engine: rank {} sent a negotiation message of {} bytes", peer,
                         size);
  }
  std::vector<std::uint8_t> payload(size);
  // The payload is sent right after its size, so it follows at once; the transport's
  // operation timeout without progress here is a peer stopped mid-message, reported as an
  // error.
  if (size > 0) transport_->recv(peer, payload.data(), payload.size());
  return payload;
}

}  // namespace ringfuse::engine
