// The one error type every Ringfuse call throws: it says what failed, where and what to do.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

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
  /// The failed collective's number on its channel (as in "collective #12"), 0 when the error
  /// did not happen inside a collective.
  std::uint64_t sequence() const noexcept { return sequence_; }
  /// The backend that ran it ("native", "mpi", "nccl", "engine"), empty when none did.
  const std::string& backend() const noexcept { return backend_; }

  /// Records which collective failed and on which backend; returns *this for chaining.
  Error& in_collective(std::uint64_t sequence, std::string backend) & {
    sequence_ = sequence;
    backend_ = std::move(backend);
    return *this;
  }
  Error&& in_collective(std::uint64_t sequence, std::string backend) && {
    return std::move(in_collective(sequence, std::move(backend)));
  }

 private:
  ErrorKind kind_;
  int rank_;
  int peer_;
  std::uint64_t sequence_ = 0;
  std::string backend_;
};

}  // namespace ringfuse
