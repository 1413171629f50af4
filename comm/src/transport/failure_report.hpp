// How every transport reports a lost or stalled peer, so each rank's message has the same
// shape and names the first failure of the world (shared through the store).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "rendezvous/store.hpp"
#include "transport/global_ranks.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::transport {

/// `world` is the store seen through the world's key prefix (rendezvous::PrefixStore). Every
/// rank here is a global rank (GlobalRanks): the keys are shared by the transports of a
/// hierarchy and the world's flat transport.

/// Marks `rank` as leaving in order (its transport is being destroyed, not crashing), so a peer
/// that sees the connection close can say so, and one waiting for it in a set-up stops
/// (ended_peers.hpp). Call it before closing the connections; it talks to the store, so only
/// while the store is believed reachable. Throws what the store throws.
void record_orderly_close(rendezvous::Store& world, int rank);

/// Whether any rank recorded an orderly close in `world`: one round trip.
bool any_orderly_close(rendezvous::Store& world);

/// Whether `rank` recorded an orderly close in `world`.
bool recorded_orderly_close(rendezvous::Store& world, int rank);

/// The message for `peer` lost during `operation`. When another rank already recorded a
/// failure in `world`, it is quoted as the first one (after up to 1 s of waiting for
/// it when the peer merely closed: usually a neighbour that aborted after the real failure);
/// otherwise this failure is recorded as the first, saying whether the peer left in order
/// (record_orderly_close), closed without notice (exited or crashed), or failed otherwise
/// (a timed-out or unreachable connection). The store is best effort here.
std::string describe_lost_peer(rendezvous::Store& world, int rank, const std::string& operation,
                               int peer, const std::string& what, bool peer_closed);

/// Throws before an exchange starts: the world was aborted by an earlier failure (`aborted`
/// holds its message), or a peer is neither kNoPeer nor another position of the group.
/// `position`, `size` and the peers are positions in the transport's group; errors name
/// global ranks through `global`.
void check_exchange(int position, int size, const GlobalRanks& global,
                    const std::string& operation, const std::optional<std::string>& aborted,
                    int send_peer, int recv_peer);

/// The error for a collective that saw no progress with `stalled` for `timeout`.
Error stalled_peer_error(int rank, const std::string& operation, int stalled,
                         std::chrono::milliseconds timeout);

}  // namespace ringfuse::transport
