// One measured row, as printed in the table and written to JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ringfuse::perf {

struct Row {
  std::string impl;   // ringfuse, mpi, mpi+malloc, gloo
  std::string algo;
  std::uint64_t size = 0;  // bytes of the largest buffer (nccl-tests' convention)
  std::uint64_t count = 0;
  std::string type;
  std::string redop;  // "none" for collectives that do not reduce, as in nccl-tests
  double time_us = 0;  // median over iterations of the max across ranks
  double min_us = 0;
  double max_us = 0;
  double algbw_gbps = 0;
  double busbw_gbps = 0;
  std::optional<std::uint64_t> wrong;  // absent with -c 0
  int iters = 0;
  bool ours = false;
  std::optional<double> ratio;  // ours only: our busbw / best peer busbw at this size
};

/// Fills Row::ratio on our rows that have at least one peer row of the same size; for barrier
/// (no bandwidth) the ratio is best peer time / our time, so > 1 still means we are faster.
void compute_ratios(std::vector<Row>& rows);

}  // namespace ringfuse::perf
