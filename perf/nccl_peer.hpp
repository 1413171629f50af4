// Peer for `--device cuda`: NCCL's own collectives called directly, as nccl-tests does, on the
// same GPU buffers as ours (perf/nccl_peer.cpp). Its own communicator: rank 0's unique id
// travels through the run's rendezvous store, and set-up is non-blocking with a deadline. One
// stream; each call waits for completion (as our blocking collectives do), polling
// ncclCommGetAsyncError, and aborts the communicator when the timeout passes instead of
// hanging. Without CUDA and NCCL in the build it is
// unavailable, with the reason.
#pragma once

#include <memory>
#include <string>

#include "implementation.hpp"

namespace ringfuse::perf {

struct NcclPeer {
  std::unique_ptr<Implementation> impl;
  std::string unavailable;  // why not, when impl is null
};

/// Collective: every rank must call it, with the GPU already selected (select_cuda_device).
NcclPeer make_nccl_peer(const PeerWorld& world);

}  // namespace ringfuse::perf
