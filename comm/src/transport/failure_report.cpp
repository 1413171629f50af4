#include "transport/failure_report.hpp"

#include <optional>

#include <fmt/format.h>

#include "transport/transport.hpp"

namespace ringfuse::transport {
namespace {

std::optional<std::string> first_failure(rendezvous::Store& store, const std::string& key_prefix,
                                         std::chrono::milliseconds wait) {
  try {
    return store.get(key_prefix + "abort/reason", wait);
  } catch (const std::exception&) {
    return std::nullopt;  // nothing reported, or the store itself is gone
  }
}

}  // namespace

std::string describe_lost_peer(rendezvous::Store& store, const std::string& key_prefix, int rank,
                               const std::string& operation, int peer, const std::string& what,
                               bool peer_closed) {
  std::string message = fmt::format("rank {}: {}: lost rank {}: {}", rank, operation, peer, what);
  const auto origin =
      first_failure(store, key_prefix, std::chrono::milliseconds(peer_closed ? 1000 : 0));
  if (origin) return message + fmt::format(" (first failure in this world: {})", *origin);
  message += fmt::format("; rank {} probably exited or crashed", peer);
  try {
    if (store.add(key_prefix + "abort/count", 1) == 1) {
      store.set(key_prefix + "abort/reason", message);
    }
  } catch (const std::exception&) {
    // Best effort on the failure path; the error the caller throws is what matters.
  }
  return message;
}

void check_exchange(int rank, int size, const std::string& operation,
                    const std::optional<std::string>& aborted, int send_peer, int recv_peer) {
  if (aborted) {
    throw Error(ErrorKind::peer_failure,
                fmt::format("rank {}: {}: this world was aborted earlier: {}", rank, operation,
                            *aborted),
                rank);
  }
  for (const auto& [peer, role] : {std::pair{send_peer, "send"}, std::pair{recv_peer, "receive"}}) {
    if (peer != kNoPeer && (peer < 0 || peer >= size || peer == rank)) {
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("rank {}: {}: invalid {} peer {} in a world of {}", rank, operation,
                              role, peer, size),
                  rank, peer);
    }
  }
}

Error stalled_peer_error(int rank, const std::string& operation, int stalled,
                         std::chrono::milliseconds timeout) {
  return Error(ErrorKind::timeout,
               fmt::format("rank {}: {}: no progress with rank {} for {} s (RINGFUSE_TIMEOUT_S); "
                           "is rank {} stalled, or not calling the same collective?",
                           rank, operation, stalled, timeout.count() / 1000, stalled),
               rank, stalled);
}

}  // namespace ringfuse::transport
