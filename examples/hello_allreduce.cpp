// The smallest Ringfuse program: every rank contributes (rank + 1) in each element, and
// checks that the sum arrived. Run it with:  ringfuse-run -np 4 ./hello_allreduce
#include <cstdio>
#include <vector>

#include <ringfuse/ringfuse.hpp>

int main() {
  try {
    // Reads the world from the variables ringfuse-run (or torchrun) set, and connects.
    auto ctx = ringfuse::init();
    const int rank = ctx->rank();
    const int size = ctx->size();

    std::vector<float> gradient(1 << 20, static_cast<float>(rank + 1));
    ctx->allreduce(gradient.data(), gradient.size(), ringfuse::DataType::f32,
                   ringfuse::ReduceOp::sum);

    const float expected = static_cast<float>(size * (size + 1) / 2);  // 1 + 2 + ... + size
    std::size_t wrong = 0;
    for (float value : gradient) wrong += value != expected;
    std::printf("rank %d of %d: allreduce of %zu floats = %.1f (expected %.1f): %s\n", rank, size,
                gradient.size(), gradient[0], expected, wrong == 0 ? "OK" : "WRONG");
    return wrong == 0 ? 0 : 1;
  } catch (const ringfuse::Error& e) {
    std::fprintf(stderr, "hello_allreduce: %s\n", e.what());
    return 1;
  }
}
