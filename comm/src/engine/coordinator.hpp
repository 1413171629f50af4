// Rank 0's side of negotiation (Horovod's coordinator): collects every rank's announcements
// into a table, releases each collective once every rank that has not joined announced it, and
// turns disagreeing fingerprints into one error for all ranks. Matched by sequence number
// (released in sequence order), or in name mode by name: each name is released once every rank
// announced it, in the order names became ready here, numbered 1, 2, ... by release (each rank
// finds its own request by the name).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/messages.hpp"
#include "engine/rank_set.hpp"
#include "engine/response_cache.hpp"
#include "engine/stall_inspector.hpp"

namespace ringfuse::engine {

class Coordinator {
 public:
  Coordinator(int size, const ResponseCache& cache, MatchMode mode = MatchMode::sequence,
              RankNames names = {})
      : size_(size),
        mode_(mode),
        names_(std::move(names)),
        cache_(cache),
        joined_(size),
        busy_(size),
        runs_(size) {}

  void receive(int rank, CycleMessage message, Clock::time_point now);
  /// The response to the cycle whose messages were all received.
  CycleResponse respond(Clock::time_point now);
  /// The collectives waiting for some rank, for the stall inspector; without `described`,
  /// without their descriptions (formatting one costs more than the rest of a look at it).
  std::vector<WaitingCollective> waiting(bool described = true) const;

 private:
  struct Pending {
    std::vector<std::optional<Fingerprint>> by_rank;
    // The cache index each rank announced it by (kNotCached: a full fingerprint): when every
    // rank used the same one, the fingerprints agree without being compared.
    std::vector<std::int64_t> index_by_rank;
    Clock::time_point since;
    std::uint64_t arrival = 0;  // name mode: the order of first announcement
  };
  static constexpr std::int64_t kNotCached = -1;
  ReadyEntry release(std::uint64_t seq, Pending& pending) const;
  /// "#7" (sequence mode) or "'grad.w'" (name mode): how messages name a collective.
  std::string label(std::uint64_t seq, const std::string& name) const;
  /// Name mode: releases every name that every rank (not joined) announced, in arrival order.
  void release_by_name(CycleResponse& response);
  bool present(const Pending& pending, int rank) const;
  /// `rank` announced collective `seq` as `fp` (by `cache_index`, or kNotCached); `since`
  /// dates the table entry if this is its first announcement.
  void record(int rank, std::uint64_t seq, Fingerprint fp, std::int64_t cache_index,
              Clock::time_point since);

  // The short way (messages.hpp): what a rank sent by cache index this cycle.
  struct IndexedRun {
    std::uint64_t first_seq = 0;
    std::vector<std::uint32_t> indices;
  };
  /// Ends this cycle's short way: how many collectives every rank releases, or nullopt after
  /// taking every run into the table (something else is pending, or the runs disagree).
  std::optional<std::uint32_t> settle_indexed(Clock::time_point now);
  std::optional<std::uint32_t> agreed_prefix() const;
  void note_held_by_index(std::uint32_t released, Clock::time_point now);
  void absorb_indexed(Clock::time_point now);
  Clock::time_point first_seen(std::uint64_t seq, Clock::time_point otherwise) const;

  int size_;
  MatchMode mode_;
  RankNames names_;
  const ResponseCache& cache_;
  std::map<std::uint64_t, Pending> table_;
  std::map<std::string, Pending> named_;  // name mode's table
  std::uint64_t arrivals_ = 0;
  std::vector<bool> joined_;
  std::vector<bool> busy_;
  int last_joined_ = -1;
  std::optional<int> shutdown_rank_;
  std::uint64_t next_release_ = 1;

  std::vector<IndexedRun> runs_;  // by rank, this cycle
  bool any_full_ = false;         // some rank announced the full way this cycle
  // When collectives still held by index were first sent: (first seq, time) in sequence order,
  // as every later cycle only adds higher sequence numbers; and one past the highest seen.
  std::deque<std::pair<std::uint64_t, Clock::time_point>> indexed_seen_;
  std::uint64_t indexed_seen_until_ = 0;
  // The first few collectives held by index that some rank has not sent (the others cannot
  // run before them), for the stall inspector.
  std::vector<WaitingCollective> indexed_waiting_;
};

}  // namespace ringfuse::engine
