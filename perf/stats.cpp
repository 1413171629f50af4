#include "stats.hpp"

#include <algorithm>

namespace ringfuse::perf {

double median(std::span<const double> values) {
  if (values.empty()) return 0.0;
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  const std::size_t mid = sorted.size() / 2;
  return sorted.size() % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2.0;
}

TimingSummary summarize_across_ranks(Context& control, std::vector<double> seconds) {
  control.allreduce(seconds.data(), seconds.size(), DataType::f64, ReduceOp::max);
  TimingSummary s;
  if (seconds.empty()) return s;
  s.median_us = median(seconds) * 1e6;
  s.min_us = *std::min_element(seconds.begin(), seconds.end()) * 1e6;
  s.max_us = *std::max_element(seconds.begin(), seconds.end()) * 1e6;
  return s;
}

std::uint64_t sum_across_ranks(Context& control, std::uint64_t value) {
  auto v = static_cast<std::int64_t>(value);
  control.allreduce(&v, 1, DataType::i64, ReduceOp::sum);
  return static_cast<std::uint64_t>(v);
}

}  // namespace ringfuse::perf
