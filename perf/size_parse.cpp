#include "size_parse.hpp"

#include <cctype>
#include <charconv>
#include <limits>

#include <fmt/format.h>

namespace ringfuse::perf {

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t value = 0;
  const auto* begin = text.data();
  const auto* end = text.data() + text.size();
  const auto [next, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc{} || next == begin) return std::nullopt;
  std::string suffix;
  for (const char* p = next; p != end; ++p) {
    suffix += static_cast<char>(std::tolower(static_cast<unsigned char>(*p)));
  }
  unsigned shift = 0;
  if (suffix == "k" || suffix == "kb" || suffix == "kib") {
    shift = 10;
  } else if (suffix == "m" || suffix == "mb" || suffix == "mib") {
    shift = 20;
  } else if (suffix == "g" || suffix == "gb" || suffix == "gib") {
    shift = 30;
  } else if (!(suffix.empty() || suffix == "b")) {
    return std::nullopt;
  }
  if (shift > 0 && value > (std::numeric_limits<std::uint64_t>::max() >> shift)) {
    return std::nullopt;
  }
  return value << shift;
}

std::string format_size(std::uint64_t bytes) {
  if (bytes != 0) {
    if (bytes % (1ULL << 30) == 0) return fmt::format("{}G", bytes >> 30);
    if (bytes % (1ULL << 20) == 0) return fmt::format("{}M", bytes >> 20);
    if (bytes % (1ULL << 10) == 0) return fmt::format("{}K", bytes >> 10);
  }
  return fmt::format("{}", bytes);
}

}  // namespace ringfuse::perf
