// The check every store test of concurrent add() makes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

namespace ringfuse::test_support {

/// Expects the values that `increments` concurrent add(key, 1) calls on a fresh key returned
/// (one list per thread, `seen`) to be 1, 2, ..., increments, each exactly once: no increment
/// lost or counted twice.
inline void expect_every_increment_once(const std::vector<std::vector<std::int64_t>>& seen,
                                        std::size_t increments) {
  std::vector<std::int64_t> all;
  for (const auto& values : seen) all.insert(all.end(), values.begin(), values.end());
  std::sort(all.begin(), all.end());
  std::vector<std::int64_t> expected(increments);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(all, expected);
}

}  // namespace ringfuse::test_support
