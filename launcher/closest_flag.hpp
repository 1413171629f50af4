// "Did you mean --transport?": the known flag nearest to a mistyped one.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace ringfuse::launcher {

/// Of `known`, the flag with the fewest single-character edits (insertions, deletions,
/// substitutions, swaps of neighbours) from `typed`; the first such one on a tie, empty when
/// `known` is.
std::string closest_flag(std::string_view typed, std::span<const std::string> known);

}  // namespace ringfuse::launcher
