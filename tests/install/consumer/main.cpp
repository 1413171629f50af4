#include <cstdio>
#include <vector>

#include <ringfuse/ringfuse.hpp>

int main() {
  auto ctx = ringfuse::init();
  std::vector<double> values(1000, 1.0);
  ctx->allreduce(values.data(), values.size(), ringfuse::DataType::f64, ringfuse::ReduceOp::sum);
  const bool ok = values.front() == ctx->size() && values.back() == ctx->size();
  std::printf("consumer rank %d/%d: %s\n", ctx->rank(), ctx->size(), ok ? "OK" : "WRONG");
  return ok ? 0 : 1;
}
