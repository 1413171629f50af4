// Two elements combined under a reduction operator, one pair at a time: the plain definition
// that the vectorised kernels (reduce/) are checked against, by the tests' reference results
// and ringfuse-perf's verification.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "ringfuse/types.hpp"

namespace ringfuse::core {

/// `acc` combined with `value` under `op`; avg sums (the caller divides by the world size).
/// The bitwise operators combine integers; a floating-point T (the tests' and ringfuse-perf's
/// carrier of exact integer values) is combined as the integers it holds.
template <typename T>
T combine(ReduceOp op, T acc, T value) {
  const auto bits = [&](auto f) {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(f(acc, value));
    } else {
      return static_cast<T>(f(static_cast<std::int64_t>(acc), static_cast<std::int64_t>(value)));
    }
  };
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: return acc + value;
    case ReduceOp::prod: return acc * value;
    case ReduceOp::min: return std::min(acc, value);
    case ReduceOp::max: return std::max(acc, value);
    case ReduceOp::band: return bits([](auto x, auto y) { return x & y; });
    case ReduceOp::bor: return bits([](auto x, auto y) { return x | y; });
    case ReduceOp::bxor: return bits([](auto x, auto y) { return x ^ y; });
  }
  return acc;
}

/// On bools (nonzero is true): whether `op` is logical and (min, prod, band). bxor is
/// exclusive or, and the others (sum, avg, max, bor) are logical or.
constexpr bool is_logical_and(ReduceOp op) {
  return op == ReduceOp::min || op == ReduceOp::prod || op == ReduceOp::band;
}

/// `acc` combined with `value` under `op`, on bools.
constexpr bool combine_bools(ReduceOp op, bool acc, bool value) {
  if (op == ReduceOp::bxor) return acc != value;
  return is_logical_and(op) ? acc && value : acc || value;
}

}  // namespace ringfuse::core
