// CUDA device buffers on a host backend (native or MPI): each collective copies the device
// data into pinned host memory, runs the host backend there, and copies the result back. Much
// slower than NCCL, but it makes every backend accept every device: a job forced to
// RINGFUSE_BACKEND=native or mpi, for example two ranks sharing one GPU (which NCCL refuses),
// still runs CUDA tensors correctly. Built with the nccl layer (CUDA and NCCL found).
//
// The copies run on the legacy default stream, so they wait for work the caller queued on it;
// a caller that produced the buffer on a non-blocking stream must synchronise that stream first
// (as before any NCCL call made from the host). The pinned buffers grow to the largest
// collective seen and are reused: no allocation per call once warm.
#pragma once

#include <memory>

#include "backend/backend.hpp"

namespace ringfuse::backend {

/// A staging backend over `host` (which must outlive it), for a world of `size` in which this
/// is `rank`; null when this build has no CUDA or no CUDA device is usable.
std::unique_ptr<Backend> make_cuda_staging_backend(Backend& host, int rank, int size);

}  // namespace ringfuse::backend
