// Horovod's process sets over a Context: each set is a subgroup Context of its members with
// its own engine, started at registration (when every rank is in the same call, so no
// member waits for a peer that only connects on first use). Each set's collectives are
// negotiated, fused and ordered within the set only, so overlapping sets run concurrently.
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "context/context_impl.hpp"
#include "core/errors.hpp"

namespace ringfuse::context {

int ContextImpl::add_process_set(std::span<const int> ranks) {
  check_parent();
  const int id = process_sets_.next_id;
  const std::string what = fmt::format("add_process_set (set {})", id);
  check_group(ranks, what);
  const std::vector<int> listed(ranks.begin(), ranks.end());
  const int number = ++children_made_;
  const auto at = std::find(listed.begin(), listed.end(), world_.rank);
  const bool member = at != listed.end();
  const std::string set_label = parent_ ? fmt::format("process set {} of {}", id, label_)
                                        : fmt::format("process set {}", id);
  auto context = make_child(number, member ? 0 : kUndefinedColor,
                            member ? static_cast<int>(at - listed.begin()) : 0, set_label,
                            &listed);
  if (context) context->engine();  // every member connects it now, in the same order
  ++process_sets_.next_id;
  process_sets_.sets.emplace(id, ProcessSets::Set{listed, std::move(context)});
  return id;
}

void ContextImpl::remove_process_set(int id) {
  check_parent();
  const auto found = process_sets_.sets.find(id);
  if (found == process_sets_.sets.end()) {
    throw core::rank_error(ErrorKind::invalid_argument, global_rank(world_.rank),
                           "remove_process_set({}) on {}: no such process set (0 is the global "
                           "set and cannot be removed)",
                           id, label_);
  }
  // Destroying the set's Context stops its engine: pending work on it fails first.
  process_sets_.sets.erase(found);
}

std::vector<int> ContextImpl::process_set_ranks(int id) const {
  if (id == 0) {
    std::vector<int> all(static_cast<std::size_t>(world_.size));
    for (int rank = 0; rank < world_.size; ++rank) all[static_cast<std::size_t>(rank)] = rank;
    return all;
  }
  const auto found = process_sets_.sets.find(id);
  if (found == process_sets_.sets.end()) {
    throw core::rank_error(ErrorKind::invalid_argument, global_rank(world_.rank),
                           "process set {} of {} is unknown (registered: {})", id, label_,
                           process_sets_.sets.size());
  }
  return found->second.ranks;
}

Engine& ContextImpl::engine(int process_set) {
  if (process_set == 0) return engine();
  check_parent();
  const auto found = process_sets_.sets.find(process_set);
  if (found == process_sets_.sets.end()) {
    throw core::rank_error(ErrorKind::invalid_argument, global_rank(world_.rank),
                           "engine({}): process set {} of {} is unknown", process_set,
                           process_set, label_);
  }
  if (!found->second.context) {
    throw core::rank_error(ErrorKind::invalid_argument, global_rank(world_.rank),
                           "rank {} is not in process set {} (ranks {})", world_.rank,
                           process_set, fmt::join(found->second.ranks, ","));
  }
  return found->second.context->engine();
}

}  // namespace ringfuse::context
