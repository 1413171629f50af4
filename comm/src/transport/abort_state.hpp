// One abort state per rank, shared by all of its channels (the flat transport, the host-local
// and cross-host transports of a hierarchy, the engine's): once any of them failed, none of
// them may tell its peers that this rank shut down in order, or a neighbour blames the user's
// program ("every rank must make the same collective calls") for a crash or a network failure.
// Only a lost peer is recorded, not a stall: the engine's control channel uses the no-progress
// timeout as its polling tick.
#pragma once

#include <mutex>
#include <optional>
#include <string>

namespace ringfuse::transport {

class AbortState {
 public:
  /// Keeps the first reason; later ones are consequences.
  void record(const std::string& reason) {
    std::lock_guard lock(mutex_);
    if (!reason_) reason_ = reason;
  }
  /// Why this rank aborted, once any of its channels failed.
  std::optional<std::string> reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
  }

 private:
  mutable std::mutex mutex_;
  std::optional<std::string> reason_;
};

}  // namespace ringfuse::transport
