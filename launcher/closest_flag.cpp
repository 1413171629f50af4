#include "closest_flag.hpp"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace ringfuse::launcher {
namespace {

// Optimal string alignment distance: Levenshtein's plus the swap of two neighbours, the most
// common typo ("--transprot").
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::string closest_flag(std::string_view typed, std::span<const std::string> known) {
  std::string best;
  std::size_t best_distance = 0;
  for (const auto& flag : known) {
    const std::size_t distance = edit_distance(typed, flag);
    if (best.empty() || distance < best_distance) {
      best = flag;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace ringfuse::launcher
