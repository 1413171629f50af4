#include "split_color.hpp"

#include <charconv>

namespace ringfuse::perf {
namespace {

std::optional<int> modulus(const std::string& expression) {
  constexpr std::string_view kPrefix = "mod:";
  if (!expression.starts_with(kPrefix)) return std::nullopt;
  int k = 0;
  const char* first = expression.data() + kPrefix.size();
  const char* last = expression.data() + expression.size();
  const auto [end, error] = std::from_chars(first, last, k);
  if (error != std::errc() || end != last || first == last || k < 1) return std::nullopt;
  return k;
}

}  // namespace

std::optional<std::string> split_expression_problem(const std::string& expression) {
  if (expression == "host" || expression == "parity" || expression == "half" ||
      modulus(expression)) {
    return std::nullopt;
  }
  return "expected host (ranks by host), parity (rank % 2), half (lower and upper half of the "
         "ranks) or mod:K (rank % K, K >= 1)";
}

int split_color(const std::string& expression, int rank, int size, int host) {
  if (expression == "host") return host;
  if (expression == "parity") return rank % 2;
  if (expression == "half") return rank < (size + 1) / 2 ? 0 : 1;
  return rank % modulus(expression).value_or(1);
}

}  // namespace ringfuse::perf
