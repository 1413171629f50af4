// The fusion buffer: one allocation of at most RINGFUSE_FUSION_THRESHOLD bytes, reused by
// every cycle. It grows (at least doubling, pre-faulted at once) only when a fused group needs
// more than it has, so a model whose fused groups are small never pays for touching the whole
// threshold (~11 us per 4 KiB page on first touch here: 0.35 s for 128 MiB). Plus the element
// conversions that pack tensors into it (prescale, fp16/bf16 compression) and unpack them
// (postscale, average).
#pragma once

#include <cstddef>
#include <memory>

#include "ringfuse/types.hpp"

namespace ringfuse::memory {

class FusionBuffer {
 public:
  explicit FusionBuffer(std::size_t capacity) : capacity_(capacity) {}
  std::size_t capacity() const { return capacity_; }
  /// At least `bytes` (at most capacity()) of buffer, pre-faulted; its contents do not survive
  /// a call that grows it.
  std::byte* data(std::size_t bytes);
  /// What is allocated now.
  std::size_t allocated() const { return allocated_; }

 private:
  std::size_t capacity_;
  std::size_t allocated_ = 0;
  std::unique_ptr<std::byte[]> data_;
};

/// dst (dst_type) = src (src_type) * factor, element-wise; a plain copy when the types agree
/// and factor is 1. The product is computed in f64; into an integer type it is truncated
/// toward zero (Horovod's rule for scaling integer tensors) and saturates at the type's limits;
/// into bool it is 1 when nonzero.
void convert_scaled(void* dst, DataType dst_type, const void* src, DataType src_type,
                    std::size_t count, double factor);

/// Fills `count` elements with the identity of `op` (what a joined rank contributes).
void fill_identity(void* dst, DataType type, ReduceOp op, std::size_t count);

}  // namespace ringfuse::memory
