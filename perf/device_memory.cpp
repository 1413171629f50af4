#include "device_memory.hpp"

#include <string>

#include <fmt/format.h>

#include "ringfuse/error.hpp"

#ifdef RINGFUSE_PERF_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace ringfuse::perf {

#ifdef RINGFUSE_PERF_HAVE_CUDA

namespace {

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) {
    throw Error(ErrorKind::system,
                fmt::format("ringfuse-perf --device cuda: {} failed: {} ({})", what,
                            cudaGetErrorString(rc), static_cast<int>(rc)));
  }
}

}  // namespace

int select_cuda_device(int local_rank) {
  int devices = 0;
  const cudaError_t rc = cudaGetDeviceCount(&devices);
  if (rc != cudaSuccess || devices == 0) {
    throw Error(ErrorKind::invalid_config,
                fmt::format("--device cuda: no usable CUDA device ({}); measure host memory "
                            "with --device cpu",
                            rc != cudaSuccess ? cudaGetErrorString(rc) : "none visible"));
  }
  const int device = local_rank % devices;
  check(cudaSetDevice(device), "cudaSetDevice");
  return device;
}

void DeviceBytes::Free::operator()(std::byte* p) const { cudaFree(p); }

DeviceBytes::DeviceBytes(std::size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes > 0 ? bytes : 1), "cudaMalloc");
  data_.reset(static_cast<std::byte*>(p));
  check(cudaMemset(p, 0, bytes > 0 ? bytes : 1), "cudaMemset");
}

void DeviceBytes::upload(const void* host, std::size_t bytes) {
  if (bytes > 0) check(cudaMemcpy(data(), host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}

void DeviceBytes::download(void* host, std::size_t bytes) const {
  if (bytes > 0) check(cudaMemcpy(host, data(), bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}

void DeviceBytes::copy_from(const DeviceBytes& source, std::size_t bytes) {
  if (bytes > 0) {
    check(cudaMemcpy(data(), source.data(), bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy D2D");
  }
}

void DeviceBytes::fill(std::uint8_t value, std::size_t bytes) {
  if (bytes > 0) check(cudaMemset(data(), value, bytes), "cudaMemset");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

#else

namespace {

[[noreturn]] void not_built() {
  throw Error(ErrorKind::invalid_config,
              "--device cuda: this ringfuse-perf was built without CUDA (CMake found no CUDA "
              "toolkit and NCCL); measure host memory with --device cpu");
}

}  // namespace

int select_cuda_device(int) { not_built(); }
void DeviceBytes::Free::operator()(std::byte*) const {}
DeviceBytes::DeviceBytes(std::size_t) { not_built(); }
void DeviceBytes::upload(const void*, std::size_t) { not_built(); }
void DeviceBytes::download(void*, std::size_t) const { not_built(); }
void DeviceBytes::copy_from(const DeviceBytes&, std::size_t) { not_built(); }
void DeviceBytes::fill(std::uint8_t, std::size_t) { not_built(); }

#endif

}  // namespace ringfuse::perf
