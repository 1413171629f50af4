#include "reduce/cuda_kernels.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

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

// Segments per launch: the batch travels as a kernel parameter (64 x 24 B, well under the
// 4 KiB parameter limit), so a launch needs no table copied to the device first.
constexpr std::size_t kBatch = 64;
// Blocks per segment at most: with kThreads each, 1024 blocks keep every SM of a large GPU
// busy on one big segment; grid-stride loops cover the rest.
constexpr std::size_t kMaxBlocksPerSegment = 1024;

struct Batch {
  Segment segments[kBatch];
};

unsigned blocks_per_segment(std::size_t longest) {
  // Four elements per thread before another block is worth its launch.
  const std::size_t blocks = (longest + 4 * kThreads - 1) / (4 * kThreads);
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks > kMaxBlocksPerSegment
                                                    ? kMaxBlocksPerSegment
                                                    : blocks);
}

__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }

template <typename C>
__device__ __forceinline__ void put(__half* dst, C v) {
  *dst = __float2half_rn(static_cast<float>(v));
}
template <typename C>
__device__ __forceinline__ void put(__nv_bfloat16* dst, C v) {
  *dst = __float2bfloat16_rn(static_cast<float>(v));
}
template <typename C>
__device__ __forceinline__ void put(float* dst, C v) { *dst = static_cast<float>(v); }
template <typename C>
__device__ __forceinline__ void put(double* dst, C v) { *dst = static_cast<double>(v); }

// Grid: x = blocks per segment, y = segment. C is the type the product is computed in (double
// when either side is f64, as on the host).
template <typename Dst, typename Src, typename C>
__global__ void convert_kernel(Batch batch, C factor) {
  const Segment& segment = batch.segments[blockIdx.y];
  auto* dst = static_cast<Dst*>(segment.dst);
  const auto* src = static_cast<const Src*>(segment.src);
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
       i < segment.count; i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    put(dst + i, static_cast<C>(widen(src[i])) * factor);
  }
}

// Integer scaling (same type in and out), as the host's convert_scaled does it: the product
// in f64, truncated toward zero; saturated at [low, high] (T's limits, passed from the host
// with their exclusive bounds below_low and above_high), NaN giving 0.
template <typename T>
__global__ void scale_integer_kernel(Batch batch, double factor, double below_low,
                                     double above_high, T low, T high) {
  const Segment& segment = batch.segments[blockIdx.y];
  auto* dst = static_cast<T*>(segment.dst);
  const auto* src = static_cast<const T*>(segment.src);
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
       i < segment.count; i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(src[i]) * factor;
    dst[i] = v != v ? T(0) : v >= above_high ? high : v <= below_low ? low : static_cast<T>(v);
  }
}

template <typename T>
void launch_scale_integer(const Batch& batch, dim3 grid, double factor, cudaStream_t stream) {
  using L = std::numeric_limits<T>;
  scale_integer_kernel<T><<<grid, kThreads, 0, stream>>>(
      batch, factor, static_cast<double>(L::min()) - 1.0, static_cast<double>(L::max()) + 1.0,
      L::min(), L::max());
}

template <typename Word>
__device__ void copy_words(void* dst, const void* src, std::size_t words) {
  auto* out = static_cast<Word*>(dst);
  const auto* in = static_cast<const Word*>(src);
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < words;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    out[i] = in[i];
  }
}

// A plain copy per segment, in the widest word that the addresses and the length allow (the
// branch is uniform: one block works on one segment).
__global__ void copy_kernel(Batch batch, std::size_t element_bytes) {
  const Segment& segment = batch.segments[blockIdx.y];
  if (segment.dst == segment.src) return;
  const std::size_t bytes = segment.count * element_bytes;
  const auto alignment = reinterpret_cast<std::uintptr_t>(segment.dst) |
                         reinterpret_cast<std::uintptr_t>(segment.src) | bytes;
  if (alignment % 16 == 0) {
    copy_words<uint4>(segment.dst, segment.src, bytes / 16);
  } else if (alignment % 8 == 0) {
    copy_words<uint2>(segment.dst, segment.src, bytes / 8);
  } else if (alignment % 4 == 0) {
    copy_words<unsigned>(segment.dst, segment.src, bytes / 4);
  } else if (alignment % 2 == 0) {
    copy_words<unsigned short>(segment.dst, segment.src, bytes / 2);
  } else {
    copy_words<unsigned char>(segment.dst, segment.src, bytes);
  }
}

