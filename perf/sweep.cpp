#include "sweep.hpp"

#include <algorithm>
#include <chrono>

#include <cstdio>

#include <fmt/format.h>

#include "size_parse.hpp"
#include "stats.hpp"

namespace ringfuse::perf {
namespace {

using Clock = std::chrono::steady_clock;

Row measure(Context& control, const PerfOptions& options, const CaseSpec& spec, Buffers& buffers,
            Implementation& impl) {
  impl.prepare(spec, buffers);
  buffers.poison();
  for (int i = 0; i < options.warmup; ++i) {
    buffers.restore();
    impl.barrier();
    impl.run(spec, buffers);
  }
  std::vector<double> seconds;
  seconds.reserve(static_cast<std::size_t>(options.iters));
  for (int i = 0; i < options.iters; ++i) {
    buffers.restore();  // untimed: in-place inputs must not be the previous result
    impl.barrier();
    const auto start = Clock::now();
    impl.run(spec, buffers);
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  impl.finish();

  Row row;
  row.impl = impl.name();
  row.ours = impl.is_ours();
  row.algo = impl.algo(spec);
  row.size = spec.layout.bytes;
  row.count = spec.layout.count;
  row.type = std::string(to_string(spec.type));
  row.redop = reduces(spec.collective) ? std::string(to_string(spec.op)) : "none";
  row.iters = options.iters;
  const TimingSummary t = summarize_across_ranks(control, std::move(seconds));
  row.time_us = t.median_us;
  row.min_us = t.min_us;
  row.max_us = t.max_us;
  if (t.median_us > 0) {
    row.algbw_gbps = static_cast<double>(spec.layout.bytes) / (t.median_us * 1e-6) / 1e9;
    row.busbw_gbps = row.algbw_gbps * bus_factor(spec.collective, spec.size);
  }
  // The check reads the last timed iteration's output: every iteration started from the same
  // input, so it must hold the reference result.
  if (options.check) row.wrong = sum_across_ranks(control, buffers.count_wrong());
  return row;
}

}  // namespace

std::vector<std::uint64_t> sweep_sizes(const PerfOptions& options) {
  if (options.collective == Collective::barrier) return {0};
  std::vector<std::uint64_t> sizes;
  const std::uint64_t first = std::max<std::uint64_t>(options.min_bytes, element_size(options.type));
  for (std::uint64_t s = first; s <= options.max_bytes; s *= options.step_factor) {
    sizes.push_back(s);
    if (s > options.max_bytes / options.step_factor) break;  // the next step would overflow
  }
  return sizes;
}

std::vector<Row> run_sweep(Context& control, const PerfOptions& options,
                           std::span<Implementation* const> impls) {
  std::vector<Row> rows;
  for (const std::uint64_t nominal : sweep_sizes(options)) {
    CaseSpec spec;
    spec.collective = options.collective;
    spec.type = options.type;
    spec.op = options.op;
    spec.root = options.root;
    spec.rank = control.rank();
    spec.size = control.size();
    spec.layout = make_layout(options.collective, options.type, nominal, control.size());
    spec.device = options.device;
    if (spec.collective != Collective::barrier && spec.layout.count == 0) continue;
    Buffers buffers(spec);
    const auto started = Clock::now();
    for (Implementation* impl : impls) {
      if (!impl->unsupported(spec).empty()) continue;  // listed once in the table's header
      rows.push_back(measure(control, options, spec, buffers, *impl));
    }
    // The table comes at the end (ratios need every row), so long sweeps show progress on
    // stderr, where it does not mix with the table.
    if (control.rank() == 0) {
      fmt::print(stderr, "ringfuse-perf: {} done in {:.1f} s\n", format_size(nominal),
                 std::chrono::duration<double>(Clock::now() - started).count());
    }
  }
  return rows;
}

}  // namespace ringfuse::perf
