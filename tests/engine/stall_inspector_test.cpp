// StallInspector::due() lets the coordinator format the pending collectives' descriptions only
// when inspect() will show them; it must say yes exactly when inspect() warns or aborts.
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "engine/stall_inspector.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::engine::Clock;
using ringfuse::engine::StallInspector;
using ringfuse::engine::WaitingCollective;

WaitingCollective pending(std::uint64_t seq, Clock::time_point since, bool someone_missing) {
  WaitingCollective item{seq, "'w' f32[4] sum", {0}, {}, since};
  if (someone_missing) item.missing = {1};
  return item;
}

// Walks one inspector through a stall and checks due() against what inspect() then did.
TEST(StallInspectorDue, SaysYesExactlyWhenInspectWarnsOrAborts) {
  StallInspector inspector(10s, 60s);
  const auto t0 = Clock::now();
  const auto check = [&](Clock::time_point now, const std::vector<WaitingCollective>& waiting,
                         const std::vector<int>& silent, Clock::time_point started,
                         bool expect_due) {
    const bool due = inspector.due(now, waiting, silent, started);
    EXPECT_EQ(due, expect_due);
    // When due() says no, inspect() must not abort (its warnings are logged, not returned;
    // that it gave one shows in the next step's due() turning false).
    const auto verdict = inspector.inspect(now, waiting, silent, started);
    if (!due) {
      EXPECT_FALSE(verdict.has_value());
    }
    return verdict;
  };
  const std::vector<WaitingCollective> none;
  check(t0, none, {}, t0, false);
  check(t0 + 5s, {pending(1, t0, true)}, {}, t0, false);        // not yet a stall
  check(t0 + 11s, {pending(1, t0, true)}, {}, t0, true);        // warns for #1
  check(t0 + 12s, {pending(1, t0, true)}, {}, t0, false);       // already warned
  check(t0 + 12s, {pending(1, t0, false)}, {}, t0, false);      // nobody missing
  check(t0 + 12s, {pending(2, t0, true)}, {}, t0, true);        // a new one
  check(t0 + 12s, none, {1}, t0 + 5s, false);                   // silent, not yet long
  check(t0 + 16s, none, {1}, t0 + 5s, true);                    // silent: warns once
  check(t0 + 17s, none, {1}, t0 + 5s, false);
  const auto abort = check(t0 + 61s, {pending(1, t0, true)}, {}, t0, true);
  EXPECT_TRUE(abort.has_value());
  EXPECT_TRUE(check(t0 + 70s, none, {1}, t0 + 5s, true).has_value());  // silent past abort
}

}  // namespace
