// Where the engine packs a fused collective: a fusion buffer, stand-in memory for a joined
// rank, and element conversion (pack, unpack, prescale/postscale, fp16/bf16 compression)
// between the callers' tensors and the buffer. Host memory uses plain loops
// (memory/host_memory_space.hpp); CUDA device memory uses our kernels on the engine's own
// stream (memory/cuda/cuda_memory_space.cpp, built with CUDA and NCCL).
//
// Ordering: begin() orders what follows after the work callers had queued on the memory
// (CUDA: the legacy default stream); convert() and fill() may run asynchronously; finish()
// returns once they are done, so a backend may read the buffer and callers may read their
// tensors.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ringfuse/engine.hpp"

namespace ringfuse::memory {

/// `count` elements from `src` to `dst` (which may be the same memory).
struct CopySegment {
  void* dst = nullptr;
  const void* src = nullptr;
  std::size_t count = 0;
};

class MemorySpace {
 public:
  virtual ~MemorySpace() = default;

  virtual Device device() const = 0;
  /// The CUDA device this space works on (0 for host memory).
  virtual int device_index() const = 0;

  /// At least `bytes` of fusion buffer; its contents do not survive a call that grows it.
  virtual std::byte* fusion_buffer(std::size_t bytes) = 0;
  /// At least `bytes` of memory for what a joined rank contributes or receives.
  virtual std::byte* scratch(std::size_t bytes) = 0;

  virtual void begin() = 0;
  /// Every segment: dst[i] = dst_type(src[i] * factor). Integer types only with equal types
  /// and factor 1 (a copy).
  virtual void convert(std::span<const CopySegment> segments, DataType dst_type,
                       DataType src_type, double factor) = 0;
  /// `count` elements of `element_bytes` (1, 2, 4 or 8) each set to the low bytes of `pattern`.
  virtual void fill(void* dst, std::uint64_t pattern, std::size_t element_bytes,
                    std::size_t count) = 0;
  /// Waits for everything queued since begin(); throws Error(timeout) after the deadline.
  virtual void finish() = 0;
};

/// A space on this rank's CUDA device (local_rank % visible devices, as the NCCL backend picks),
/// or null with the reason in `why_not` when this build has no CUDA or no device is usable.
std::unique_ptr<MemorySpace> make_cuda_memory_space(int rank, int local_rank,
                                                     std::chrono::milliseconds timeout,
                                                     std::string& why_not);

}  // namespace ringfuse::memory
