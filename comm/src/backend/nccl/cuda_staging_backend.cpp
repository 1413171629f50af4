#include "backend/cuda_staging_backend.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <numeric>
#include <string>

#include <fmt/format.h>

#include "core/errors.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::backend {
namespace {

void check_cuda(cudaError_t rc, int rank, const char* what) {
  if (rc != cudaSuccess) {
    throw core::rank_error(ErrorKind::system, rank,
                           "staging a CUDA buffer through host memory: {} failed: {} "
                           "({})",
                           what, cudaGetErrorString(rc), static_cast<int>(rc));
  }
}

// Page-locked host memory, so that device copies run at full speed and without a bounce.
class PinnedBuffer {
 public:
  explicit PinnedBuffer(int rank) : rank_(rank) {}
  ~PinnedBuffer() {
    if (data_ != nullptr) cudaFreeHost(data_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  /// At least `bytes`; grows to the next power of two, so a run of growing sizes reallocates
  /// only a few times.
  void* reserve(std::size_t bytes) {
    if (bytes > capacity_) {
      if (data_ != nullptr) cudaFreeHost(data_);
      data_ = nullptr;
      capacity_ = 0;
      const std::size_t grown = std::bit_ceil(std::max<std::size_t>(bytes, 1 << 20));
      check_cuda(cudaHostAlloc(&data_, grown, cudaHostAllocDefault), rank_, "cudaHostAlloc");
      capacity_ = grown;
    }
    return data_;
  }

 private:
  int rank_;
  void* data_ = nullptr;
  std::size_t capacity_ = 0;
};

class CudaStagingBackend final : public Backend {
 public:
  CudaStagingBackend(Backend& host, int rank, int size)
      : host_(host), rank_(rank), size_(size), send_(rank), recv_(rank) {}

  std::string_view name() const override { return "cuda-staging"; }
  std::uint64_t sequence() const override { return host_.sequence(); }

  bool enabled(const OpDesc& op) const override {
    return op.device == Device::cuda && host_.enabled(OpDesc{op.kind, op.type, op.op, Device::cpu});
  }

  Executed allreduce(void* data, std::size_t count, DataType type, ReduceOp op,
                     Algorithm algo) override {
    const std::size_t bytes = count * element_size(type);
    void* staged = to_host(send_, data, bytes);
    auto executed = host_.allreduce(staged, count, type, op, algo);
    to_device(data, staged, bytes);
    return executed;
  }

  void broadcast(void* data, std::size_t count, DataType type, int root) override {
    const std::size_t bytes = count * element_size(type);
    void* staged = to_host(send_, data, bytes);
    host_.broadcast(staged, count, type, root);
    to_device(data, staged, bytes);
  }

  void allgatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                  DataType type) override {
    const std::size_t element = element_size(type);
    const std::size_t total = std::accumulate(counts.begin(), counts.end(), std::size_t{0});
    const void* staged_send = to_host(send_, send, counts[static_cast<std::size_t>(rank_)] * element);
    void* staged_recv = recv_.reserve(total * element);
    host_.allgatherv(staged_send, staged_recv, counts, type);
    to_device(recv, staged_recv, total * element);
  }

  void reducescatter(const void* send, void* recv, std::size_t recv_count, DataType type,
                     ReduceOp op) override {
    const std::size_t element = element_size(type);
    const void* staged_send =
        to_host(send_, send, recv_count * static_cast<std::size_t>(size_) * element);
    void* staged_recv = recv_.reserve(recv_count * element);
    host_.reducescatter(staged_send, staged_recv, recv_count, type, op);
    to_device(recv, staged_recv, recv_count * element);
  }

  void alltoallv(const void* send, std::span<const std::size_t> send_counts, void* recv,
                 std::span<const std::size_t> recv_counts, DataType type) override {
    const std::size_t element = element_size(type);
    const std::size_t sent =
        std::accumulate(send_counts.begin(), send_counts.end(), std::size_t{0});
    const std::size_t received =
        std::accumulate(recv_counts.begin(), recv_counts.end(), std::size_t{0});
    const void* staged_send = to_host(send_, send, sent * element);
    void* staged_recv = recv_.reserve(received * element);
    host_.alltoallv(staged_send, send_counts, staged_recv, recv_counts, type);
    to_device(recv, staged_recv, received * element);
  }

  void barrier() override { host_.barrier(); }

 private:
  // cudaMemcpyDefault: the pointer may be device, managed or (for a mixed call) host memory.
  void* to_host(PinnedBuffer& buffer, const void* source, std::size_t bytes) {
    void* staged = buffer.reserve(bytes);
    if (bytes > 0) {
      check_cuda(cudaMemcpy(staged, source, bytes, cudaMemcpyDefault), rank_,
                 "copying the input to host memory (cudaMemcpy)");
    }
    return staged;
  }

  void to_device(void* destination, const void* staged, std::size_t bytes) {
    if (bytes > 0) {
      check_cuda(cudaMemcpy(destination, staged, bytes, cudaMemcpyDefault), rank_,
                 "copying the result back to the device (cudaMemcpy)");
    }
  }

  Backend& host_;
  int rank_;
  int size_;
  PinnedBuffer send_;
  PinnedBuffer recv_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_staging_backend(Backend& host, int rank, int size) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();  // 35/100 without a usable device: nothing to stage
    return nullptr;
  }
  return std::make_unique<CudaStagingBackend>(host, rank, size);
}

}  // namespace ringfuse::backend
