#include "engine/stall_inspector.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/rank_set.hpp"

namespace ringfuse::engine {
namespace {

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace

std::string StallInspector::describe(Clock::time_point now,
                                     const std::vector<WaitingCollective>& waiting,
                                     const std::vector<int>& silent,
                                     Clock::time_point cycle_started) const {
  std::vector<std::string> parts;
  if (!silent.empty()) {
    parts.push_back(fmt::format("{} {} not taken part in negotiation for {:.1f} s (stopped, "
                                "hung, or busy without calling the engine)",
                                names_.describe(silent), silent.size() == 1 ? "has" : "have",
                                seconds_between(cycle_started, now)));
  }
  std::size_t listed = 0;
  for (const auto& item : waiting) {
    if (item.missing.empty() || now - item.since < warning_) continue;
    if (++listed > 8) {
      parts.push_back("...");
      break;
    }
    parts.push_back(fmt::format("{} {} not submitted collective {}{} for {:.1f} s ({} did)",
                                names_.describe(item.missing),
                                item.missing.size() == 1 ? "has" : "have",
                                item.numbered ? fmt::format("#{} ", item.seq) : std::string(),
                                item.description, seconds_between(item.since, now),
                                names_.describe(item.submitted)));
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

bool StallInspector::due(Clock::time_point now, const std::vector<WaitingCollective>& waiting,
                         const std::vector<int>& silent, Clock::time_point cycle_started) const {
  // The same decisions as inspect() makes, without its side effects.
  if (!silent.empty() && now - cycle_started >= abort_) return true;
  if (!silent.empty() && now - cycle_started >= warning_ && !warned_silent_) return true;
  return std::any_of(waiting.begin(), waiting.end(), [&](const WaitingCollective& item) {
    return !item.missing.empty() &&
           (now - item.since >= abort_ ||
            (now - item.since >= warning_ && warned_.count(item.seq) == 0));
  });
}

std::optional<std::string> StallInspector::inspect(Clock::time_point now,
                                                   const std::vector<WaitingCollective>& waiting,
                                                   const std::vector<int>& silent,
                                                   Clock::time_point cycle_started) {
  bool stalled_silent = !silent.empty() && now - cycle_started >= warning_;
  bool aborting = !silent.empty() && now - cycle_started >= abort_;
  bool new_warning = stalled_silent && !warned_silent_;
  for (const auto& item : waiting) {
    if (item.missing.empty()) continue;
    if (now - item.since >= abort_) aborting = true;
    if (now - item.since >= warning_ && warned_.insert(item.seq).second) new_warning = true;
  }
  if (!aborting && !new_warning) return std::nullopt;
  const std::vector<int> shown_silent = stalled_silent ? silent : std::vector<int>{};
  const auto text = describe(now, waiting, shown_silent, cycle_started);
  if (aborting) {
    return fmt::format("{}: stall: {}; aborting every rank after "
                       "RINGFUSE_STALL_ABORT_S={} s",
                       names_.engine(), text, abort_.count() / 1000.0);
  }
  warned_silent_ = warned_silent_ || stalled_silent;
  spdlog::warn("{}: stall inspector (RINGFUSE_STALL_TIMEOUT_S={} s): {}", names_.engine(),
               warning_.count() / 1000.0, text);
  return std::nullopt;
}

void StallInspector::resolved(const std::vector<WaitingCollective>& still_waiting) {
  warned_silent_ = false;
  std::set<std::uint64_t> keep;
  for (const auto& item : still_waiting) {
    if (warned_.count(item.seq) != 0) keep.insert(item.seq);
  }
  warned_.swap(keep);
}

}  // namespace ringfuse::engine
