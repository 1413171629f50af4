// The negotiation half of the engine (Horovod's Controller): each cycle, announce what this
// rank holds (by cache index when everything is cached, else full fingerprints), let the
// coordinator on rank 0 collect every rank's announcement and answer, release what every
// rank agreed on, and keep the response cache identical on every rank. The engine thread
// calls cycle(); nothing here runs a collective.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/control_channel.hpp"
#include "engine/coordinator.hpp"
#include "engine/messages.hpp"
#include "engine/outstanding.hpp"
#include "engine/response_cache.hpp"
#include "engine/stall_inspector.hpp"
#include "ringfuse/engine.hpp"

namespace ringfuse::engine {

/// One negotiation cycle's result: the coordinator's response with `ready` filled in on
/// every rank, and what it did to the response cache.
struct Cycle {
  CycleResponse response;
  std::size_t announced = 0;  // collectives this rank announced (by index or in full)
  std::uint64_t cache_hits = 0;
  std::uint64_t cache_misses = 0;
  std::uint64_t cache_evictions = 0;
};

class Negotiator {
 public:
  Negotiator(int rank, int size, const EngineConfig& config,
             std::unique_ptr<transport::Transport> control, RankNames names = {});

  /// Remembers a collective taken from the queue (already in `outstanding`), to announce.
  void hold(std::uint64_t seq) { held_.push_back(Held{seq, std::nullopt, 0}); }
  /// Forgets everything held (the engine failed or shut down).
  void drop_held() { clear_held(); }
  /// Takes back a cycle's ready entries once they ran: the next cycle released the short way
  /// refills them, reusing their strings' and vectors' memory instead of allocating per tensor.
  /// Keeps the larger set, so that an idle cycle in between does not throw a step's away.
  void recycle(std::vector<ReadyEntry>&& ready) {
    if (ready.size() >= spare_ready_.size()) spare_ready_ = std::move(ready);
  }

  /// Runs one cycle. `join`: this rank called join() this cycle; `join_pending`: its join()
  /// has not completed yet; `shutdown`: this rank's engine is being destroyed, since
  /// `stop_requested` (after which a silent coordinator or peer is given 2 s).
  /// A collective released the short way gives its fingerprint to its ready entry (see
  /// release_held): from then on read it there, not in `outstanding`.
  Cycle cycle(Outstanding& outstanding, bool join, bool join_pending, bool shutdown,
              Clock::time_point stop_requested);

 private:
  CycleMessage announce(const Outstanding& outstanding, bool join, bool join_pending,
                        bool shutdown);
  CycleResponse exchange(CycleMessage message, Clock::time_point stop_requested);
  CycleResponse coordinate(CycleMessage message, Clock::time_point stop_requested);
  /// After a cycle answered the short way: moves the released collectives from held_ into
  /// response.ready, as the coordinator would have listed them. Each entry takes its
  /// request's fingerprint by swap, not by copy, and the request keeps the entry's old one
  /// (memory for the callers to fill again): nothing reads a request's fingerprint once its
  /// collective was released, and a copy reads and writes each name's and shape's memory,
  /// which after a training step's compute is no longer in the caches (issue 18).
  void release_held(Outstanding& outstanding, CycleResponse& response);
  /// The stall inspector's verdict on what the coordinator waits for (rank 0).
  std::optional<std::string> inspect_stalls(const std::vector<int>& silent,
                                            Clock::time_point cycle_started);
  /// Takes every released collective into the response cache, identically on every rank.
  void update_cache(Cycle& cycle);
  /// cache_.find(fp), trying the slot after the last one found first: a training loop
  /// enqueues the same tensors in the same order every step, and the cache numbered them in
  /// that order when it first took them, so that guess is mostly right and costs one
  /// comparison instead of hashing the fingerprint.
  std::optional<std::uint32_t> look_up(const Fingerprint& fp);

  /// Name mode: each rank finds its own request for a released name; a rank that joined (and
  /// so holds none) gets sequence number 0, which no request has.
  void resolve_names(const Outstanding& outstanding, CycleResponse& response) const;

  int rank_;
  int size_;
  RankNames names_;
  MatchMode match_;
  std::chrono::milliseconds stall_abort_;
  ControlChannel control_;
  ResponseCache cache_;
  Coordinator coordinator_;  // used on rank 0 only
  StallInspector stall_;
  // A collective in `outstanding` that is not yet in the coordinator's table: sent by cache
  // index each cycle until released (messages.hpp). The index is looked up once (hashing the
  // whole fingerprint) and kept while the cache has evicted nothing since, as inserting never
  // moves an entry: a tensor held over several cycles is not looked up again each cycle.
  struct Held {
    std::uint64_t seq = 0;
    std::optional<std::uint32_t> index;
    std::uint64_t looked_up_at = 0;  // cache_.evictions() then
  };
  // In sequence order, from held_head_ on (released ones before it: a vector with a moving
  // front rather than a deque, whose blocks a step of 1,000 tensors allocated and freed
  // every cycle); the indices of the last message are those of its first entries.
  std::vector<Held> held_;
  std::size_t held_head_ = 0;
  std::span<Held> held() { return std::span(held_).subspan(held_head_); }
  void clear_held() {
    held_.clear();
    held_head_ = 0;
  }
  /// Prefetches the fingerprints that announce() compares kAhead entries after the i-th of
  /// `pending` (its request's and the cache slot look_up() will try first).
  void prefetch_ahead(const Outstanding& outstanding, std::span<const Held> pending,
                      std::size_t i) const;
  std::vector<ReadyEntry> spare_ready_;  // recycle()
  std::optional<std::uint32_t> last_found_;  // look_up()
};

}  // namespace ringfuse::engine
