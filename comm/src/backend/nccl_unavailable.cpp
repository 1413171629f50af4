// What the Context and the engine see of NCCL and CUDA in builds without them: no backend, no
// staging of device buffers, and why (memory/cuda_unavailable.cpp: no device packing space).
#include "backend/cuda_staging_backend.hpp"
#include "backend/nccl_backend.hpp"
#include "ringfuse/error.hpp"

#ifndef RINGFUSE_HAVE_NCCL

namespace ringfuse::backend {

std::unique_ptr<Backend> make_nccl_backend(const NcclSetup&) { return nullptr; }

std::unique_ptr<Backend> split_nccl_backend(Backend&, int, int, const NcclSetup&) {
  return nullptr;
}

std::string nccl_unavailable_reason() {
  return "this build has no NCCL (CMake did not find CUDA and NCCL)";
}

Device device_of(const void*) { return Device::cpu; }

std::vector<RecvStatus> nccl_send_recv(Backend&, std::span<const P2POp>) {
  throw Error(ErrorKind::invalid_config,
              "point-to-point on device memory needs a build with CUDA and NCCL");
}

std::unique_ptr<Backend> make_cuda_staging_backend(Backend&, int, int) { return nullptr; }

}  // namespace ringfuse::backend

#endif
