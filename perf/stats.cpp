#include "stats.hpp"

#include <algorithm>
#include <utility>

namespace ringfuse::perf {

double median(std::span<const double> values) {
  if (values.empty()) return 0.0;
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  const std::size_t mid = sorted.size() / 2;
  return sorted.size() % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2.0;
}

std::vector<double> slowest_across_ranks(Context& control, std::vector<double> seconds) {
  control.allreduce(seconds.data(), seconds.size(), DataType::f64, ReduceOp::max);
  return seconds;
}

TimingSummary summarize(std::span<const double> slowest) {
  TimingSummary s;
  if (slowest.empty()) return s;
  s.median_us = median(slowest) * 1e6;
  s.min_us = *std::min_element(slowest.begin(), slowest.end()) * 1e6;
  s.max_us = *std::max_element(slowest.begin(), slowest.end()) * 1e6;
  return s;
}

TimingSummary summarize_across_ranks(Context& control, std::vector<double> seconds) {
  return summarize(slowest_across_ranks(control, std::move(seconds)));
}

std::uint64_t sum_across_ranks(Context& control, std::uint64_t value) {
  auto v = static_cast<std::int64_t>(value);
  control.allreduce(&v, 1, DataType::i64, ReduceOp::sum);
  return static_cast<std::uint64_t>(v);
}

}  // namespace ringfuse::perf
