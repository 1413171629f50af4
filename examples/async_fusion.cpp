// Enqueues many small gradients through the asynchronous engine and waits for them: the engine
// negotiates them between ranks and fuses them into a few all-reduces.
//   ringfuse-run -np 4 -- build/examples/async_fusion
#include <cstdio>
#include <vector>

#include <ringfuse/ringfuse.hpp>

int main() {
  auto ctx = ringfuse::init();
  auto& engine = ctx->engine();
  std::vector<std::vector<float>> grads(200, std::vector<float>(1024, 1.0f));
  for (int step = 0; step < 5; ++step) {
    std::vector<ringfuse::Work> works;
    for (std::size_t i = 0; i < grads.size(); ++i) {
      std::fill(grads[i].begin(), grads[i].end(), static_cast<float>(ctx->rank() + 1));
      works.push_back(engine.allreduce("grad." + std::to_string(i),
                                       {grads[i].data(), ringfuse::DataType::f32, {1024}},
                                       {.op = ringfuse::ReduceOp::avg}));
    }
    for (auto& work : works) work.wait();
  }
  const float want = (ctx->size() + 1) / 2.0f;
  for (const auto& grad : grads) {
    for (float v : grad) {
      if (v != want) {
        std::printf("rank %d: wrong result %f (want %f)\n", ctx->rank(), v, want);
        return 1;
      }
    }
  }
  const auto stats = engine.stats();
  std::printf("rank %d: ok; %llu tensors in %llu collectives, %llu cache hits\n", ctx->rank(),
              static_cast<unsigned long long>(stats.cache_hits + stats.cache_misses),
              static_cast<unsigned long long>(stats.collectives),
              static_cast<unsigned long long>(stats.cache_hits));
  return 0;
}
