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

/// Packs `n` device buffers back to back into `dst` (and unpacks): cudaMemcpyAsync per buffer.
void pack(void* dst, const void* const* sources, const std::size_t* bytes, std::size_t n,
          cudaStream_t stream);
void unpack(const void* src, void* const* destinations, const std::size_t* bytes, std::size_t n,
            cudaStream_t stream);

}  // namespace ringfuse::reduce::cuda