template <typename T>
__global__ void fill_kernel(T* dst, std::size_t count, T value) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    dst[i] = value;
  }
}

// Calls f with a null pointer of the CUDA type of a floating-point DataType.
template <typename F>
void with_float_type(DataType type, F&& f) {
  switch (type) {
    case DataType::f16: f(static_cast<__half*>(nullptr)); return;
    case DataType::bf16: f(static_cast<__nv_bfloat16*>(nullptr)); return;
    case DataType::f32: f(static_cast<float*>(nullptr)); return;
    case DataType::f64: f(static_cast<double*>(nullptr)); return;
    default:
      throw Error(ErrorKind::invalid_argument,
                  std::string("cuda::convert: ") + std::string(to_string(type)) +
                      " converts only to itself, unscaled");
  }
}

void launch_convert(const Batch& batch, dim3 grid, DataType dst_type, DataType src_type,
                    double factor, cudaStream_t stream) {
  if (dst_type == src_type) {
    switch (dst_type) {
      case DataType::i8: return launch_scale_integer<std::int8_t>(batch, grid, factor, stream);
      case DataType::u8: return launch_scale_integer<std::uint8_t>(batch, grid, factor, stream);
      case DataType::i16: return launch_scale_integer<std::int16_t>(batch, grid, factor, stream);
      case DataType::i32: return launch_scale_integer<std::int32_t>(batch, grid, factor, stream);
      case DataType::i64: return launch_scale_integer<std::int64_t>(batch, grid, factor, stream);
      default: break;
    }
  }
  with_float_type(dst_type, [&](auto* dst_tag) {
    with_float_type(src_type, [&](auto* src_tag) {
      using Dst = std::remove_pointer_t<decltype(dst_tag)>;
      using Src = std::remove_pointer_t<decltype(src_tag)>;
      if constexpr (std::is_same_v<Dst, double> || std::is_same_v<Src, double>) {
        convert_kernel<Dst, Src, double><<<grid, kThreads, 0, stream>>>(batch, factor);
      } else {
        convert_kernel<Dst, Src, float>
            <<<grid, kThreads, 0, stream>>>(batch, static_cast<float>(factor));
      }
    });
  });
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

void convert(const Segment* segments, std::size_t n, DataType dst_type, DataType src_type,
             double factor, cudaStream_t stream) {
  const bool copy = dst_type == src_type && factor == 1.0;
  const std::size_t element = element_size(src_type);
  for (std::size_t first = 0; first < n; first += kBatch) {
    Batch batch{};
    const std::size_t used = n - first < kBatch ? n - first : kBatch;
    std::size_t longest = 0;
    for (std::size_t j = 0; j < used; ++j) {
      batch.segments[j] = segments[first + j];
      const std::size_t work = copy ? segments[first + j].count * element / 16
                                    : segments[first + j].count;
      longest = work > longest ? work : longest;
    }
    const dim3 grid(blocks_per_segment(longest), static_cast<unsigned>(used));
    if (copy) {
      copy_kernel<<<grid, kThreads, 0, stream>>>(batch, element);
    } else {
      launch_convert(batch, grid, dst_type, src_type, factor, stream);
    }
    check_launch("convert");
  }
}

void fill(void* dst, std::uint64_t pattern, std::size_t element_bytes, std::size_t count,
          cudaStream_t stream) {
  if (count == 0) return;
  const unsigned blocks = blocks_for(count);
  switch (element_bytes) {
    case 1:
      fill_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<std::uint8_t*>(dst), count,
                                                   static_cast<std::uint8_t>(pattern));
      break;
    case 2:
      fill_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<std::uint16_t*>(dst), count,
                                                   static_cast<std::uint16_t>(pattern));
      break;
    case 4:
      fill_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<std::uint32_t*>(dst), count,
                                                   static_cast<std::uint32_t>(pattern));
      break;
    case 8:
      fill_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<std::uint64_t*>(dst), count,
                                                   pattern);
      break;
    default:
      throw Error(ErrorKind::invalid_argument,
                  "cuda::fill: elements of " + std::to_string(element_bytes) + " bytes");
  }
  check_launch("fill");
}

}  // namespace ringfuse::reduce::cuda
