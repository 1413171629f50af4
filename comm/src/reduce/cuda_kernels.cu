#include "reduce/cuda_kernels.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "ringfuse/error.hpp"

namespace ringfuse::reduce::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::size_t count) {
  const std::size_t blocks = (count + kThreads - 1) / kThreads;
  // Grid-stride loops cover what a capped grid does not.
  return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

void check_launch(const char* what) {
  const cudaError_t rc = cudaGetLastError();
  if (rc != cudaSuccess) {
    throw Error(ErrorKind::system,
                std::string("CUDA kernel ") + what + " failed to launch: " +
                    cudaGetErrorString(rc));
  }
}

template <typename T>
__global__ void scale_kernel(T* data, std::size_t count, float factor) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    data[i] = static_cast<T>(static_cast<float>(data[i]) * factor);
  }
}

__global__ void scale_f64_kernel(double* data, std::size_t count, double factor) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    data[i] *= factor;
  }
}

__global__ void f32_to_f16_kernel(const float* in, __half* out, std::size_t count, float factor) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2half_rn(in[i] * factor);
  }
}

__global__ void f16_to_f32_kernel(const __half* in, float* out, std::size_t count, float factor) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    out[i] = __half2float(in[i]) * factor;
  }
}

}  // namespace

void scale(void* data, std::size_t count, DataType type, double factor, cudaStream_t stream) {
  if (count == 0) return;
  const unsigned blocks = blocks_for(count);
  switch (type) {
    case DataType::f16:
      scale_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<__half*>(data), count,
                                                    static_cast<float>(factor));
      break;
    case DataType::bf16:
      scale_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(data), count,
                                                    static_cast<float>(factor));
      break;
    case DataType::f32:
      scale_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<float*>(data), count,
                                                    static_cast<float>(factor));
      break;
    case DataType::f64:
      scale_f64_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<double*>(data), count, factor);
      break;
    default:
      throw Error(ErrorKind::invalid_argument, "cuda::scale: only floating-point types scale");
  }
  check_launch("scale");
}

void f32_to_f16(const float* in, std::uint16_t* out, std::size_t count, float factor,
                cudaStream_t stream) {
  if (count == 0) return;
  f32_to_f16_kernel<<<blocks_for(count), kThreads, 0, stream>>>(in, reinterpret_cast<__half*>(out),
                                                                count, factor);
  check_launch("f32_to_f16");
}

void f16_to_f32(const std::uint16_t* in, float* out, std::size_t count, float factor,
                cudaStream_t stream) {
  if (count == 0) return;
  f16_to_f32_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
      reinterpret_cast<const __half*>(in), out, count, factor);
  check_launch("f16_to_f32");
}

void pack(void* dst, const void* const* sources, const std::size_t* bytes, std::size_t n,
          cudaStream_t stream) {
  auto* out = static_cast<char*>(dst);
  for (std::size_t i = 0; i < n; ++i) {
    if (cudaMemcpyAsync(out, sources[i], bytes[i], cudaMemcpyDefault, stream) != cudaSuccess) {
      check_launch("pack");
    }
    out += bytes[i];
  }
}

void unpack(const void* src, void* const* destinations, const std::size_t* bytes, std::size_t n,
            cudaStream_t stream) {
  const auto* in = static_cast<const char*>(src);
  for (std::size_t i = 0; i < n; ++i) {
    if (cudaMemcpyAsync(destinations[i], in, bytes[i], cudaMemcpyDefault, stream) != cudaSuccess) {
      check_launch("unpack");
    }
    in += bytes[i];
  }
}

}  // namespace ringfuse::reduce::cuda
