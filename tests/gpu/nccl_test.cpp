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
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "memory/fusion_buffer.hpp"
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
  // NCCL has no bitwise operators: a Context stages them through host memory instead.
  const std::vector<std::int32_t> patterns{0x0f, -1, 0x70};
  DeviceBuffer<std::int32_t> bits(patterns);
  context.allreduce(bits.data, bits.count, DataType::i32, ReduceOp::band);
  EXPECT_EQ(bits.read(), patterns);
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

// Segments at odd offsets and lengths, more than one launch holds (64), each converted on the
// device and by the host's convert_scaled(); the two must agree bit for bit.
template <typename Dst, typename Src>
void expect_convert_matches_the_host(DataType dst_type, DataType src_type, double factor) {
  constexpr std::size_t kSegments = 150;
  std::vector<std::size_t> offsets;
  std::size_t total = 0;
  for (std::size_t i = 0; i < kSegments; ++i) {
    offsets.push_back(total);
    total += (i * 37) % 101 + 1;  // 1..101 elements: most segments misaligned for wide words
  }
  std::vector<Src> source(total);
  for (std::size_t i = 0; i < total; ++i) {
    const float value = (static_cast<float>(i % 2000) - 1000.0f) / 8.0f;
    if constexpr (std::is_same_v<Src, std::uint16_t>) {
      source[i] = src_type == DataType::f16 ? ringfuse::reduce::float_to_f16(value)
                                            : ringfuse::reduce::float_to_bf16(value);
    } else {
      source[i] = static_cast<Src>(value);
    }
  }
  DeviceBuffer<Src> in(source);
  DeviceBuffer<Dst> out(total);
  std::vector<ringfuse::reduce::cuda::Segment> segments;
  for (std::size_t i = 0; i < kSegments; ++i) {
    const std::size_t count = (i + 1 < kSegments ? offsets[i + 1] : total) - offsets[i];
    segments.push_back({out.data + offsets[i], in.data + offsets[i], count});
  }
  ringfuse::reduce::cuda::convert(segments.data(), segments.size(), dst_type, src_type, factor,
                                  nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<Dst> expected(total);
  ringfuse::memory::convert_scaled(expected.data(), dst_type, source.data(), src_type, total,
                                   factor);
  const auto result = out.read();
  for (std::size_t i = 0; i < total; ++i) {
    ASSERT_EQ(result[i], expected[i]) << ringfuse::to_string(src_type) << " -> "
                                      << ringfuse::to_string(dst_type) << " at " << i;
  }
}

TEST(CudaKernels, ConvertPacksAndUnpacksManySegmentsAsTheHostDoes) {
  REQUIRE_GPUS(1);
  expect_convert_matches_the_host<float, float>(DataType::f32, DataType::f32, 1.0);  // a copy
  expect_convert_matches_the_host<float, float>(DataType::f32, DataType::f32, 0.25);
  expect_convert_matches_the_host<std::uint16_t, float>(DataType::f16, DataType::f32, 0.5);
  expect_convert_matches_the_host<float, std::uint16_t>(DataType::f32, DataType::f16, 2.0);
  expect_convert_matches_the_host<std::uint16_t, float>(DataType::bf16, DataType::f32, 1.0);
  expect_convert_matches_the_host<double, float>(DataType::f64, DataType::f32, 3.0);
  expect_convert_matches_the_host<std::uint16_t, double>(DataType::f16, DataType::f64, 0.125);
  expect_convert_matches_the_host<std::int32_t, std::int32_t>(DataType::i32, DataType::i32, 1.0);
}

TEST(CudaKernels, FillSetsEveryElementToThePattern) {
  REQUIRE_GPUS(1);
  DeviceBuffer<std::uint16_t> halves(100'001);
  ringfuse::reduce::cuda::fill(halves.data, 0x7c00, 2, halves.count, nullptr);  // f16 +inf
  DeviceBuffer<double> doubles(999);
  ringfuse::reduce::cuda::fill(doubles.data, 0x3ff0000000000000ULL, 8, doubles.count, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(halves.read(), std::vector<std::uint16_t>(halves.count, 0x7c00));
  EXPECT_EQ(doubles.read(), std::vector<double>(doubles.count, 1.0));
}

ringfuse::TensorView device_view(float* data, std::int64_t count) {
  ringfuse::TensorView view{data, DataType::f32, {count}};
  view.device = ringfuse::Device::cuda;
  cudaGetDevice(&view.device_index);
  return view;
}

// Device tensors through the engine of a world of one: fused groups (packed on the device, with
// scaling and fp16 compression), an in-place one, and the other collectives. Every result must
// equal the input (exactly: the values are small integers and halves, exact in fp16).
void run_engine_on_device_tensors(ringfuse::Context& context) {
  auto& engine = context.engine();
  std::vector<std::unique_ptr<DeviceBuffer<float>>> tensors;
  std::vector<std::vector<float>> values;
  std::vector<ringfuse::Work> works;
  for (int i = 0; i < 40; ++i) {
    values.emplace_back(static_cast<std::size_t>(i * 13 + 1));
    for (std::size_t j = 0; j < values.back().size(); ++j) {
      values.back()[j] = static_cast<float>((i + j) % 64) / 2.0f;
    }
    tensors.push_back(std::make_unique<DeviceBuffer<float>>(values.back()));
    ringfuse::AllreduceOptions options;
    if (i % 2 == 0) {
      options.op = ReduceOp::avg;
      options.prescale = 2.0;
      options.postscale = 0.5;
    } else {
      options.compression = ringfuse::Compression::fp16;
    }
    works.push_back(engine.allreduce("grad." + std::to_string(i),
                                     device_view(tensors.back()->data, tensors.back()->count),
                                     options));
  }
  std::vector<float> large(std::size_t{1} << 20);
  std::iota(large.begin(), large.end(), 0.0f);
  DeviceBuffer<float> large_tensor(large);  // 4 MiB: above the in-place minimum
  works.push_back(engine.allreduce("large", device_view(large_tensor.data, large_tensor.count)));
  for (auto& work : works) work.wait(std::chrono::seconds(60));
  for (std::size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(tensors[i]->read(), values[i]) << "grad." << i;
  }
  EXPECT_EQ(large_tensor.read(), large);
  EXPECT_GE(engine.stats().fused_tensors, 2u) << "the small device tensors were not fused";

  DeviceBuffer<float> source(values[3]);
  engine.broadcast("bcast", device_view(source.data, source.count), 0).wait();
  EXPECT_EQ(source.read(), values[3]);
  DeviceBuffer<float> gathered(source.count);
  auto gather = engine.allgather("gather", device_view(source.data, source.count),
                                 [&](const std::vector<std::int64_t>& shape) -> void* {
                                   EXPECT_EQ(static_cast<std::size_t>(shape.front()), source.count);
                                   return gathered.data;
                                 });
  gather.wait();
  EXPECT_EQ(gathered.read(), values[3]);
  DeviceBuffer<float> exchanged(source.count);
  engine.alltoall("a2a", device_view(source.data, source.count),
                  device_view(exchanged.data, exchanged.count)).wait();
  EXPECT_EQ(exchanged.read(), values[3]);
  DeviceBuffer<float> scattered(source.count);
  engine.reducescatter("rs", device_view(source.data, source.count),
                       device_view(scattered.data, scattered.count), ReduceOp::max).wait();
  EXPECT_EQ(scattered.read(), values[3]);
}

TEST(Engine, DeviceTensorsInAWorldOfOneRunOnNccl) {
  REQUIRE_GPUS(1);
  auto context = nccl_world_of_one();
  run_engine_on_device_tensors(*context);
}

TEST(Engine, DeviceTensorsInAWorldOfOneRunStagedOnNative) {
  REQUIRE_GPUS(1);
  auto context = world_of_one(ringfuse::BackendKind::native);
  run_engine_on_device_tensors(*context);
}

TEST(NcclBackend, WorldOfOneRunsEveryCollectiveOnDeviceMemory) {
  REQUIRE_GPUS(1);
  auto context = nccl_world_of_one();
  run_every_collective_on_device_memory(*context);
}

// Context::split under NCCL (issue #19): a child made before any device collective makes a
// communicator of its own; one made after splits the parent's (ncclCommSplit). Both, and the
// parent beside them, run every collective on device memory.
TEST(NcclBackend, ChildContextsRunEveryCollectiveOnDeviceMemory) {
  REQUIRE_GPUS(1);
  auto context = nccl_world_of_one();
  auto before = context->split(0, 0);
  ASSERT_TRUE(before);
  run_every_collective_on_device_memory(*before);
  run_every_collective_on_device_memory(*context);  // the parent's communicator exists now
  auto after = context->split(3, 0);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->label(), "split 2 (color 3) of world");
  run_every_collective_on_device_memory(*after);
  run_every_collective_on_device_memory(*context);
  EXPECT_EQ(context->split(ringfuse::kUndefinedColor, 0), nullptr);
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
                           "rank 1: native allreduce of 1048576 floats, 0 wrong",
                           "rank 0: engine on device tensors, 0 wrong",
                           "rank 1: engine on device tensors, 0 wrong"}) {
    EXPECT_NE(output.find(line), std::string::npos) << output;
  }
}

