// Which rank stopped a collective. When a collective sees no progress with a peer for the
// operation timeout, that peer is often a victim too: in a tree or a ring, every rank waits for
// its neighbour, and only one of them stopped (a rank stuck in its data loader, or calling
// another collective). So a rank that timed out says in the store whom it waited for, under the
// collective's number, and follows the others' reports from its own peer on: the chain ends at
// the rank that reported no wait of its own. Only on the failure path, within `patience`.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "rendezvous/store.hpp"

namespace ringfuse::context {

/// `scope` names the collective in the store (the Context's key prefix, its backend and the
/// collective's number: the same on every rank of the group); `me` and `waited_for` are global
/// ranks. Returns the sentences to add to the timeout's message ("Rank 1 has not timed out
/// ..."), or nothing when the store could not be used. Waits at most `patience` for the other
/// ranks' reports (they time out at about the same moment).
std::optional<std::string> explain_stall(rendezvous::Store& store, const std::string& scope, int me,
                                         int waited_for, std::uint64_t sequence,
                                         std::chrono::milliseconds patience);

}  // namespace ringfuse::context
