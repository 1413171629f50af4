// What the Context's point-to-point calls run on: the native messenger (messenger.hpp), or
// MPI's own send/receive under RINGFUSE_BACKEND=mpi (backend/mpi_backend.hpp).
#pragma once

#include <span>
#include <vector>

#include "ringfuse/context.hpp"

namespace ringfuse::p2p {

class Channel {
 public:
  virtual ~Channel() = default;
  /// Blocking: every op progresses together; returns the receives' statuses in order. Every
  /// wait is bounded by the channel's operation timeout; failures name the peer.
  virtual std::vector<RecvStatus> run(std::span<const P2POp> ops) = 0;
  /// "native", "mpi": in error messages.
  virtual const char* name() const = 0;
};

}  // namespace ringfuse::p2p
