// The one error type every Ringfuse call throws: it says what failed, where and what to do.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ringfuse {

enum class ErrorKind : std::uint8_t {
  invalid_argument,  // bad input from the caller (counts, root, dtype/op combination)
  invalid_config,    // an environment variable or flag has a bad value
  timeout,           // a deadline passed (store wait, connect, collective)
  peer_failure,      // a peer closed, reset or stopped answering
  protocol,          // a malformed or unexpected message
  system,            // an operating-system call failed
};

std::string_view to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  static constexpr int kNoRank = -1;

  /// `rank` is the rank reporting the error, `peer` the rank it was talking to (kNoRank when
  /// neither applies); the message already contains both in words.
  Error(ErrorKind kind, std::string message, int rank = kNoRank, int peer = kNoRank)
      : std::runtime_error(std::move(message)), kind_(kind), rank_(rank), peer_(peer) {}

  ErrorKind kind() const noexcept { return kind_; }
  int rank() const noexcept { return rank_; }
  int peer() const noexcept { return peer_; }

 private:
  ErrorKind kind_;
  int rank_;
  int peer_;
};

}  // namespace ringfuse
