// Horovod's variables for the engine's tunables, as the Horovod API (ringfuse.torch) reads
// them (core/horovod_variables.hpp): each stands in for its RINGFUSE_* variable when that is
// unset, in Horovod's own spelling of the value.
#include "core/horovod_variables.hpp"

#include <map>
#include <string>

#include <gtest/gtest.h>

#include "core/environment.hpp"
#include "core/tunables.hpp"
#include "env_map.hpp"
#include "expect_error.hpp"
#include "ringfuse/error.hpp"

namespace {

using ringfuse::ErrorKind;
using ringfuse::Options;
using ringfuse::test_support::env_of;
using ringfuse::test_support::expect_error;
using namespace std::chrono_literals;

Options horovod_options(const std::map<std::string, std::string>& vars) {
  return ringfuse::core::parse_options(ringfuse::core::with_horovod_variables(env_of(vars)));
}

std::string horovod_error(const std::map<std::string, std::string>& vars) {
  return expect_error(ErrorKind::invalid_config, [&] { horovod_options(vars); });
}

TEST(HorovodVariables, EachSetsTheTunableItNames) {
  const auto options = horovod_options({{"HOROVOD_FUSION_THRESHOLD", "67108864"},
                                        {"HOROVOD_CYCLE_TIME", "0.5"},
                                        {"HOROVOD_CACHE_CAPACITY", "0"},
                                        {"HOROVOD_TIMELINE", "/tmp/timeline.json"},
                                        {"HOROVOD_TIMELINE_MARK_CYCLES", "1"},
                                        {"HOROVOD_STALL_CHECK_TIME_SECONDS", "30"},
                                        {"HOROVOD_STALL_SHUTDOWN_TIME_SECONDS", "120"},
                                        {"HOROVOD_HIERARCHICAL_ALLREDUCE", "1"},
                                        {"HOROVOD_LOG_LEVEL", "WARNING"}});
  EXPECT_EQ(options.engine.fusion_threshold, std::size_t{64} << 20);
  EXPECT_EQ(options.engine.cycle_time, 500us);
  EXPECT_EQ(options.engine.cache_capacity, 0U);
  EXPECT_EQ(options.engine.timeline_path, "/tmp/timeline.json");
  EXPECT_TRUE(options.engine.timeline_mark_cycles);
  EXPECT_EQ(options.engine.stall_warning, 30s);
  EXPECT_EQ(options.engine.stall_abort, 120s);
  EXPECT_EQ(options.hierarchical, ringfuse::Hierarchical::on);
  EXPECT_EQ(options.log_level, "warn");
}

TEST(HorovodVariables, EveryOneNamesARealTunable) {
  for (const auto& row : ringfuse::core::horovod_variables()) {
    EXPECT_NE(ringfuse::core::find_tunable(row.ringfuse), nullptr) << row.horovod;
  }
}

TEST(HorovodVariables, HorovodsSpellingsOfSwitchesAndLevels) {
  EXPECT_EQ(horovod_options({{"HOROVOD_HIERARCHICAL_ALLREDUCE", "0"}}).hierarchical,
            ringfuse::Hierarchical::off);
  EXPECT_FALSE(horovod_options({{"HOROVOD_TIMELINE_MARK_CYCLES", "0"}}).engine.timeline_mark_cycles);
  EXPECT_EQ(horovod_options({{"HOROVOD_LOG_LEVEL", "fatal"}}).log_level, "critical");
  EXPECT_EQ(horovod_options({{"HOROVOD_LOG_LEVEL", "DEBUG"}}).log_level, "debug");
}

TEST(HorovodVariables, RingfusesOwnVariableWins) {
  const auto options = horovod_options(
      {{"HOROVOD_CYCLE_TIME", "0.5"}, {"RINGFUSE_CYCLE_TIME_MS", "2"}});
  EXPECT_EQ(options.engine.cycle_time, 2ms);
  const auto said = ringfuse::core::horovod_variables_not_honoured(
      env_of({{"HOROVOD_CYCLE_TIME", "0.5"}, {"RINGFUSE_CYCLE_TIME_MS", "2"}}));
  ASSERT_EQ(said.size(), 1U);
  EXPECT_NE(said[0].find("HOROVOD_CYCLE_TIME='0.5' is not used: RINGFUSE_CYCLE_TIME_MS='2'"),
            std::string::npos)
      << said[0];
}

TEST(HorovodVariables, ValuesMeaningUnsetLeaveRingfusesDefaults) {
  // DYNAMIC: no file until hvd.start_timeline(). 0: Horovod never shuts a stall down;
  // Ringfuse keeps its own limit, and says so.
  const std::map<std::string, std::string> vars{{"HOROVOD_TIMELINE", "DYNAMIC"},
                                                {"HOROVOD_STALL_SHUTDOWN_TIME_SECONDS", "0"}};
  const auto options = horovod_options(vars);
  EXPECT_TRUE(options.engine.timeline_path.empty());
  EXPECT_EQ(options.engine.stall_abort, Options{}.engine.stall_abort);
  const auto said = ringfuse::core::horovod_variables_not_honoured(env_of(vars));
  ASSERT_EQ(said.size(), 1U);
  EXPECT_NE(said[0].find("HOROVOD_STALL_SHUTDOWN_TIME_SECONDS=0"), std::string::npos) << said[0];
}

TEST(HorovodVariables, AStallCheckBeyondTheDefaultAbortMovesTheAbort) {
  // Horovod has no abort unless asked, so 600 s is a valid check time there.
  const auto options = horovod_options({{"HOROVOD_STALL_CHECK_TIME_SECONDS", "600"}});
  EXPECT_EQ(options.engine.stall_warning, 600s);
  EXPECT_EQ(options.engine.stall_abort, 600s);
  const auto read = ringfuse::core::horovod_variables_read(
      env_of({{"HOROVOD_STALL_CHECK_TIME_SECONDS", "600"}}));
  ASSERT_EQ(read.size(), 2U);
  EXPECT_EQ(read[0], "HOROVOD_STALL_CHECK_TIME_SECONDS='600' as RINGFUSE_STALL_TIMEOUT_S=600");
  EXPECT_NE(read[1].find("RINGFUSE_STALL_ABORT_S=600"), std::string::npos) << read[1];
}

TEST(HorovodVariables, ABadValueNamesTheHorovodVariable) {
  const auto message = horovod_error({{"HOROVOD_CYCLE_TIME", "fast"}});
  EXPECT_NE(message.find("HOROVOD_CYCLE_TIME='fast' (Horovod's name for RINGFUSE_CYCLE_TIME_MS)"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("milliseconds"), std::string::npos) << message;
  EXPECT_NE(horovod_error({{"HOROVOD_HIERARCHICAL_ALLREDUCE", "yes"}})
                .find("HOROVOD_HIERARCHICAL_ALLREDUCE='yes'"),
            std::string::npos);
  EXPECT_NE(horovod_error({{"HOROVOD_LOG_LEVEL", "loud"}}).find("HOROVOD_LOG_LEVEL='loud'"),
            std::string::npos);
}

TEST(HorovodVariables, WhatRingfuseDoesDifferentlyIsSaid) {
  const auto said = ringfuse::core::horovod_variables_not_honoured(
      env_of({{"HOROVOD_AUTOTUNE", "1"}, {"HOROVOD_STALL_CHECK_DISABLE", "1"}}));
  ASSERT_EQ(said.size(), 2U);
  EXPECT_NE(said[0].find("HOROVOD_AUTOTUNE"), std::string::npos) << said[0];
  EXPECT_NE(said[1].find("HOROVOD_STALL_CHECK_DISABLE"), std::string::npos) << said[1];
  EXPECT_TRUE(ringfuse::core::horovod_variables_not_honoured(env_of({{"HOROVOD_AUTOTUNE", "0"}}))
                  .empty());
}

TEST(HorovodVariables, TheyAreNotReadWithoutTheHorovodApi) {
  // parse_options alone (C++ init(), the c10d backend) reads only RINGFUSE_* variables.
  const auto options = ringfuse::core::parse_options(env_of({{"HOROVOD_CYCLE_TIME", "0.5"}}));
  EXPECT_EQ(options.engine.cycle_time, Options{}.engine.cycle_time);
}

}  // namespace
