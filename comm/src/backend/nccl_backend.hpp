// The NCCL data plane for CUDA device buffers. The implementation (backend/nccl/) is built
// only when CMake found CUDA and NCCL; without it backend/nccl_unavailable.cpp reports "not
// built" and make_nccl_backend() returns null.
//
// One communicator per Context, created lazily by the first device collective (collective:
// every rank must pass device memory to the same operation): rank 0 calls ncclGetUniqueId and
// publishes it through our rendezvous store, the others read it. One CUDA stream per
// communicator; each collective records a CUDA event and waits for it while polling
// ncclCommGetAsyncError, and calls ncclCommAbort when the deadline (RINGFUSE_TIMEOUT_S)
// passes, so a dead peer gives an Error rather than a hang.
//
// GPUs: rank r uses device local_rank % device_count. NCCL (>= 2.19) refuses two ranks of one
// communicator on the same GPU, so a multi-rank NCCL world needs one GPU per local rank.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "ringfuse/context.hpp"
#include "rendezvous/store.hpp"

namespace ringfuse::backend {

struct NcclSetup {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  rendezvous::Store* store = nullptr;  // null for a world of one
  std::string key_prefix;              // where rank 0 publishes the unique id
  std::chrono::milliseconds timeout{300'000};
};

/// A NCCL backend, or null when this build has no NCCL or no CUDA device is visible
/// (cudaGetDeviceCount fails, e.g. error 35/100, or returns 0).
std::unique_ptr<Backend> make_nccl_backend(const NcclSetup& setup);

/// The NCCL backend of a child Context (Context::split), collective over every rank of
/// `parent`'s world: ncclCommSplit of `parent`'s communicator when it exists (a device
/// collective ran on it), else a communicator of the child's own, made lazily from `child`
/// (make_nccl_backend). Null for a negative color, or as make_nccl_backend.
std::unique_ptr<Backend> split_nccl_backend(Backend& parent, int color, int key,
                                            const NcclSetup& child);

/// Why make_nccl_backend() returned null, for messages.
std::string nccl_unavailable_reason();

/// Point-to-point on `nccl` (from make_nccl_backend) for device buffers: every op of the group
/// as ncclSend/ncclRecv between one ncclGroupStart/End, bounded by the backend's timeout. NCCL
/// matches a pair's messages by order only, so tags other than 0 (and kAnyTag) and kAnySource
/// are refused with invalid_argument, and a receive's count must equal the send's (its status
/// reports the count it was given). Throws invalid_config in a build without NCCL.
std::vector<RecvStatus> nccl_send_recv(Backend& nccl, std::span<const P2POp> ops);

/// Where `pointer` lives (CUDA device or managed memory -> Device::cuda); cpu without CUDA.
Device device_of(const void* pointer);

}  // namespace ringfuse::backend
