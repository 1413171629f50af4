// Timing statistics. Each rank times every iteration itself; an iteration's time is the slowest
// rank's (a collective is done when the last rank is done), and a row reports the median of
// those per-iteration maxima, so one descheduled iteration on this shared 2-core machine does
// not move the row.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ringfuse/context.hpp"

namespace ringfuse::perf {

struct TimingSummary {
  double median_us = 0;  // median over iterations of the max across ranks
  double min_us = 0;
  double max_us = 0;
};

/// Collective over `control` (every rank calls it with the same number of samples).
TimingSummary summarize_across_ranks(Context& control, std::vector<double> seconds);

/// Each iteration's slowest rank's time (collective, as summarize_across_ranks), for a caller
/// that pairs iterations of several rows.
std::vector<double> slowest_across_ranks(Context& control, std::vector<double> seconds);

/// The summary of times that are already each iteration's slowest rank's.
TimingSummary summarize(std::span<const double> slowest);

/// Sum of a per-rank count over all ranks (the `wrong` column).
std::uint64_t sum_across_ranks(Context& control, std::uint64_t value);

double median(std::span<const double> values);

}  // namespace ringfuse::perf
