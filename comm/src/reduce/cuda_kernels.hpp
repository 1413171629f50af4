// CUDA kernels for device buffers (reduce/cuda_kernels.cu, built only with CUDA): what the
// engine's device fusion buffer needs around an NCCL collective. Host wrappers enqueue on
// `stream` and return at once; they throw Error(system) when the launch fails.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "ringfuse/types.hpp"

namespace ringfuse::reduce::cuda {

/// data[i] *= factor, for f16, bf16, f32 and f64 (Error(invalid_argument) for integers).
void scale(void* data, std::size_t count, DataType type, double factor, cudaStream_t stream);

/// Compression for the wire: out[i] = f16(in[i] * factor), and back: out[i] = in[i] * factor.
void f32_to_f16(const float* in, std::uint16_t* out, std::size_t count, float factor,
                cudaStream_t stream);
void f16_to_f32(const std::uint16_t* in, float* out, std::size_t count, float factor,
                cudaStream_t stream);

/// One segment of a batched conversion: `count` elements from `src` to `dst`.
struct Segment {
  void* dst;
  const void* src;
  std::size_t count;
};

/// For every segment, dst[i] = dst_type(src[i] * factor): packing tensors into a fusion
/// buffer and unpacking them, with prescale/postscale and fp16/bf16 compression on the way, in
/// one launch per 64 segments (not one cudaMemcpy per tensor). Floating-point types convert
/// freely; equal types with factor 1 are a plain copy (any type, widest aligned words); an
/// integer type scales into itself in f64, truncated toward zero and saturated (as on the
/// host). Other conversions (bool scaled, integer to another type) throw
/// Error(invalid_argument).
void convert(const Segment* segments, std::size_t n, DataType dst_type, DataType src_type,
             double factor, cudaStream_t stream);

/// `count` elements of `element_bytes` (1, 2, 4 or 8) set to the low bytes of `pattern`.
void fill(void* dst, std::uint64_t pattern, std::size_t element_bytes, std::size_t count,
          cudaStream_t stream);

}  // namespace ringfuse::reduce::cuda
