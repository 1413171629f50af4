// The NCCL backend and the CUDA kernels on a real GPU. Every test skips, with the reason, when
// no CUDA device is usable (cudaGetDeviceCount: error 35 = insufficient driver, 100 = no
// device, or 0 devices), so the suite builds and passes on machines without one.
//
// Multi-rank NCCL needs one GPU per rank: NCCL >= 2.19 refuses two ranks of a communicator on
// the same device. With one GPU these tests cover a world of one through the Context (the
// whole NCCL path: unique id, communicator, stream, events, error polling) and the kernels;
// TwoRanksTwoGpus runs under ringfuse-run when at least two GPUs are visible. The CudaStaging
// tests run device buffers on the native backend (pinned host staging), one GPU enough.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "reduce/cuda_kernels.hpp"
#include "reduce/half.hpp"
#include "ringfuse/ringfuse.hpp"
#include "subprocess.hpp"

namespace {

using ringfuse::DataType;
using ringfuse::ReduceOp;

int usable_devices(std::string& why) {
  int devices = 0;
  const cudaError_t rc = cudaGetDeviceCount(&devices);
  if (rc != cudaSuccess) {
    why = "no usable CUDA device: cudaGetDeviceCount returned error " +
          std::to_string(static_cast<int>(rc)) + " (" + cudaGetErrorString(rc) + ")";
    return 0;
  }
  if (devices == 0) why = "no CUDA device is visible";
  return devices;
}

#define REQUIRE_GPUS(n)                                                             \
  do {                                                                              \
    std::string why;                                                                \
    const int found = usable_devices(why);                                          \
    if (found == 0) GTEST_SKIP() << why;                                            \
    if (found < (n)) GTEST_SKIP() << "needs " << (n) << " GPUs, found " << found;   \
  } while (false)

template <typename T>
struct DeviceBuffer {
  explicit DeviceBuffer(const std::vector<T>& host) : count(host.size()) {
    EXPECT_EQ(cudaMalloc(&data, count * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, host.data(), count * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  explicit DeviceBuffer(std::size_t n) : count(n) {
    EXPECT_EQ(cudaMalloc(&data, count * sizeof(T)), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(data); }
  std::vector<T> read() const {
    std::vector<T> host(count);
    EXPECT_EQ(cudaMemcpy(host.data(), data, count * sizeof(T), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }
  T* data = nullptr;
  std::size_t count;
};

std::unique_ptr<ringfuse::Context> world_of_one(ringfuse::BackendKind backend) {
  ringfuse::Options options;
  options.backend = backend;
  options.op_timeout = std::chrono::seconds(60);
  return ringfuse::init(ringfuse::WorldSpec{}, options);
}

std::unique_ptr<ringfuse::Context> nccl_world_of_one() {
  return world_of_one(ringfuse::BackendKind::nccl);
}

// Every collective on device memory through `context`, in a world of one (each result equals
// the input).
void run_every_collective_on_device_memory(ringfuse::Context& context) {
  std::vector<float> values(1009);
  std::iota(values.begin(), values.end(), 1.0f);
  DeviceBuffer<float> data(values);
  context.allreduce(data.data, data.count, DataType::f32, ReduceOp::sum);
  EXPECT_EQ(data.read(), values);
  context.allreduce(data.data, data.count, DataType::f32, ReduceOp::avg);
  EXPECT_EQ(data.read(), values);
  context.broadcast(data.data, data.count, DataType::f32, 0);
  EXPECT_EQ(data.read(), values);
  DeviceBuffer<float> out(values.size());
  context.allgather(data.data, out.data, data.count, DataType::f32);
  EXPECT_EQ(out.read(), values);
  context.reducescatter(data.data, out.data, data.count, DataType::f32, ReduceOp::max);
  EXPECT_EQ(out.read(), values);
  context.alltoall(data.data, out.data, data.count, DataType::f32);
  EXPECT_EQ(out.read(), values);
  context.barrier();  // host: runs on the native backend
}

TEST(CudaKernels, ScaleMultipliesEveryElement) {
  REQUIRE_GPUS(1);
  std::vector<float> values(100'003);
  std::iota(values.begin(), values.end(), 0.0f);
  DeviceBuffer<float> buffer(values);
  ringfuse::reduce::cuda::scale(buffer.data, buffer.count, DataType::f32, 0.5, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto result = buffer.read();
  for (std::size_t i = 0; i < values.size(); ++i) ASSERT_EQ(result[i], values[i] * 0.5f) << i;
}

TEST(CudaKernels, F32ToF16AndBackMatchesTheHostConversion) {
  REQUIRE_GPUS(1);
  std::vector<float> values(65'537);
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = (static_cast<float>(i) - 30000.0f) / 7.0f;
  }
  DeviceBuffer<float> input(values);
  DeviceBuffer<std::uint16_t> half(values.size());
  DeviceBuffer<float> back(values.size());
  ringfuse::reduce::cuda::f32_to_f16(input.data, half.data, values.size(), 2.0f, nullptr);
  ringfuse::reduce::cuda::f16_to_f32(half.data, back.data, values.size(), 0.5f, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto bits = half.read();
  const auto result = back.read();
  for (std::size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(bits[i], ringfuse::reduce::float_to_f16(values[i] * 2.0f)) << i;
    ASSERT_EQ(result[i], ringfuse::reduce::f16_to_float(bits[i]) * 0.5f) << i;
  }
}

TEST(NcclBackend, WorldOfOneRunsEveryCollectiveOnDeviceMemory) {
  REQUIRE_GPUS(1);
  auto context = nccl_world_of_one();
  run_every_collective_on_device_memory(*context);
}

TEST(CudaStaging, NativeBackendRunsEveryCollectiveOnDeviceMemory) {
  REQUIRE_GPUS(1);
  auto context = world_of_one(ringfuse::BackendKind::native);
  run_every_collective_on_device_memory(*context);
}

// Two nccl_worker ranks under ringfuse-run with RINGFUSE_BACKEND=`backend`: checks they ended
// in time and well, and returns what they printed.
std::string run_two_workers(const std::string& backend) {
  const auto result = ringfuse::testing::run_process(
      {RINGFUSE_RUN_PATH, "-np", "2", "--", NCCL_WORKER_PATH},
      {{"RINGFUSE_BACKEND", backend}, {"RINGFUSE_TIMEOUT_S", "60"}}, std::chrono::minutes(3));
  EXPECT_FALSE(result.timed_out) << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return result.output;
}

TEST(CudaStaging, TwoRanksShareOneGpuThroughTheNativeBackend) {
  // NCCL refuses two ranks on one device; staging through host memory does not care.
  REQUIRE_GPUS(1);
  const auto output = run_two_workers("native");
  for (const char* line : {"rank 0: native allreduce of 1048576 floats, 0 wrong",
                           "rank 1: native allreduce of 1048576 floats, 0 wrong"}) {
    EXPECT_NE(output.find(line), std::string::npos) << output;
  }
}

TEST(NcclBackend, HostMemoryStillRunsOnNative) {
  REQUIRE_GPUS(1);
  auto context = nccl_world_of_one();
  std::vector<double> values{1.0, 2.0, 3.0};
  context->allreduce(values.data(), values.size(), DataType::f64, ReduceOp::sum);
  EXPECT_EQ(values, (std::vector<double>{1.0, 2.0, 3.0}));
}

TEST(NcclBackend, TwoRanksTwoGpus) {
  REQUIRE_GPUS(2);
  const auto output = run_two_workers("nccl");
  EXPECT_NE(output.find("rank 1: nccl allreduce of 1048576 floats, 0 wrong"), std::string::npos)
      << output;
}

}  // namespace
