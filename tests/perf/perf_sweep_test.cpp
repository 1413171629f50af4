// ringfuse-perf as a user runs it: a tiny sweep per launcher, then the table and the JSON are
// read back. Timings are not checked (this machine is shared); shape and correctness are.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "subprocess.hpp"

namespace {

using ringfuse::testing::run_process;
constexpr auto kTimeout = std::chrono::seconds(40);

const std::vector<std::string> kColumns = {"impl",    "size",       "count",      "type",
                                           "redop",   "algo",       "time_us",    "algbw_GBps",
                                           "busbw_GBps", "wrong"};

struct Table {
  std::vector<std::string> columns;
  std::vector<std::map<std::string, std::string>> rows;
};

std::vector<std::string> split(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

// ringfuse-run prefixes lines with "[rank] "; mpirun does not.
std::string strip_rank_prefix(const std::string& line) {
  if (line.rfind("[0] ", 0) == 0) return line.substr(4);
  return line;
}

Table parse_table(const std::string& output) {
  Table t;
  std::istringstream in(output);
  bool in_table = false;
  for (std::string raw; std::getline(in, raw);) {
    const std::string line = strip_rank_prefix(raw);
    if (line.rfind("#", 0) == 0) {
      const auto words = split(line.substr(1));
      if (!words.empty() && words.front() == "impl") {
        t.columns = words;
        in_table = true;
      } else if (in_table) {
        in_table = false;
      }
      continue;
    }
    if (!in_table) continue;
    const auto words = split(line);
    if (words.size() != t.columns.size()) continue;
    std::map<std::string, std::string> row;
    for (std::size_t i = 0; i < words.size(); ++i) row[t.columns[i]] = words[i];
    t.rows.push_back(row);
  }
  return t;
}

std::string temp_json(const std::string& name) {
  return (::testing::TempDir().empty() ? std::string("/tmp/") : ::testing::TempDir()) +
         "ringfuse-perf-" + name + "-" + std::to_string(::getpid()) + ".json";
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "no JSON at " << path;
  return nlohmann::json::parse(in);  // throws (and fails the test) on malformed JSON
}

void expect_columns(const Table& t, bool with_ratio) {
  auto want = kColumns;
  if (with_ratio) want.push_back("ratio");
  EXPECT_EQ(t.columns, want);
}

TEST(PerfSweep, RingfuseRunAllreduceTableAndJson) {
  const std::string json = temp_json("rr");
  const auto r = run_process({RINGFUSE_RUN_PATH, "-np", "2", "--", RINGFUSE_PERF_PATH, "allreduce",
                              "-b", "4K", "-e", "64K", "-f", "4", "-n", "3", "-w", "1", "--json",
                              json},
                             {{"RINGFUSE_TIMEOUT_S", "30"}}, kTimeout);
  ASSERT_FALSE(r.timed_out) << r.output;
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Table t = parse_table(r.output);
  expect_columns(t, false);
  ASSERT_EQ(t.rows.size(), 3u) << r.output;  // 4K, 16K, 64K
  const std::vector<std::string> sizes = {"4096", "16384", "65536"};
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    EXPECT_EQ(t.rows[i].at("impl"), "ringfuse");
    EXPECT_EQ(t.rows[i].at("size"), sizes[i]);
    EXPECT_EQ(t.rows[i].at("type"), "f32");
    EXPECT_EQ(t.rows[i].at("redop"), "sum");
    EXPECT_EQ(t.rows[i].at("wrong"), "0") << r.output;
    EXPECT_GT(std::stod(t.rows[i].at("time_us")), 0.0);
  }
  const auto doc = read_json(json);
  EXPECT_EQ(doc.at("nranks"), 2);
  ASSERT_EQ(doc.at("rows").size(), 3u);
  for (const auto& row : doc.at("rows")) {
    EXPECT_EQ(row.at("wrong"), 0);
    // busbw = algbw * 2(n-1)/n, which is algbw itself for n = 2.
    EXPECT_DOUBLE_EQ(row.at("busbw_GBps").get<double>(), row.at("algbw_GBps").get<double>());
  }
  std::remove(json.c_str());
}

TEST(PerfSweep, EveryCollectiveOnThreeRanksIsCorrect) {
  // Three ranks: a world size that is not a power of two, and sizes not divisible by it.
  for (const std::string collective :
       {"broadcast", "allgather", "reducescatter", "alltoall", "barrier"}) {
    const auto r = run_process({RINGFUSE_RUN_PATH, "-np", "3", "--", RINGFUSE_PERF_PATH,
                                collective, "-b", "4K", "-e", "16K", "-f", "4", "-n", "2", "-w",
                                "1", "-d", "i32", "--peers", "gloo"},
                               {{"RINGFUSE_TIMEOUT_S", "30"}}, kTimeout);
    ASSERT_FALSE(r.timed_out) << collective << "\n" << r.output;
    ASSERT_EQ(r.exit_code, 0) << collective << "\n" << r.output;
    const Table t = parse_table(r.output);
    expect_columns(t, true);
    // Per size: ours, plus Gloo's two algorithms (one for reducescatter and alltoall).
    const std::size_t sizes = collective == "barrier" ? 1 : 2;
    const std::size_t gloo_per_size =
        collective == "reducescatter" || collective == "alltoall" ? 1 : 2;
    ASSERT_EQ(t.rows.size(), sizes * (1 + gloo_per_size)) << r.output;
    for (const auto& row : t.rows) {
      EXPECT_EQ(row.at("wrong"), "0") << collective << "\n" << r.output;
      if (row.at("impl") == "ringfuse") {
        EXPECT_NE(row.at("ratio"), "-") << r.output;
      }
    }
  }
}

// Gloo measured for every collective besides allreduce (issue 3): on the same buffers and sizes
// as ours, checked the same way, and counted in the ratio column.
struct GlooCase {
  std::string collective;
  std::vector<std::string> algos;  // Gloo's rows at each size, in order
  std::string note;                // a header line naming what Gloo lacks, if anything
};

// Names the case in test output (and ctest's list) instead of gtest's byte dump.
void PrintTo(const GlooCase& c, std::ostream* os) { *os << c.collective; }

class PerfGlooEveryCollective : public ::testing::TestWithParam<GlooCase> {};

TEST_P(PerfGlooEveryCollective, GlooRowsAreCheckedAndInTheRatio) {
  const GlooCase& c = GetParam();
  const auto r = run_process({RINGFUSE_RUN_PATH, "-np", "2", "--", RINGFUSE_PERF_PATH,
                              c.collective, "-b", "4K", "-e", "64K", "-f", "4", "-n", "2", "-w",
                              "1", "--peers", "gloo"},
                             {{"RINGFUSE_TIMEOUT_S", "30"}}, kTimeout);
  ASSERT_FALSE(r.timed_out) << r.output;
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("peer gloo: unavailable"), std::string::npos) << r.output;
  if (!c.note.empty()) {
    EXPECT_NE(r.output.find(c.note), std::string::npos) << r.output;
  }
  const Table t = parse_table(r.output);
  expect_columns(t, true);
  const std::vector<std::string> sizes =
      c.collective == "barrier" ? std::vector<std::string>{"0"}
                                : std::vector<std::string>{"4096", "16384", "65536"};
  ASSERT_EQ(t.rows.size(), sizes.size() * (1 + c.algos.size())) << r.output;
  std::size_t i = 0;
  for (const std::string& size : sizes) {
    // Rows are grouped by size: ours first, then Gloo's.
    EXPECT_EQ(t.rows[i].at("impl"), "ringfuse") << r.output;
    EXPECT_EQ(t.rows[i].at("size"), size) << r.output;
    // A ratio is there; its value is timing, which a loaded machine can round to 0.00.
    EXPECT_NE(t.rows[i].at("ratio"), "-") << r.output;
    EXPECT_GE(std::stod(t.rows[i].at("ratio")), 0.0) << r.output;
    EXPECT_EQ(t.rows[i].at("wrong"), "0") << r.output;
    ++i;
    for (const std::string& algo : c.algos) {
      EXPECT_EQ(t.rows[i].at("impl"), "gloo") << r.output;
      EXPECT_EQ(t.rows[i].at("algo"), algo) << r.output;
      EXPECT_EQ(t.rows[i].at("size"), size) << r.output;
      EXPECT_EQ(t.rows[i].at("wrong"), "0") << r.output;
      EXPECT_GT(std::stod(t.rows[i].at("time_us")), 0.0) << r.output;
      EXPECT_EQ(t.rows[i].at("ratio"), "-") << r.output;  // peers have none
      ++i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Collectives, PerfGlooEveryCollective,
    ::testing::Values(
        GlooCase{"broadcast", {"binomial_tree", "one_to_all"}, ""},
        GlooCase{"allgather", {"ring", "ring_legacy"}, ""},
        GlooCase{"alltoall", {"pairwise"}, "gloo (none): not measured: Gloo has one all-to-all"},
        GlooCase{"reducescatter", {"halving_doubling"},
                 "gloo (none): not measured: Gloo has one reduce-scatter"},
        GlooCase{"barrier", {"dissemination", "all_to_all"}, ""}),
    [](const ::testing::TestParamInfo<GlooCase>& info) { return info.param.collective; });

TEST(PerfSweep, MpirunWithPeers) {
  if (std::string(MPIRUN_PATH).empty()) GTEST_SKIP() << "mpirun not found at configure time";
  const std::string json = temp_json("mpi");
  const auto r = run_process({MPIRUN_PATH, "--allow-run-as-root", "--oversubscribe", "-np", "2",
                              RINGFUSE_PERF_PATH, "allreduce", "-b", "4K", "-e", "64K", "-f", "4",
                              "-n", "3", "-w", "1", "--peers", "mpi,gloo", "--json", json},
                             {{"RINGFUSE_TIMEOUT_S", "30"}}, kTimeout);
  ASSERT_FALSE(r.timed_out) << r.output;
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Table t = parse_table(r.output);
  expect_columns(t, true);
  std::map<std::string, int> per_impl;
  for (const auto& row : t.rows) {
    ++per_impl[row.at("impl")];
    EXPECT_EQ(row.at("wrong"), "0") << r.output;
    if (row.at("impl") == "ringfuse") {
      EXPECT_NE(row.at("ratio"), "-") << r.output;
    }
  }
  EXPECT_EQ(per_impl["ringfuse"], 3) << r.output;
  EXPECT_EQ(per_impl["mpi"], 3) << r.output;
  EXPECT_EQ(per_impl["mpi+malloc"], 3) << r.output;
  EXPECT_EQ(per_impl["gloo"], 6) << r.output;  // ring_chunked and halving_doubling
  const auto doc = read_json(json);
  EXPECT_EQ(doc.at("launcher"), "mpirun");
  EXPECT_EQ(doc.at("rows").size(), t.rows.size());
  for (const auto& row : doc.at("rows")) EXPECT_EQ(row.at("wrong"), 0);
  std::remove(json.c_str());
}

TEST(PerfSweep, DeviceCudaMeasuresGpuBuffersOrSaysWhyNot) {
  const auto r = run_process({RINGFUSE_PERF_PATH, "allreduce", "--device", "cuda", "--peers",
                              "nccl", "-b", "1M", "-e", "1M", "-n", "3", "-w", "1"},
                             {}, kTimeout);
  if (r.exit_code == 0) {  // a GPU: ours on NCCL and NCCL itself, results checked
    EXPECT_NE(r.output.find("buffers on GPU"), std::string::npos) << r.output;
    const auto t = parse_table(r.output);
    ASSERT_EQ(t.rows.size(), 2u) << r.output;
    for (const auto& row : t.rows) EXPECT_EQ(row.at("wrong"), "0") << r.output;
  } else {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("ringfuse-perf: --device cuda: "), std::string::npos) << r.output;
  }
  const auto mixed = run_process(
      {RINGFUSE_PERF_PATH, "allreduce", "--device", "cuda", "--peers", "gloo"}, {}, kTimeout);
  EXPECT_EQ(mixed.exit_code, 2) << mixed.output;
  EXPECT_NE(mixed.output.find("--peers gloo: measures host buffers, not --device cuda"),
            std::string::npos)
      << mixed.output;
}

TEST(PerfSweep, NcclTestsTypeNamesAreAccepted) {
  // The Kubernetes perf-sweep Job passes `-d float`, as nccl-tests users do.
  const auto r = run_process({RINGFUSE_PERF_PATH, "allreduce", "-d", "float", "-b", "4K", "-e",
                              "4K", "-n", "2", "-w", "0"},
                             {}, kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto t = parse_table(r.output);
  ASSERT_EQ(t.rows.size(), 1u) << r.output;
  EXPECT_EQ(t.rows[0].at("type"), "f32") << r.output;
}

// --split: ours measured on the child Context of each rank's color; the table and the JSON
// report the child's size. Under mpirun with --backend mpi the child's backend is
// MPI_Comm_split of the world's communicator.
TEST(PerfSweep, SplitMeasuresOnTheChildCommunicator) {
  const std::string json = temp_json("split");
  const auto r = run_process({RINGFUSE_RUN_PATH, "-np", "4", "--", RINGFUSE_PERF_PATH, "allreduce",
                              "-b", "4K", "-e", "64K", "-f", "16", "-n", "3", "-w", "1", "--split",
                              "parity", "--json", json},
                             {{"RINGFUSE_TIMEOUT_S", "30"}}, kTimeout);
  ASSERT_FALSE(r.timed_out) << r.output;
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("# ringfuse-perf allreduce: 2 ranks"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("measured on split 1 (color 0) of world (2 of the world's 4 ranks, "
                          "--split parity)"),
            std::string::npos)
      << r.output;
  const Table t = parse_table(r.output);
  ASSERT_EQ(t.rows.size(), 2u) << r.output;
  for (const auto& row : t.rows) EXPECT_EQ(row.at("wrong"), "0") << r.output;
  EXPECT_EQ(read_json(json).at("nranks"), 2);
  std::remove(json.c_str());

  const auto bad = run_process({RINGFUSE_PERF_PATH, "allreduce", "--split", "mod:0"}, {}, kTimeout);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--split mod:0: expected host"), std::string::npos) << bad.output;

  if (std::string(MPIRUN_PATH).empty()) return;
  const auto mpi = run_process({MPIRUN_PATH, "--allow-run-as-root", "--oversubscribe", "-np", "4",
                                RINGFUSE_PERF_PATH, "allreduce", "-b", "4K", "-e", "64K", "-f",
                                "16", "-n", "2", "-w", "1", "--backend", "mpi", "--split", "half"},
                               {{"RINGFUSE_TIMEOUT_S", "30"}}, kTimeout);
  ASSERT_FALSE(mpi.timed_out) << mpi.output;
  ASSERT_EQ(mpi.exit_code, 0) << mpi.output;
  EXPECT_NE(mpi.output.find("measured on split 1 (color 0) of world (2 of the world's 4 ranks"),
            std::string::npos)
      << mpi.output;
  const Table mt = parse_table(mpi.output);
  ASSERT_EQ(mt.rows.size(), 2u) << mpi.output;
  for (const auto& row : mt.rows) EXPECT_EQ(row.at("wrong"), "0") << mpi.output;
}

TEST(PerfSweep, UnknownBackendIsAClearError) {
  const auto r = run_process({RINGFUSE_PERF_PATH, "allreduce", "--backend", "gloo"}, {}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--backend gloo: expected native, mpi or nccl"), std::string::npos)
      << r.output;
  const auto host_nccl =
      run_process({RINGFUSE_PERF_PATH, "allreduce", "--backend", "nccl"}, {}, kTimeout);
  EXPECT_EQ(host_nccl.exit_code, 2) << host_nccl.output;
  EXPECT_NE(host_nccl.output.find("--backend nccl runs GPU buffers: add --device cuda"),
            std::string::npos)
      << host_nccl.output;
  const auto no_mpirun = run_process({RINGFUSE_RUN_PATH, "-np", "2", "--", RINGFUSE_PERF_PATH,
                                      "allreduce", "-b", "4K", "-e", "4K", "--backend", "mpi"},
                                     {{"RINGFUSE_TIMEOUT_S", "30"}}, kTimeout);
  EXPECT_NE(no_mpirun.exit_code, 0) << no_mpirun.output;
  EXPECT_NE(no_mpirun.output.find("--backend mpi measures the library's MPI backend, which needs "
                                  "a world started by mpirun"),
            std::string::npos)
      << no_mpirun.output;
}

// --backend mpi: our Context's collectives through the library's MPI backend, beside Open MPI.
TEST(PerfSweep, MpiBackendUnderMpirun) {
  if (std::string(MPIRUN_PATH).empty()) GTEST_SKIP() << "mpirun not found at configure time";
  for (const char* collective : {"allreduce", "allgather", "alltoall"}) {
    const auto r = run_process({MPIRUN_PATH, "--allow-run-as-root", "--oversubscribe", "-np", "2",
                                RINGFUSE_PERF_PATH, collective, "-b", "4K", "-e", "64K", "-f",
                                "4", "-n", "2", "-w", "1", "--backend", "mpi", "--peers", "mpi"},
                               {{"RINGFUSE_TIMEOUT_S", "30"}}, kTimeout);
    ASSERT_FALSE(r.timed_out) << r.output;
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("backend mpi"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("backends mpi,native"), std::string::npos)
        << "the Context's start-up line names the MPI backend first:\n"
        << r.output;
    int ours = 0;
    for (const auto& row : parse_table(r.output).rows) {
      EXPECT_EQ(row.at("wrong"), "0") << r.output;
      if (row.at("impl") == "ringfuse") ++ours;
    }
    EXPECT_EQ(ours, 3) << collective << ":\n" << r.output;
  }
}

TEST(PerfSweep, MpiPeerUnderRingfuseRunIsReportedNotFatal) {
  const auto r = run_process({RINGFUSE_RUN_PATH, "-np", "2", "--", RINGFUSE_PERF_PATH, "allreduce",
                              "-b", "4K", "-e", "4K", "-n", "2", "-w", "0", "--peers", "mpi"},
                             {{"RINGFUSE_TIMEOUT_S", "30"}}, kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("peer mpi: unavailable: not launched by mpirun"), std::string::npos)
      << r.output;
}

}  // namespace
