// The engine's packing space on a CUDA device (memory/memory_space.hpp): fusion buffer and
// scratch in device memory, our kernels (reduce/cuda_kernels.cu) on the engine's own
// non-blocking stream, so packing never waits for, or holds up, unrelated work that callers
// queue later on the default stream.
#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/errors.hpp"
#include "memory/memory_space.hpp"
#include "reduce/cuda_kernels.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::memory {
namespace {

class CudaMemorySpace final : public MemorySpace {
 public:
  CudaMemorySpace(int rank, int device, std::chrono::milliseconds timeout)
      : rank_(rank), device_(device), timeout_(timeout) {}

  ~CudaMemorySpace() override {
    if (stream_ == nullptr) return;  // never used: no CUDA context was made for it
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    if (fusion_ != nullptr) cudaFree(fusion_);
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (done_ != nullptr) cudaEventDestroy(done_);
    if (callers_ != nullptr) cudaEventDestroy(callers_);
    cudaStreamDestroy(stream_);
  }

  CudaMemorySpace(const CudaMemorySpace&) = delete;
  CudaMemorySpace& operator=(const CudaMemorySpace&) = delete;

  Device device() const override { return Device::cuda; }
  int device_index() const override { return device_; }

  std::byte* fusion_buffer(std::size_t bytes) override {
    return grow(fusion_, fusion_bytes_, bytes, "fusion buffer");
  }
  std::byte* scratch(std::size_t bytes) override {
    return grow(scratch_, scratch_bytes_, bytes, "scratch buffer");
  }

  void begin() override {
    select();
    // Callers produce their tensors on the legacy default stream (as for every NCCL call made
    // from the host): our stream starts after what they have queued there by now.
    check(cudaEventRecord(callers_, cudaStreamLegacy), "cudaEventRecord");
    check(cudaStreamWaitEvent(stream_, callers_, 0), "cudaStreamWaitEvent");
  }

  void convert(std::span<const CopySegment> segments, DataType dst_type, DataType src_type,
               double factor) override {
    select();
    batch_.clear();
    for (const auto& segment : segments) {
      if (segment.count > 0) batch_.push_back({segment.dst, segment.src, segment.count});
    }
    if (batch_.empty()) return;
    reduce::cuda::convert(batch_.data(), batch_.size(), dst_type, src_type, factor, stream_);
  }

  void fill(void* dst, std::uint64_t pattern, std::size_t element_bytes,
            std::size_t count) override {
    select();
    reduce::cuda::fill(dst, pattern, element_bytes, count, stream_);
  }

  void finish() override {
    select();
    check(cudaEventRecord(done_, stream_), "cudaEventRecord");
    const auto until = std::chrono::steady_clock::now() + timeout_;
    for (;;) {
      const cudaError_t state = cudaEventQuery(done_);
      if (state == cudaSuccess) return;
      if (state != cudaErrorNotReady) check(state, "packing kernels");
      if (std::chrono::steady_clock::now() > until) {
        throw core::rank_error(ErrorKind::timeout, rank_,
                               "the engine's packing kernels on CUDA device {} did not "
                               "finish within {} s (is the device hung or oversubscribed?)",
                               device_, timeout_.count() / 1000);
      }
      std::this_thread::yield();
    }
  }

 private:
  /// Makes device_ current on this thread; the stream and events are made on first use, so an
  /// engine that only ever sees host tensors never creates a CUDA context.
  void select() {
    check(cudaSetDevice(device_), "cudaSetDevice");
    if (stream_ != nullptr) return;
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaEventCreateWithFlags(&callers_, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
  }

  void check(cudaError_t rc, const char* what) const {
    if (rc != cudaSuccess) {
      throw core::rank_error(ErrorKind::system, rank_,
                             "engine on CUDA device {}: {} failed: {} ({})", device_, what,
                             cudaGetErrorString(rc), static_cast<int>(rc));
    }
  }

  /// Device memory needs no pre-faulting; growing to the next power of two (at least 1 MiB)
  /// keeps reallocations to a handful while a model warms up.
  std::byte* grow(void*& memory, std::size_t& capacity, std::size_t bytes, const char* what) {
    if (bytes > capacity) {
      finish();  // the stream may still read the old buffer (waited for with the deadline)
      if (memory != nullptr) cudaFree(memory);
      memory = nullptr;
      capacity = 0;
      const std::size_t grown = std::bit_ceil(std::max<std::size_t>(bytes, std::size_t{1} << 20));
      const cudaError_t rc = cudaMalloc(&memory, grown);
      if (rc != cudaSuccess) {
        cudaGetLastError();
        throw core::rank_error(ErrorKind::system, rank_,
                               "engine: could not allocate a {} of {} MiB on CUDA "
                               "device {}: {}; lower RINGFUSE_FUSION_THRESHOLD",
                               what, grown >> 20, device_, cudaGetErrorString(rc));
      }
      capacity = grown;
    }
    return static_cast<std::byte*>(memory);
  }

  int rank_;
  int device_;
  std::chrono::milliseconds timeout_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t callers_ = nullptr;
  cudaEvent_t done_ = nullptr;
  void* fusion_ = nullptr;
  std::size_t fusion_bytes_ = 0;
  void* scratch_ = nullptr;
  std::size_t scratch_bytes_ = 0;
  std::vector<reduce::cuda::Segment> batch_;
};

}  // namespace

std::unique_ptr<MemorySpace> make_cuda_memory_space(int rank, int local_rank,
                                                     std::chrono::milliseconds timeout,
                                                     std::string& why_not) {
  int devices = 0;
  const cudaError_t rc = cudaGetDeviceCount(&devices);
  if (rc != cudaSuccess) {
    cudaGetLastError();
    why_not = fmt::format("no CUDA device is usable (cudaGetDeviceCount: error {}, {})",
                          static_cast<int>(rc), cudaGetErrorString(rc));
    return nullptr;
  }
  if (devices == 0) {
    why_not = "no CUDA device is visible";
    return nullptr;
  }
  return std::make_unique<CudaMemorySpace>(rank, local_rank % devices, timeout);
}

}  // namespace ringfuse::memory
