// Peer for `--device cuda`: NCCL's own collectives called directly, as nccl-tests does, on the
// same GPU buffers as ours (perf/nccl_peer.cpp). Its own communicator: rank 0's unique id
// travels through the run's rendezvous store, and set-up is non-blocking with a deadline. One
// stream; each call waits for completion (as our blocking collectives do), polling
// ncclCommGetAsyncError, and aborts the communicator when the timeout passes instead of
// hanging. Without CUDA and NCCL in the build it is
// unavailable, with the reason.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "implementation.hpp"

namespace ringfuse::perf {

struct NcclWorld {
  int rank = 0;
  int size = 1;
  std::string store_host;  // unused in a world of one
  std::uint16_t store_port = 0;
  std::string key_prefix;  // unique per job
  std::string job_secret;
  std::chrono::milliseconds timeout{300'000};
};

struct NcclPeer {
  std::unique_ptr<Implementation> impl;
  std::string unavailable;  // why not, when impl is null
};

/// Collective: every rank must call it, with the GPU already selected (select_cuda_device).
NcclPeer make_nccl_peer(const NcclWorld& world);

}  // namespace ringfuse::perf
