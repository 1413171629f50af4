// The set-up steps of a transport exchange values through the store under keys made of
// positions in the transport's group (`shm/probe/1`). When a peer never publishes (it died,
// hangs, or cannot reach the store), the store's own timeout names those keys, which say
// nothing to a user of a hierarchy, where position 1 of the cross-host group may be global
// rank 5. These wrappers turn that timeout into one that names the global ranks that are
// missing and, where known, their host and address.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "rendezvous/store.hpp"
#include "transport/global_ranks.hpp"

namespace ringfuse::transport {

/// rendezvous::gather_first() over a transport's group; on a timeout, throws
/// Error(ErrorKind::timeout) from `global(position)` naming each missing peer
/// (GlobalRanks::name) and `what` this step is ("set-up of shared memory"). Stops waiting
/// for a peer that ended, or, given `closes_prefix`, that shut its Context down in order
/// (give_up_on_ended_peers).
std::vector<std::string> gather_first_in_group(rendezvous::Store& store, const std::string& key,
                                               std::string_view value, int position, int count,
                                               std::chrono::milliseconds timeout,
                                               const GlobalRanks& global, std::string_view what,
                                               const std::string& closes_prefix = {});

/// rendezvous::all_gather() over a transport's group of `size`, as above.
std::vector<std::string> all_gather_in_group(rendezvous::Store& store, const std::string& key,
                                             std::string_view value, int position, int size,
                                             std::chrono::milliseconds timeout,
                                             const GlobalRanks& global, std::string_view what,
                                             const std::string& closes_prefix = {});

}  // namespace ringfuse::transport