// Point-to-point on device memory: ncclSend/ncclRecv in one group (a rank may send to
// itself there); NCCL has no any-source receive, which is refused before anything moves.
TEST(NcclBackend, SendRecvGroupOnDeviceMemory) {
  REQUIRE_GPUS(1);
  auto context = nccl_world_of_one();
  const std::vector<float> values{1.0f, 2.0f, 3.0f, 4.0f};
  DeviceBuffer<float> source(values);
  DeviceBuffer<float> target(values.size());
  const ringfuse::P2POp ops[] = {
      {ringfuse::P2POp::Kind::send, source.data, values.size(), DataType::f32, 0, 0},
      {ringfuse::P2POp::Kind::recv, target.data, values.size(), DataType::f32, 0, 0}};
  const auto statuses = context->send_recv_group(ops);
  ASSERT_EQ(statuses.size(), 1u);
  EXPECT_EQ(statuses[0].source, 0);
  EXPECT_EQ(statuses[0].count, values.size());
  EXPECT_EQ(target.read(), values);
  try {
    context->recv(target.data, values.size(), DataType::f32, ringfuse::kAnySource, 0);
    ADD_FAILURE() << "an any-source receive on device memory was not refused";
  } catch (const ringfuse::Error& e) {
    EXPECT_EQ(e.kind(), ringfuse::ErrorKind::invalid_argument) << e.what();
    EXPECT_NE(std::string(e.what()).find("NCCL has no any-source receive"), std::string::npos)
        << e.what();
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
