#include "transport/failure_report.hpp"

#include <optional>

#include <fmt/format.h>

#include "core/errors.hpp"
#include "transport/transport.hpp"

namespace ringfuse::transport {
namespace {

std::optional<std::string> first_failure(rendezvous::Store& world,
                                         std::chrono::milliseconds wait) {
  try {
    return world.get("abort/reason", wait);
  } catch (const std::exception&) {
    return std::nullopt;  // nothing reported, or the store itself is gone
  }
}

std::string left_key(int rank) { return fmt::format("left/{}", rank); }
// Set after any left_key: a rank waiting for peers needs one look while nobody left.
constexpr const char* kAnyLeftKey = "left/any";

bool peer_left(rendezvous::Store& world, int peer) {
  try {
    return recorded_orderly_close(world, peer);
  } catch (const std::exception&) {
    return false;  // the store is gone: say what the connection alone tells
  }
}

}  // namespace

void record_orderly_close(rendezvous::Store& world, int rank) {
  world.set(left_key(rank), "1");
  world.set(kAnyLeftKey, "1");
}

bool any_orderly_close(rendezvous::Store& world) { return world.check({kAnyLeftKey}); }

bool recorded_orderly_close(rendezvous::Store& world, int rank) {
  return world.check({left_key(rank)});
}

std::string describe_lost_peer(rendezvous::Store& world, int rank, const std::string& operation,
                               int peer, const std::string& what, bool peer_closed) {
  std::string message = fmt::format("rank {}: {}: lost rank {}: {}", rank, operation, peer, what);
  // A peer that shut down in order said so before closing, so it needs no waiting for.
  const bool left = peer_closed && peer_left(world, peer);
  const auto origin = first_failure(world,
                                    std::chrono::milliseconds(peer_closed && !left ? 1000 : 0));
  if (origin) return message + fmt::format(" (first failure in this world: {})", *origin);
  if (left) {
    // An uncaught exception ends a Python program in order too, so this is not always the
    // user's collective calls: point at the rank's own output first.
    message += fmt::format(
        "; rank {0} left: it shut Ringfuse down in order (its program ended, by returning or by "
        "an exception it did not catch, or it destroyed its Context) while this rank still "
        "needed it: rank {0}'s own output says why it stopped; if it ended as planned, every "
        "rank must make the same collective calls before shutting down",
        peer);
  } else if (peer_closed) {
    message += fmt::format("; rank {} probably exited or crashed", peer);
  } else {
    message += fmt::format("; rank {} or its host probably crashed, or the network to it failed",
                           peer);
  }
  try {
    if (world.add("abort/count", 1) == 1) {
      world.set("abort/reason", message);
    }
  } catch (const std::exception&) {
    // Best effort on the failure path; the error the caller throws is what matters.
  }
  return message;
}

void check_exchange(int position, int size, const GlobalRanks& global,
                    const std::string& operation, const std::optional<std::string>& aborted,
                    int send_peer, int recv_peer) {
  const int rank = global(position);
  if (aborted) {
    throw core::rank_error(ErrorKind::peer_failure, rank, "{}: this world was aborted earlier: {}",
                           operation, *aborted);
  }
  for (const auto& [peer, role] : {std::pair{send_peer, "send"}, std::pair{recv_peer, "receive"}}) {
    if (peer != kNoPeer && (peer < 0 || peer >= size || peer == position)) {
      throw core::error_at(ErrorKind::invalid_argument, rank, peer,
                           "{}: invalid {} peer {} in a world of {}", operation, role, peer, size);
    }
  }
}

Error stalled_peer_error(int rank, const std::string& operation, int stalled,
                         std::chrono::milliseconds timeout) {
  return core::error_at(ErrorKind::timeout, rank, stalled,
                        "{}: no progress with rank {} for {} s (RINGFUSE_TIMEOUT_S); "
                        "is rank {} stalled or unreachable, or not calling the same collective?",
                        operation, stalled, timeout.count() / 1000, stalled);
}

}  // namespace ringfuse::transport
