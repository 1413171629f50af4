// Names the ranks everybody else is waiting for: after RINGFUSE_STALL_TIMEOUT_S a warning that
// lists the missing ranks and the collectives they have not submitted (or that they stopped
// taking part in negotiation altogether); after RINGFUSE_STALL_ABORT_S the abort reason that
// the coordinator sends to every rank.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/rank_set.hpp"
#include "engine/request.hpp"

namespace ringfuse::engine {

struct WaitingCollective {
  std::uint64_t seq;
  std::string description;     // 'name' f32[...] sum
  std::vector<int> submitted;  // ranks that announced it
  std::vector<int> missing;    // ranks that did not (and have not joined)
  Clock::time_point since;     // first announcement
  bool numbered = true;        // false in name mode: `seq` is only a key, not shown
};

class StallInspector {
 public:
  StallInspector(std::chrono::milliseconds warning, std::chrono::milliseconds abort,
                 RankNames names = {})
      : warning_(warning), abort_(abort), names_(std::move(names)) {}

  /// `silent` are ranks whose message for the current cycle has not arrived since
  /// `cycle_started`. Logs warnings (once per stall); returns an abort reason when due.
  std::optional<std::string> inspect(Clock::time_point now,
                                     const std::vector<WaitingCollective>& waiting,
                                     const std::vector<int>& silent,
                                     Clock::time_point cycle_started);
  /// Whether inspect() would warn or abort now; needs no descriptions in `waiting`, so that a
  /// caller formats them only when they are shown.
  bool due(Clock::time_point now, const std::vector<WaitingCollective>& waiting,
           const std::vector<int>& silent, Clock::time_point cycle_started) const;
  /// Forget warned stalls that resolved (call after each completed cycle).
  void resolved(const std::vector<WaitingCollective>& still_waiting);

 private:
  std::string describe(Clock::time_point now, const std::vector<WaitingCollective>& waiting,
                       const std::vector<int>& silent, Clock::time_point cycle_started) const;

  std::chrono::milliseconds warning_;
  std::chrono::milliseconds abort_;
  RankNames names_;
  std::set<std::uint64_t> warned_;
  bool warned_silent_ = false;
};

}  // namespace ringfuse::engine
