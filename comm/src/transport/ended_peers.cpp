#include "transport/ended_peers.hpp"

#include "core/errors.hpp"
#include "rendezvous/rank_exits.hpp"

namespace ringfuse::transport {

void give_up_on_ended_peers(rendezvous::Store& store, const GlobalRanks& global, int position,
                            const std::function<std::vector<int>()>& not_arrived,
                            std::string_view what) {
  auto& root = store.root();
  if (!rendezvous::any_rank_exit_recorded(root)) return;
  for (const int peer : not_arrived()) {
    if (const auto ended = rendezvous::recorded_exit(root, global(peer))) {
      throw core::error_at(ErrorKind::peer_failure, global(position), global(peer),
                           "{}: {} {} before it joined, so it will never arrive. Every rank "
                           "must call init() (hvd.init()), and every member of a process set "
                           "must add it; look at rank {}'s output above for why it ended",
                           what, global.name(peer), *ended, global(peer));
    }
  }
}

}  // namespace ringfuse::transport
