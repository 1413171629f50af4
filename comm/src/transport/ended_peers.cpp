#include "transport/ended_peers.hpp"

#include "core/errors.hpp"
#include "rendezvous/rank_exits.hpp"

namespace ringfuse::transport {
namespace {

std::string closed_key(const std::string& context_prefix, int position) {
  return context_prefix + "closed/" + std::to_string(position);
}
// Set after any closed_key of the Context: a waiter needs one look while nobody closed it.
std::string any_closed_key(const std::string& context_prefix) {
  return context_prefix + "closed/any";
}

}  // namespace

void record_context_closed(rendezvous::Store& root, const std::string& context_prefix,
                           int position) {
  root.set(closed_key(context_prefix, position), "1");
  root.set(any_closed_key(context_prefix), "1");
}

void give_up_on_ended_peers(rendezvous::Store& store, const GlobalRanks& global, int position,
                            const std::function<std::vector<int>()>& not_arrived,
                            std::string_view what, const std::string& context_prefix) {
  auto& root = store.root();
  const bool exits = rendezvous::any_rank_exit_recorded(root);
  const bool closes = !context_prefix.empty() && root.check({any_closed_key(context_prefix)});
  if (!exits && !closes) return;
  for (const int peer : not_arrived()) {
    if (const auto ended = exits ? rendezvous::recorded_exit(root, global(peer)) : std::nullopt) {
      throw core::error_at(ErrorKind::peer_failure, global(position), global(peer),
                           "{}: {} {} before it joined, so it will never arrive. Every rank "
                           "must call init() (hvd.init()), and every member of a process set "
                           "must add it; look at rank {}'s output above for why it ended",
                           what, global.name(peer), *ended, global(peer));
    }
    if (closes && root.check({closed_key(context_prefix, peer)})) {
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
