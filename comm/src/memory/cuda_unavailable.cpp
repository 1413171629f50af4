// Builds without CUDA and NCCL have no packing space on a device (memory/cuda/ is not built).
#include "backend/nccl_backend.hpp"
#include "memory/memory_space.hpp"

#ifndef RINGFUSE_HAVE_NCCL

namespace ringfuse::memory {

std::unique_ptr<MemorySpace> make_cuda_memory_space(int, int, std::chrono::milliseconds,
                                                     std::string& why_not) {
  why_not = backend::nccl_unavailable_reason();
  return nullptr;
}

}  // namespace ringfuse::memory

#endif  // RINGFUSE_HAVE_NCCL
