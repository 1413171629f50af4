#include "table_output.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "size_parse.hpp"

namespace ringfuse::perf {

void print_table(std::ostream& out, const RunInfo& info, const std::vector<Row>& rows) {
  fmt::print(out, "# ringfuse-perf {}: {} ranks, launched by {}\n", info.collective, info.nranks,
             info.launcher);
  fmt::print(out, "# time_us: {}; GB/s = 1e9 bytes/s\n", info.timing);
  fmt::print(out, "# ours: {}\n", info.transport);
  fmt::print(out, "# malloc environment: {}\n", info.malloc_env);
  if (!info.malloc_pass.empty()) fmt::print(out, "# {}\n", info.malloc_pass);
  for (const auto& note : info.notes) fmt::print(out, "# {}\n", note);
  fmt::print(out, "#\n");
  const std::string header = fmt::format(
      "#{:>11} {:>10} {:>11} {:>5} {:>5} {:>16} {:>11} {:>10} {:>10} {:>6}", "impl", "size",
      "count", "type", "redop", "algo", "time_us", "algbw_GBps", "busbw_GBps", "wrong");
  fmt::print(out, "{}{}\n", header, info.with_peers ? fmt::format(" {:>6}", "ratio") : "");
  for (const Row& r : rows) {
    std::string line = fmt::format(
        " {:>11} {:>10} {:>11} {:>5} {:>5} {:>16} {:>11.2f} {:>10.3f} {:>10.3f} {:>6}", r.impl,
        r.size, r.count, r.type, r.redop, r.algo, r.time_us, r.algbw_gbps, r.busbw_gbps,
        r.wrong ? fmt::format("{}", *r.wrong) : std::string("N/A"));
    if (info.with_peers) {
      line += fmt::format(" {:>6}", r.ratio ? fmt::format("{:.2f}", *r.ratio) : std::string("-"));
    }
    fmt::print(out, "{}\n", line);
  }
  // nccl-tests' verdict line covers our rows; a peer's wrong results are its own, reported
  // apart so that they neither fail our run nor hide.
  std::uint64_t wrong = 0;
  std::uint64_t peer_wrong = 0;
  for (const Row& r : rows) (r.ours ? wrong : peer_wrong) += r.wrong.value_or(0);
  fmt::print(out, "# out of bounds values : {} {}\n", wrong, wrong == 0 ? "OK" : "FAILED");
  if (peer_wrong > 0) {
    fmt::print(out, "# peers' out of bounds values : {} (a peer's bug, not ours; those rows are "
                    "left out of the ratio)\n",
               peer_wrong);
  }
}

}  // namespace ringfuse::perf
