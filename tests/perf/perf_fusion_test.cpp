// `ringfuse-perf fusion` as a user runs it: the 1,000 x 4 KiB model under ringfuse-run, then the
// table is read back. Timings are not checked (this machine is shared); shape and correctness are.
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "subprocess.hpp"

namespace {

using ringfuse::testing::run_process;

std::vector<std::string> split(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

// The first table (header "# model mode ..."), with ringfuse-run's "[0] " prefix removed.
std::vector<std::map<std::string, std::string>> parse_rows(const std::string& output,
                                                           std::vector<std::string>& columns) {
  std::vector<std::map<std::string, std::string>> rows;
  std::istringstream in(output);
  bool in_table = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("[0] ", 0) == 0) line = line.substr(4);
    if (line.rfind("#", 0) == 0) {
      const auto words = split(line.substr(1));
      if (columns.empty() && words.size() > 1 && words[0] == "model" && words[1] == "mode") {
        columns = words;
        in_table = true;
      } else if (in_table) {
        break;
      }
      continue;
    }
    if (!in_table) continue;
    const auto words = split(line);
    if (words.size() != columns.size()) continue;
    std::map<std::string, std::string> row;
    for (std::size_t i = 0; i < words.size(); ++i) row[columns[i]] = words[i];
    rows.push_back(row);
  }
  return rows;
}

TEST(PerfFusion, Small1000UnderRingfuseRun) {
  const auto r = run_process({RINGFUSE_RUN_PATH, "-np", "2", "--", RINGFUSE_PERF_PATH, "fusion",
                              "--model", "small1000", "-n", "2", "-w", "1"},
                             {{"RINGFUSE_TIMEOUT_S", "15"}}, std::chrono::seconds(18));
  ASSERT_FALSE(r.timed_out) << r.output;
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> columns;
  const auto rows = parse_rows(r.output, columns);
  // The columns users parse, then the paired ratio (added, issue 18).
  EXPECT_EQ(columns, (std::vector<std::string>{"model", "mode", "tensors", "bytes", "time_us",
                                               "vs_single", "vs_fused", "wrong",
                                               "paired_vs_single"}));
  std::map<std::string, std::map<std::string, std::string>> by_mode;
  for (const auto& row : rows) by_mode[row.at("model") + "/" + row.at("mode")] = row;
  // unfused-no-eng: the same blocking calls before the engine was started, in the same run.
  for (const std::string mode : {"small1000/single", "small1000/fused", "small1000/unfused",
                                 "small1000/unfused-no-eng", "scalar/single", "scalar/fused"}) {
    ASSERT_EQ(by_mode.count(mode), 1u) << mode << "\n" << r.output;
    const auto& row = by_mode.at(mode);
    EXPECT_EQ(row.at("wrong"), "0") << mode << "\n" << r.output;
    EXPECT_GT(std::stod(row.at("time_us")), 0.0) << mode;
  }
  EXPECT_EQ(by_mode.count("small1000/mpi-per-tensor"), 0u) << r.output;  // not under mpirun
  EXPECT_EQ(by_mode.at("small1000/fused").at("tensors"), "1000");
  EXPECT_EQ(by_mode.at("small1000/fused").at("bytes"), "4096000");
  EXPECT_EQ(by_mode.at("small1000/fused").at("vs_fused"), "1.000");
  EXPECT_EQ(by_mode.at("small1000/single").at("vs_single"), "1.000");
  // Interleaved by default: every mode after the engine started ran in the same rounds, so
  // each has a paired ratio; the row measured before the engine, alone, has none.
  EXPECT_NE(r.output.find("# order: interleaved"), std::string::npos) << r.output;
  EXPECT_EQ(by_mode.at("small1000/single").at("paired_vs_single"), "1.000");
  EXPECT_GT(std::stod(by_mode.at("small1000/fused").at("paired_vs_single")), 0.0);
  EXPECT_GT(std::stod(by_mode.at("small1000/unfused").at("paired_vs_single")), 0.0);
  EXPECT_GT(std::stod(by_mode.at("scalar/fused").at("paired_vs_single")), 0.0);
  EXPECT_EQ(by_mode.at("small1000/unfused-no-eng").at("paired_vs_single"), "-");
  EXPECT_NE(r.output.find("# small1000: unfused with the engine started / before it: "),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("# out of bounds values : 0 OK"), std::string::npos) << r.output;
  // Steady state: the one timed step of 1,000 tensors hit the response cache for every tensor.
  EXPECT_NE(r.output.find("engine stats per timed step"), std::string::npos) << r.output;
}

// --order sequential: each mode's iterations together, as before interleaving; no pairs.
TEST(PerfFusion, SequentialOrderHasNoPairedRatios) {
  const auto r = run_process({RINGFUSE_RUN_PATH, "-np", "2", "--", RINGFUSE_PERF_PATH, "fusion",
                              "--model", "small1000", "-n", "2", "-w", "1", "--modes",
                              "single,fused", "--order", "sequential"},
                             {{"RINGFUSE_TIMEOUT_S", "15"}}, std::chrono::seconds(18));
  ASSERT_FALSE(r.timed_out) << r.output;
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> columns;
  const auto rows = parse_rows(r.output, columns);
  ASSERT_EQ(rows.size(), 4u) << r.output;  // small1000 and scalar, single and fused
  for (const auto& row : rows) {
    EXPECT_EQ(row.at("wrong"), "0") << r.output;
    EXPECT_EQ(row.at("paired_vs_single"), "-") << r.output;
  }
  EXPECT_NE(r.output.find("# order: sequential"), std::string::npos) << r.output;
}

TEST(PerfFusion, UnknownModelIsAClearError) {
  const auto r = run_process({RINGFUSE_PERF_PATH, "fusion", "--model", "vgg"}, {},
                             std::chrono::seconds(10));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--model vgg"), std::string::npos) << r.output;
}

}  // namespace
