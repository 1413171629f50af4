// ringfuse-perf --split COLOR_EXPR: which child Context (Context::split) each rank measures on.
#pragma once

#include <optional>
#include <string>

namespace ringfuse::perf {

/// What is wrong with `expression` (nullopt when it is one of: host, parity, half, mod:K with
/// K >= 1), for the flag's error message.
std::optional<std::string> split_expression_problem(const std::string& expression);

/// The color of `rank` of `size` under a valid `expression`: host -> `host` (the rank's cross
/// rank: ranks by host), parity -> rank % 2, half -> 0 for the lower half, 1 for the upper,
/// mod:K -> rank % K.
int split_color(const std::string& expression, int rank, int size, int host);

}  // namespace ringfuse::perf
