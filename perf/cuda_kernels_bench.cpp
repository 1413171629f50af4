// Google Benchmark over the engine's CUDA packing kernels (reduce/cuda_kernels.cu): each
// iteration times the kernel and then a device-to-device cudaMemcpy of the same source bytes
// with CUDA events, back to back on one stream, so every row carries its own reference:
// `of_memcpy` = memcpy time / kernel time (the target is >= 0.8). GB/s count the source bytes.
// Without a usable GPU it says so and exits 0.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "reduce/cuda_kernels.hpp"
#include "ringfuse/types.hpp"

namespace {

using ringfuse::DataType;
using ringfuse::reduce::cuda::Segment;

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) {
    std::fprintf(stderr, "ringfuse-cuda-kernel-bench: %s: %s\n", what, cudaGetErrorString(rc));
    std::exit(2);
  }
}

class DeviceMemory {
 public:
  explicit DeviceMemory(std::size_t bytes) {
    check(cudaMalloc(&data_, bytes), "cudaMalloc");
    check(cudaMemset(data_, 0, bytes), "cudaMemset");
  }
  ~DeviceMemory() { cudaFree(data_); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  std::byte* get() const { return static_cast<std::byte*>(data_); }

 private:
  void* data_ = nullptr;
};

class Events {
 public:
  Events() {
    for (auto& event : events_) check(cudaEventCreate(&event), "cudaEventCreate");
  }
  ~Events() {
    for (auto& event : events_) cudaEventDestroy(event);
  }
  Events(const Events&) = delete;
  Events& operator=(const Events&) = delete;
  cudaEvent_t operator[](int i) const { return events_[i]; }

 private:
  cudaEvent_t events_[3]{};
};

float elapsed_ms(cudaEvent_t from, cudaEvent_t to) {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, from, to), "cudaEventElapsedTime");
  return ms;
}

// `segments` equal pieces of `bytes` of `src_type`, converted into dst_type with `factor`
// (in place when `in_place`).
void BM_convert(benchmark::State& state, DataType dst_type, DataType src_type, double factor,
                std::size_t pieces, bool in_place) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  const std::size_t count = bytes / ringfuse::element_size(src_type);
  DeviceMemory source(bytes);
  DeviceMemory destination(bytes);
  DeviceMemory reference(bytes);
  std::vector<Segment> segments;
  const std::size_t per_piece = count / pieces;
  for (std::size_t i = 0; i < pieces; ++i) {
    std::byte* out = in_place ? source.get() : destination.get();
    segments.push_back({out + i * per_piece * ringfuse::element_size(dst_type),
                        source.get() + i * per_piece * ringfuse::element_size(src_type),
                        i + 1 < pieces ? per_piece : count - i * per_piece});
  }
  const Events events;
  double kernel_ms = 0;
  double memcpy_ms = 0;
  for (auto _ : state) {
    check(cudaEventRecord(events[0], nullptr), "cudaEventRecord");
    ringfuse::reduce::cuda::convert(segments.data(), segments.size(), dst_type, src_type, factor,
                                    nullptr);
    check(cudaEventRecord(events[1], nullptr), "cudaEventRecord");
    check(cudaMemcpyAsync(reference.get(), source.get(), bytes, cudaMemcpyDeviceToDevice, nullptr),
          "cudaMemcpyAsync");
    check(cudaEventRecord(events[2], nullptr), "cudaEventRecord");
    check(cudaEventSynchronize(events[2]), "cudaEventSynchronize");
    const float kernel = elapsed_ms(events[0], events[1]);
    kernel_ms += kernel;
    memcpy_ms += elapsed_ms(events[1], events[2]);
    state.SetIterationTime(kernel / 1e3);
  }
  const double moved = static_cast<double>(bytes) * static_cast<double>(state.iterations());
  state.counters["GBps"] = moved / (kernel_ms * 1e6);
  state.counters["memcpy_GBps"] = moved / (memcpy_ms * 1e6);
  state.counters["of_memcpy"] = memcpy_ms / kernel_ms;
}

void sizes(benchmark::internal::Benchmark* b) {
  for (const std::int64_t bytes : {64 << 10, 1 << 20, 16 << 20, 256 << 20}) b->Arg(bytes);
  b->UseManualTime();
}

BENCHMARK_CAPTURE(BM_convert, pack_f32, DataType::f32, DataType::f32, 1.0, 1, false)
    ->Apply(sizes);
BENCHMARK_CAPTURE(BM_convert, pack_f32_64_tensors, DataType::f32, DataType::f32, 1.0, 64, false)
    ->Apply(sizes);
BENCHMARK_CAPTURE(BM_convert, pack_scaled_f32, DataType::f32, DataType::f32, 0.5, 1, false)
    ->Apply(sizes);
BENCHMARK_CAPTURE(BM_convert, scale_in_place_f32, DataType::f32, DataType::f32, 0.5, 1, true)
    ->Apply(sizes);
BENCHMARK_CAPTURE(BM_convert, compress_f32_to_f16, DataType::f16, DataType::f32, 1.0, 1, false)
    ->Apply(sizes);
BENCHMARK_CAPTURE(BM_convert, decompress_f16_to_f32_avg, DataType::f32, DataType::f16, 0.5, 1,
                  false)
    ->Apply(sizes);

}  // namespace

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t rc = cudaGetDeviceCount(&devices);
  if (rc != cudaSuccess || devices == 0) {
    std::printf("ringfuse-cuda-kernel-bench: no usable CUDA device (%s): nothing to measure\n",
                rc != cudaSuccess ? cudaGetErrorString(rc) : "none visible");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
