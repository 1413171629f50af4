// One rank of the multi-rank GPU tests: all-reduces a device buffer through the Context
// (RINGFUSE_BACKEND=nccl: NCCL; native: staged through pinned host memory) and checks the
// result. Exits 0 on success, 1 on a wrong value, 2 on an error.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
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
    return wrong == 0 ? 0 : 1;
  } catch (const std::exception& error) {
    std::cerr << "nccl_worker: " << error.what() << std::endl;
    return 2;
  }
}
