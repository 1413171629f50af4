// Two elements combined under a reduction operator, one pair at a time: the plain definition
// that the vectorised kernels (reduce/) are checked against, by the tests' reference results
// and ringfuse-perf's verification.
#pragma once

#include <algorithm>

#include "ringfuse/types.hpp"

namespace ringfuse::core {

/// `acc` combined with `value` under `op`; avg sums (the caller divides by the world size).
template <typename T>
T combine(ReduceOp op, T acc, T value) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: return acc + value;
    case ReduceOp::prod: return acc * value;
    case ReduceOp::min: return std::min(acc, value);
    case ReduceOp::max: return std::max(acc, value);
  }
  return acc;
}

}  // namespace ringfuse::core
