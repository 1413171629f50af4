// A set-up step that waits for peers (a store key they publish, a connection they make) can
// stop at once when the launcher has recorded that a peer's process ended
// (rendezvous/rank_exits.hpp), or when the peer destroyed the Context the set-up is made from
// (hvd.shutdown() in a program that goes on): that peer will never arrive, and waiting out the
// connect timeout would only end in a vaguer error.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "rendezvous/store.hpp"
#include "transport/global_ranks.hpp"

namespace ringfuse::transport {

/// Throws Error(ErrorKind::peer_failure) from `global(position)`, during `what`, when the end
/// of one of the peers that `not_arrived` returns (positions in the group) is recorded in
/// `store`'s root, or, given `closes_prefix`, when one of them shut its Context down in order:
/// its transport recorded an orderly close (failure_report.hpp) under that prefix of the root
/// (the Context's main channel, whose keys name the world's generation, so a world initialised
/// again is not taken for one that closed). One round trip of the store while no rank of the
/// job has ended (two with a prefix); `not_arrived` is called only when one has.
void give_up_on_ended_peers(rendezvous::Store& store, const GlobalRanks& global, int position,
                            const std::function<std::vector<int>()>& not_arrived,
                            std::string_view what, const std::string& closes_prefix = {});

}  // namespace ringfuse::transport
