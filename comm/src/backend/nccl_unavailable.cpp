// What the Context sees of NCCL in builds without CUDA and NCCL: no backend, and why.
#include "backend/nccl_backend.hpp"

#ifndef RINGFUSE_HAVE_NCCL

namespace ringfuse::backend {

std::unique_ptr<Backend> make_nccl_backend(const NcclSetup&) { return nullptr; }

std::string nccl_unavailable_reason() {
  return "this build has no NCCL (CMake did not find CUDA and NCCL)";
}

Device device_of(const void*) { return Device::cpu; }

}  // namespace ringfuse::backend

#endif
