// Where a launcher records in the job's store that a rank's process has ended, so that ranks
// still waiting for it to join a set-up stop at once and say why, instead of waiting out the
// connect timeout for a process that is gone.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rendezvous/store.hpp"

namespace ringfuse::rendezvous {

/// The keys and values a launcher sets, in this order, when `rank` (a global rank) has
/// ended: what ended it ("exited with status 0 (pid 12 on node-a)"), then a key that says
/// some rank has ended, so that a waiter needs one look while none has.
std::vector<std::pair<std::string, std::string>> rank_exit_records(int rank,
                                                                   std::string_view description);

/// Whether any rank's end is recorded in `root` (the store without a prefix): one round trip.
bool any_rank_exit_recorded(Store& root);

/// What ended `rank` (a global rank), if its end is recorded in `root`.
std::optional<std::string> recorded_exit(Store& root, int rank);

}  // namespace ringfuse::rendezvous
