// The one way Ringfuse code builds an Error: the message starts with "rank R: " (the reporting
// rank, when it is known) and the Error carries kind, rank and peer as fields, so no call site
// writes the prefix or the fields by hand.
#pragma once

#include <utility>

#include <fmt/format.h>

#include "ringfuse/error.hpp"

namespace ringfuse::core {

/// Error(kind) reported by `rank` (Error::kNoRank: no prefix) about `peer` (or kNoRank), with
/// the message "rank R: " + fmt::format(format, args...).
template <class... Args>
[[nodiscard]] Error error_at(ErrorKind kind, int rank, int peer,
                             fmt::format_string<Args...> format, Args&&... args) {
  std::string message = fmt::format(format, std::forward<Args>(args)...);
  if (rank != Error::kNoRank) message.insert(0, fmt::format("rank {}: ", rank));
  return Error(kind, std::move(message), rank, peer);
}

/// error_at() with no peer: the common case of a rank reporting its own failure.
template <class... Args>
[[nodiscard]] Error rank_error(ErrorKind kind, int rank, fmt::format_string<Args...> format,
                               Args&&... args) {
  return error_at(kind, rank, Error::kNoRank, format, std::forward<Args>(args)...);
}

}  // namespace ringfuse::core
