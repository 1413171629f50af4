// Where a launcher records in the job's store that a rank's process has ended, so that ranks
// still waiting for it to join a set-up stop at once and say why, instead of waiting out the
// connect timeout for a process that is gone.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "rendezvous/store.hpp"

namespace ringfuse::rendezvous {

/// The key holding what ended `rank` (a global rank).
std::string rank_exit_key(int rank);
/// Set after any rank_exit_key, so that a waiter needs one look while no rank has ended.
inline constexpr std::string_view kAnyRankExitKey = "ringfuse-run/exited/any";

/// Records in `store` (a Store, or the TcpStoreServer the launcher hosts) that `rank` has
/// ended, and what ended it ("exited with status 0 (pid 12 on node-a)"). Throws what the
/// store's set throws.
template <class StoreLike>
void record_rank_exit(StoreLike& store, int rank, std::string_view description) {
  store.set(rank_exit_key(rank), description);
  store.set(std::string(kAnyRankExitKey), "1");  // after the record: a record seen is whole
}

/// Whether any rank's end is recorded in `root` (the store without a prefix): one round trip.
bool any_rank_exit_recorded(Store& root);

/// What ended `rank` (a global rank), if its end is recorded in `root`.
std::optional<std::string> recorded_exit(Store& root, int rank);

}  // namespace ringfuse::rendezvous
