#include "transport/ended_peers.hpp"

#include "core/errors.hpp"
#include "rendezvous/prefix_store.hpp"
#include "rendezvous/rank_exits.hpp"
#include "transport/failure_report.hpp"

namespace ringfuse::transport {

void give_up_on_ended_peers(rendezvous::Store& store, const GlobalRanks& global, int position,
                            const std::function<std::vector<int>()>& not_arrived,
                            std::string_view what, const std::string& closes_prefix) {
  auto& root = store.root();
  rendezvous::PrefixStore closes(root, closes_prefix);
  const bool exits = rendezvous::any_rank_exit_recorded(root);
  const bool closed = !closes_prefix.empty() && any_orderly_close(closes);
  if (!exits && !closed) return;
  for (const int peer : not_arrived()) {
    if (const auto ended = exits ? rendezvous::recorded_exit(root, global(peer)) : std::nullopt) {
      throw core::error_at(ErrorKind::peer_failure, global(position), global(peer),
                           "{}: {} {} before it joined, so it will never arrive. Every rank "
                           "must call init() (hvd.init()), and every member of a process set "
                           "must add it; look at rank {}'s output above for why it ended",
                           what, global.name(peer), *ended, global(peer));
    }
    if (closed && recorded_orderly_close(closes, global(peer))) {
      throw core::error_at(ErrorKind::peer_failure, global(position), global(peer),
                           "{}: {} shut Ringfuse down (destroyed its Context: hvd.shutdown(), "
                           "or the end of its program) before it joined, so it will never "
                           "arrive. Every rank must make the same splits and add the same "
                           "process sets before any of them shuts down",
                           what, global.name(peer));
    }
  }
}

}  // namespace ringfuse::transport
