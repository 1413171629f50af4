// Byte sizes on the command line ("4K", "256M", "1G", "1024") and back to text for tables.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringfuse::perf {

/// Parses a non-negative integer with an optional K/M/G suffix (binary: K = 1024, as in
/// nccl-tests), case-insensitive, optionally followed by "B" or "iB". std::nullopt when invalid
/// or when the value overflows 64 bits.
std::optional<std::uint64_t> parse_size(std::string_view text);

/// The shortest exact spelling: 4096 -> "4K", 268435456 -> "256M", 1000 -> "1000".
std::string format_size(std::uint64_t bytes);

}  // namespace ringfuse::perf
