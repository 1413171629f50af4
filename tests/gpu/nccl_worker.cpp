// One rank of the multi-rank GPU tests: all-reduces a device buffer through the Context
// (RINGFUSE_BACKEND=nccl: NCCL; native: staged through pinned host memory), then small device
// tensors through the engine (fused on the device), and checks the results. Exits 0 on
// success, 1 on a wrong value, 2 on an error.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "ringfuse/ringfuse.hpp"

int main() {
  try {
    auto context = ringfuse::init();
    const int rank = context->rank();
    const int size = context->size();
    int devices = 0;
    cudaGetDeviceCount(&devices);
    cudaSetDevice(context->local_rank() % devices);
    const std::size_t count = 1 << 20;
    std::vector<float> host(count);
    for (std::size_t i = 0; i < count; ++i) host[i] = static_cast<float>(rank + 1) * (i % 7);
    float* device = nullptr;
    cudaMalloc(&device, count * sizeof(float));
    cudaMemcpy(device, host.data(), count * sizeof(float), cudaMemcpyHostToDevice);
    context->allreduce(device, count, ringfuse::DataType::f32, ringfuse::ReduceOp::sum);
    cudaMemcpy(host.data(), device, count * sizeof(float), cudaMemcpyDeviceToHost);
    const float ranks_sum = static_cast<float>(size * (size + 1) / 2);
    int wrong = 0;
    for (std::size_t i = 0; i < count; ++i) {
      if (host[i] != ranks_sum * (i % 7)) ++wrong;
    }
    cudaFree(device);
    const char* backend = std::getenv("RINGFUSE_BACKEND");
    std::cout << "rank " << rank << ": " << (backend != nullptr ? backend : "auto")
              << " allreduce of " << count << " floats, " << wrong << " wrong" << std::endl;

    // The engine on device tensors: small ones, fused into its device buffer; every other one
    // travels as fp16 (the values stay exact).
    auto& engine = context->engine();
    ringfuse::TensorView view;
    view.device = ringfuse::Device::cuda;
    cudaGetDevice(&view.device_index);
    std::vector<float*> tensors;
    std::vector<ringfuse::Work> works;
    for (int t = 0; t < 50; ++t) {
      const std::size_t n = static_cast<std::size_t>(t) * 7 + 1;
      const std::vector<float> values(n, static_cast<float>(rank + 1) * (t % 5));
      float* tensor = nullptr;
      cudaMalloc(&tensor, n * sizeof(float));
      cudaMemcpy(tensor, values.data(), n * sizeof(float), cudaMemcpyHostToDevice);
      tensors.push_back(tensor);
      view.data = tensor;
      view.shape = {static_cast<std::int64_t>(n)};
      ringfuse::AllreduceOptions options;
      if (t % 2 == 1) options.compression = ringfuse::Compression::fp16;
      works.push_back(engine.allreduce("grad." + std::to_string(t), view, options));
    }
    for (auto& work : works) work.wait(std::chrono::seconds(60));
    int engine_wrong = 0;
    for (int t = 0; t < 50; ++t) {
      std::vector<float> result(static_cast<std::size_t>(t) * 7 + 1);
      cudaMemcpy(result.data(), tensors[t], result.size() * sizeof(float), cudaMemcpyDeviceToHost);
      for (const float value : result) {
        if (value != ranks_sum * (t % 5)) ++engine_wrong;
      }
      cudaFree(tensors[t]);
    }
    std::cout << "rank " << rank << ": engine on device tensors, " << engine_wrong << " wrong"
              << std::endl;
    return wrong == 0 && engine_wrong == 0 ? 0 : 1;
  } catch (const std::exception& error) {
    std::cerr << "nccl_worker: " << error.what() << std::endl;
    return 2;
  }
}
