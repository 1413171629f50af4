// Context::split and subgroup: every rank of the parent publishes its color, key and host
// through the parent's store, each computes the same membership from what all published, and
// the members build a ContextImpl of their own under a fresh store prefix.
#include "context/child_world.hpp"

#include <algorithm>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "backend/mpi_backend.hpp"
#include "backend/nccl_backend.hpp"
#include "context/context_impl.hpp"
#include "core/errors.hpp"
#include "rendezvous/prefix_store.hpp"
#include "transport/group_gather.hpp"

namespace ringfuse::context {

std::string SplitEntry::encode() const {
  return fmt::format("{} {} {} {}", color, key, listed.empty() ? "-" : listed, host);
}

SplitEntry SplitEntry::decode(const std::string& text) {
  SplitEntry entry;
  std::istringstream in(text);
  in >> entry.color >> entry.key >> entry.listed;
  if (!in) throw Error(ErrorKind::protocol, fmt::format("malformed split entry '{}'", text));
  if (entry.listed == "-") entry.listed.clear();
  std::getline(in >> std::ws, entry.host);
  return entry;
}

std::vector<int> members_of(const std::vector<SplitEntry>& entries, int color) {
  std::vector<int> members;
  for (int rank = 0; rank < static_cast<int>(entries.size()); ++rank) {
    if (entries[static_cast<std::size_t>(rank)].color == color) members.push_back(rank);
  }
  std::stable_sort(members.begin(), members.end(), [&](int a, int b) {
    return entries[static_cast<std::size_t>(a)].key < entries[static_cast<std::size_t>(b)].key;
  });
  return members;
}

void place_on_hosts(const std::vector<std::string>& hosts, int member, WorldSpec& world) {
  std::vector<std::string> distinct;
  for (const auto& host : hosts) {
    if (std::find(distinct.begin(), distinct.end(), host) == distinct.end()) {
      distinct.push_back(host);
    }
  }
  const auto& mine = hosts[static_cast<std::size_t>(member)];
  world.cross_size = static_cast<int>(distinct.size());
  world.cross_rank =
      static_cast<int>(std::find(distinct.begin(), distinct.end(), mine) - distinct.begin());
  world.local_rank = static_cast<int>(
      std::count(hosts.begin(), hosts.begin() + member, mine));
  world.local_size = static_cast<int>(std::count(hosts.begin(), hosts.end(), mine));
}

ContextImpl::ContextImpl(ChildWorld child)
    : kept_alive_(std::move(child.kept_alive)),
      parent_(std::move(child.parent)),
      global_ranks_(std::move(child.global_ranks)),
      host_(std::move(child.host)),
      label_(std::move(child.label)),
      key_prefix_(std::move(child.key_prefix)),
      world_(std::move(child.world)),
      options_(std::move(child.options)),
      store_(child.store),
      advertise_host_(std::move(child.advertise_host)),
      mpi_backend_(std::move(child.mpi_backend)),
      nccl_backend_(std::move(child.nccl_backend)) {
  lifeline_->parent = parent_;
  abort_state_ = std::move(child.abort_state);
  timeline_ = std::move(child.timeline);
  start_backends();
}

std::string ContextImpl::host_identity() const {
  return fmt::format("{}/{}", advertise_host_.empty() ? "local" : advertise_host_,
                     world_.cross_rank);
}

int ContextImpl::global_rank(int rank) const {
  if (rank < 0 || rank >= world_.size) {
    const int me = global_ranks_.empty() ? world_.rank
                                         : global_ranks_[static_cast<std::size_t>(world_.rank)];
    throw core::rank_error(ErrorKind::invalid_argument, me,
                           "{}: global_rank({}): not a rank of this Context of {}", label_, rank,
                           world_.size);
  }
  return global_ranks_.empty() ? rank : global_ranks_[static_cast<std::size_t>(rank)];
}

void ContextImpl::check_parent() const {
  for (auto ancestor = parent_; ancestor; ancestor = ancestor->parent.lock()) {
    if (!ancestor->alive) {
      throw core::rank_error(ErrorKind::invalid_argument, global_rank(world_.rank),
                             "{}: the parent Context was destroyed first; destroy child "
                             "Contexts (split, subgroup) before the Context they were made from",
                             label_);
    }
  }
}

Error ContextImpl::in_this_group(const Error& error) const {
  const int global = global_rank(world_.rank);
  std::string rest = error.what();
  for (const int prefix_rank : {global, world_.rank}) {
    const auto prefix = fmt::format("rank {}: ", prefix_rank);
    if (rest.starts_with(prefix)) {
      rest.erase(0, prefix.size());
      break;
    }
  }
  if (rest.starts_with(label_ + ": ")) rest.erase(0, label_.size() + 2);
  Error named(error.kind(), fmt::format("rank {}: {}: {}", global, label_, rest), global,
              error.peer());
  named.in_collective(error.sequence(), error.backend());
  return named;
}

void ContextImpl::check_group(std::span<const int> ranks, const std::string& what) const {
  const int me = global_rank(world_.rank);
  if (ranks.empty()) {
    throw core::rank_error(ErrorKind::invalid_argument, me, "{} of {}: the list of ranks is empty",
                           what, label_);
  }
  std::set<int> seen;
  for (const int rank : ranks) {
    if (rank < 0 || rank >= world_.size) {
      throw core::rank_error(ErrorKind::invalid_argument, me,
                             "{} of {}: rank {} is out of range: ranks are 0..{} (ranks of this "
                             "Context, not global ranks)",
                             what, label_, rank, world_.size - 1);
    }
    if (!seen.insert(rank).second) {
      throw core::rank_error(ErrorKind::invalid_argument, me,
                             "{} of {}: rank {} is listed twice in [{}]", what, label_, rank,
                             fmt::join(ranks, ","));
    }
  }
}

std::unique_ptr<Context> ContextImpl::split(int color, int key) {
  check_parent();
  const int number = ++children_made_;
  return make_child(number, color, key,
                    fmt::format("split {} (color {}) of {}", number, color, label_), nullptr);
}

std::unique_ptr<Context> ContextImpl::subgroup(std::span<const int> ranks) {
  check_parent();
  check_group(ranks, "subgroup");
  const std::vector<int> listed(ranks.begin(), ranks.end());
  const int number = ++children_made_;
  const auto at = std::find(listed.begin(), listed.end(), world_.rank);
  const bool member = at != listed.end();
  return make_child(number, member ? 0 : kUndefinedColor,
                    member ? static_cast<int>(at - listed.begin()) : 0,
                    fmt::format("subgroup {} (ranks {}) of {}", number, fmt::join(listed, ","),
                                label_),
                    &listed);
}

std::unique_ptr<Context> ContextImpl::make_child(int number, int color, int key,
                                                 std::string label,
                                                 const std::vector<int>* listed) {
  SplitEntry mine;
  mine.color = color < 0 ? kUndefinedColor : color;
  mine.key = key;
  mine.host = host_;
  if (listed) mine.listed = fmt::format("{}", fmt::join(*listed, ","));
  const std::string prefix = fmt::format("{}split/{}/", key_prefix_, number);
  std::vector<SplitEntry> entries;
  if (world_.size == 1) {
    entries.push_back(mine);
  } else {
    rendezvous::PrefixStore split_store(*store_, prefix);
    for (const auto& value : transport::all_gather_in_group(
             split_store, "entry", mine.encode(), world_.rank, world_.size,
             options_.connect_timeout, transport::GlobalRanks(global_ranks_), label,
             // A member that shut down in order will never add its entry: its main
             // channel's transport recorded that there (open_channel("main")).
             key_prefix_ + "main/")) {
      entries.push_back(SplitEntry::decode(value));
    }
  }
  if (listed) {
    std::vector<int> differing;
    for (int rank = 0; rank < world_.size; ++rank) {
      if (entries[static_cast<std::size_t>(rank)].listed != mine.listed) differing.push_back(rank);
    }
    if (!differing.empty()) {
      // Every rank sees every list, so every rank throws this alike.
      std::vector<std::string> lists;
      for (int rank = 0; rank < world_.size; ++rank) {
        lists.push_back(fmt::format("rank {}: [{}]", global_rank(rank),
                                    entries[static_cast<std::size_t>(rank)].listed));
      }
      throw core::rank_error(ErrorKind::invalid_argument, global_rank(world_.rank),
                             "{}: the ranks passed different lists ({}); every rank must pass "
                             "the same list",
                             label, fmt::join(lists, "; "));
    }
  }
  const bool member = mine.color != kUndefinedColor;
  ChildWorld child;
  const std::string child_prefix = fmt::format("{}{}/", prefix, mine.color);
  if (member) {
    const auto members = members_of(entries, mine.color);
    child.world.size = static_cast<int>(members.size());
    child.world.rank = static_cast<int>(std::find(members.begin(), members.end(), world_.rank) -
                                        members.begin());
    std::vector<std::string> hosts;
    for (const int rank : members) {
      hosts.push_back(entries[static_cast<std::size_t>(rank)].host);
      child.global_ranks.push_back(global_rank(rank));
    }
    place_on_hosts(hosts, child.world.rank, child.world);
  }
  // MPI_Comm_split and ncclCommSplit are collective over every rank of the parent, those
  // opting out included.
  if (mpi_backend_) {
    child.mpi_backend =
        backend::split_mpi_backend(*mpi_backend_, mine.color, key, options_.op_timeout);
  }
  if (nccl_backend_) {
    child.nccl_backend = backend::split_nccl_backend(
        *nccl_backend_, mine.color, key,
        backend::NcclSetup{child.world.rank, child.world.size, child.world.local_rank, store_,
                           child_prefix + "nccl/", options_.op_timeout});
  }
  if (!member) return nullptr;

  child.world.job_id = world_.job_id;
  child.world.job_secret = world_.job_secret;
  child.world.source = label;
  child.options = options_;
  // The child's engine writes to the rank's one timeline (RINGFUSE_TIMELINE opens it once,
  // whichever engine starts first), on a process row of its own.
  child.timeline = timeline_;
  child.options.progress_file.clear();
  child.host = host_;
  child.label = std::move(label);
  child.key_prefix = child_prefix;
  child.advertise_host = advertise_host_;
  child.store = store_;
  child.kept_alive = kept_alive_;
  for (const std::shared_ptr<void>& owned :
       {std::shared_ptr<void>(external_store_), std::shared_ptr<void>(own_store_),
        std::shared_ptr<void>(store_server_), std::shared_ptr<void>(mpi_)}) {
    if (owned) child.kept_alive.push_back(owned);
  }
  child.abort_state = options_.group_failures == GroupFailures::contain
                          ? std::make_shared<transport::AbortState>()
                          : abort_state_;
  child.parent = lifeline_;
  return std::make_unique<ContextImpl>(std::move(child));
}

}  // namespace ringfuse::context
