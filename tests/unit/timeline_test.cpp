// The rank's timeline file: two timelines given one path (two Contexts of one process, as
// ringfuse.torch's session and a torch.distributed group with RINGFUSE_TIMELINE) each write a
// complete file of their own instead of one truncating and interleaving with the other.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/timeline.hpp"

namespace ringfuse::engine {
namespace {

class TimelineFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ringfuse-timeline-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "trace.json").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The names of the complete events in a finished timeline file (which must parse as JSON).
  static std::vector<std::string> event_names(const std::string& file) {
    std::ifstream in(file);
    const auto trace = nlohmann::json::parse(in);
    std::vector<std::string> names;
    for (const auto& event : trace) {
      if (event.at("ph") == "X") names.push_back(event.at("name"));
    }
    return names;
  }

  static void write_event(Timeline& timeline, const std::string& name) {
    const auto now = Clock::now();
    timeline.event(0, Timeline::kCollective, name, now, now);
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(TimelineFiles, ASecondTimelineOfTheSameRankAndPathWritesANumberedFileOfItsOwn) {
  Timeline first(0);
  Timeline second(0);
  first.start(path_, false);
  second.start(path_, false);
  EXPECT_EQ(first.file_name(), (dir_ / "trace.0.json").string());
  EXPECT_EQ(second.file_name(), (dir_ / "trace.0.2.json").string());
  write_event(first, "from the first");
  write_event(second, "from the second");
  first.stop();
  second.stop();
  EXPECT_EQ(event_names((dir_ / "trace.0.json").string()),
            std::vector<std::string>{"from the first"});
  EXPECT_EQ(event_names((dir_ / "trace.0.2.json").string()),
            std::vector<std::string>{"from the second"});
}

TEST_F(TimelineFiles, TheNameIsFreeAgainOnceItsTimelineStops) {
  Timeline first(0);
  Timeline second(0);
  first.start(path_, false);
  first.stop();
  second.start(path_, false);
  EXPECT_EQ(second.file_name(), (dir_ / "trace.0.json").string());
  write_event(second, "after");
  second.stop();
  EXPECT_EQ(event_names((dir_ / "trace.0.json").string()), std::vector<std::string>{"after"});
}

TEST_F(TimelineFiles, RestartingATimelineKeepsItsOwnName) {
  Timeline timeline(1);
  timeline.start(path_, false);
  write_event(timeline, "first window");
  timeline.start(path_, true);
  EXPECT_EQ(timeline.file_name(), (dir_ / "trace.1.json").string());
  write_event(timeline, "second window");
  timeline.stop();
  EXPECT_EQ(timeline.file_name(), "");
  EXPECT_EQ(event_names((dir_ / "trace.1.json").string()),
            std::vector<std::string>{"second window"});
}

TEST_F(TimelineFiles, AnUnwritablePathIsRefusedNamingTheFile) {
  Timeline timeline(0);
  try {
    timeline.start((dir_ / "missing-dir" / "trace.json").string(), false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing-dir/trace.0.json"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace ringfuse::engine
