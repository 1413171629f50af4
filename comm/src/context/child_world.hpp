// What a child Context (Context::split, subgroup, a process set) takes from the Context it is
// made from: its place among the members, the store its rendezvous runs over (under a key
// prefix of its own), the settings of its connections, and a lifeline that tells it whether
// the parent still exists. The child builds its own transports and engine from these.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "rendezvous/store.hpp"
#include "ringfuse/context.hpp"
#include "transport/abort_state.hpp"

namespace ringfuse::engine {
class Timeline;  // engine/timeline.hpp
}

namespace ringfuse::context {

/// Shared by a Context and every child made from it: cleared when the Context is destroyed,
/// so a child that outlived its parent says so instead of using what the parent owned.
struct Lifeline {
  std::atomic<bool> alive{true};
  std::weak_ptr<Lifeline> parent;  // the parent's own lifeline (a grandchild checks both)
};

struct ChildWorld {
  /// rank and size among the members; local/cross computed from the members' hosts; the
  /// parent's job id and secret.
  WorldSpec world;
  Options options;
  std::vector<int> global_ranks;  // child rank -> rank in the world init() built
  std::string host;               // this rank's host identity (nested splits compare them)
  std::string label;              // "split 2 (color 1) of world"
  std::string key_prefix;         // "<parent prefix>split/<n>/<color>/"
  std::string advertise_host;
  rendezvous::Store* store = nullptr;                  // null for a child of one
  std::vector<std::shared_ptr<void>> kept_alive;       // the store (and MPI) it runs over
  std::shared_ptr<transport::AbortState> abort_state;  // the parent's, unless contained
  std::shared_ptr<Lifeline> parent;
  std::unique_ptr<backend::Backend> mpi_backend;       // split from the parent's, or null
  std::unique_ptr<backend::Backend> nccl_backend;      // split from the parent's, or null
  std::shared_ptr<engine::Timeline> timeline;          // the rank's, shared with the parent
};

/// One rank's part in a split, as every rank of the parent publishes it.
struct SplitEntry {
  int color = kUndefinedColor;
  int key = 0;
  std::string host;
  std::string listed;  // subgroup(): the list this rank passed, to check that all agree

  std::string encode() const;
  static SplitEntry decode(const std::string& text);
};

/// The members of `color` (ranks of the parent), ordered by key, then by parent rank.
std::vector<int> members_of(const std::vector<SplitEntry>& entries, int color);

/// Where rank `member` of `hosts` (each member's host, in child order) sits: its place among
/// the members on its host, their number, its host's place among the hosts (in order of first
/// appearance) and their number. Sets local_rank, local_size, cross_rank, cross_size.
void place_on_hosts(const std::vector<std::string>& hosts, int member, WorldSpec& world);

/// A process set of a Context: its ranks, and its Context on a member (null elsewhere).
struct ProcessSets {
  struct Set {
    std::vector<int> ranks;
    std::unique_ptr<Context> context;
  };
  std::map<int, Set> sets;
  int next_id = 1;
};

}  // namespace ringfuse::context
