// The fusion buffer: one allocation of RINGFUSE_FUSION_THRESHOLD bytes, made and pre-faulted
// on first use and reused by every cycle; plus the element conversions that pack tensors into
// it (prescale, fp16/bf16 compression) and unpack them (postscale, average).
#pragma once

#include <cstddef>
#include <memory>

#include "ringfuse/types.hpp"

namespace ringfuse::engine {

class FusionBuffer {
 public:
  explicit FusionBuffer(std::size_t capacity) : capacity_(capacity) {}
  std::size_t capacity() const { return capacity_; }
  /// The buffer, allocated and touched on first call.
  std::byte* data();

 private:
  std::size_t capacity_;
  std::unique_ptr<std::byte[]> data_;
};

/// dst (dst_type) = src (src_type) * factor, element-wise; a plain copy when the types agree
/// and factor is 1. Integer types only with factor 1 and equal types.
void convert_scaled(void* dst, DataType dst_type, const void* src, DataType src_type,
                    std::size_t count, double factor);

/// Fills `count` elements with the identity of `op` (what a joined rank contributes).
void fill_identity(void* dst, DataType type, ReduceOp op, std::size_t count);

}  // namespace ringfuse::engine
