// GPU memory for `ringfuse-perf --device cuda` (perf/device_memory.cpp). In a build without
// CUDA every entry point throws an Error that says so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace ringfuse::perf {

/// Makes GPU local_rank % visible GPUs current for this process (the GPU the library's NCCL
/// backend gives this rank) and returns its ordinal; throws Error when there is none.
int select_cuda_device(int local_rank);

/// cudaMalloc'd bytes on the current GPU, zeroed once at allocation.
class DeviceBytes {
 public:
  DeviceBytes() = default;
  explicit DeviceBytes(std::size_t bytes);
  std::byte* data() const { return data_.get(); }
  /// Synchronous copies (the sweep's untimed parts).
  void upload(const void* host, std::size_t bytes);
  void download(void* host, std::size_t bytes) const;
  void copy_from(const DeviceBytes& source, std::size_t bytes);
  void fill(std::uint8_t value, std::size_t bytes);

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> data_;
};

}  // namespace ringfuse::perf
