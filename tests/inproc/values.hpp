// Inputs every rank can compute for every other rank, and exact references for what the
// collectives must produce from them, computed here independently of the library (the way
// the library defines its results: see comm/src/reduce/reduce.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ringfuse/types.hpp"

namespace ringfuse::inproc {

/// Rank `rank`'s input at `index` for a reduction with `op`: a small integer from a hash of
/// (seed, rank, index), so a block landing at the wrong place or from the wrong rank shows.
/// Small enough that sums, products, min and max are exact in every dtype (f16 and bf16 too)
/// whatever the order of reduction: the result depends only on the values, never on the
/// algorithm's order. Products use {1, -1, 2} ({1, 2, 3} for u8); integer products may wrap,
/// which is modular and so order-independent too. bool inputs are 0 or 1: mostly 0 for the
/// or-operators (sum, max), mostly 1 for the and-operators (min, prod).
double input(int rank, std::size_t index, DataType type, ReduceOp op, std::uint64_t seed = 0);

/// The reduction of input(0..size-1, index) with `op`, as the dtype holds it: avg is the exact
/// sum divided once in the dtype's arithmetic (f16/bf16: in float, rounded once; integers:
/// truncated toward zero), which is how the library defines it. On bool: sum and max are
/// logical or, min and prod logical and (avg of bool is not defined: callers skip it, see
/// ringfuse::is_defined).
double reference(int size, std::size_t index, DataType type, ReduceOp op, std::uint64_t seed = 0);

/// "index 7: got 3, want 4", for reports.
std::string describe_difference(std::size_t index, double got, double want);

/// A byte that depends on (a, b, index), for the collectives that only move data: a byte from
/// the wrong sender, block or place shows (with probability 255/256 per byte).
std::byte pattern(std::uint64_t a, std::uint64_t b, std::size_t index);

/// The first byte of `got` (bytes long) that differs from want(i), described, or nothing.
template <class Want>
std::optional<std::string> first_byte_difference(const std::byte* got, std::size_t bytes,
                                                 Want&& want) {
  for (std::size_t i = 0; i < bytes; ++i) {
    const auto w = want(i);
    if (got[i] != w) {
      return describe_difference(i, std::to_integer<int>(got[i]), std::to_integer<int>(w));
    }
  }
  return std::nullopt;
}

/// Writes `value` (exactly representable, or rounded as the dtype rounds) as element `index`.
void put(std::byte* base, std::size_t index, DataType type, double value);
double get(const std::byte* base, std::size_t index, DataType type);

/// The first element of `got` (count elements) that differs from want(i), described for a
/// report, or nothing when all match. Exact comparison: integers by value after the dtype's
/// wrap-around, floats by value (so -0 equals +0).
template <class Want>
std::optional<std::string> first_difference(const std::byte* got, std::size_t count, DataType type,
                                            Want&& want);
/// Bytes that are not a multiple of 64 away from a 64-byte boundary, with guard bytes before
/// and after that a collective must leave alone.
class GuardedBuffer {
 public:
  /// `bytes` usable bytes starting `misalignment` bytes past a 64-byte boundary.
  GuardedBuffer(std::size_t bytes, std::size_t misalignment);
  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  std::size_t size() const { return bytes_; }
  /// Whether every guard byte still holds its pattern.
  bool guards_intact() const;

 private:
  std::unique_ptr<std::byte[]> storage_;
  std::byte* data_;
  std::size_t bytes_;
  std::size_t misalignment_;
};

/// How far past a 64-byte boundary a buffer of `type` starts in case number `case_index` on
/// `rank`: 0 when `aligned`, else 1, 3, 5 or 7 elements (so odd byte offsets 1..7 for the
/// one-byte types), different from rank to rank.
std::size_t misalignment(DataType type, bool aligned, int rank, std::size_t case_index);

/// "f32[1009] avg", for case labels.
std::string label(DataType type, std::size_t count, ReduceOp op);

/// Counts worth checking for a world of `size`: 0, 1, 2, size-1 and size+1 (fewer than and not
/// divisible by the world size), and the given others (primes, sizes that wrap the rings).
std::vector<std::size_t> odd_counts(int size, std::initializer_list<std::size_t> others);

template <class Want>
std::optional<std::string> first_difference(const std::byte* got, std::size_t count, DataType type,
                                            Want&& want) {
  for (std::size_t i = 0; i < count; ++i) {
    const double w = want(i);
    const double g = get(got, i, type);
    if (g != w) return describe_difference(i, g, w);
  }
  return std::nullopt;
}

}  // namespace ringfuse::inproc
