// A rank that all-reduces MIB MiB of floats over and over for SECONDS, so a test can
// kill one rank or cut a link in the middle of a collective. Prints "looping" once the first
// all-reduce is done and "finished N all-reduces" at the end; a failure is printed as
// ringfuse::Error::what() (the rank's own message) and ends the rank with status 3.
//   allreduce_loop MIB SECONDS
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <ringfuse/ringfuse.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: allreduce_loop MIB SECONDS\n");
    return 2;
  }
  const std::size_t floats = static_cast<std::size_t>(std::atoi(argv[1])) << 18;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(std::atoi(argv[2]));
  try {
    auto ctx = ringfuse::init();
    std::vector<float> gradient(floats, 1.0F);
    long done = 0;
    while (true) {
      // Every rank must make the same calls: they stop together, when any rank's time is up.
      float time_is_up = std::chrono::steady_clock::now() >= until ? 1.0F : 0.0F;
      ctx->allreduce(&time_is_up, 1, ringfuse::DataType::f32, ringfuse::ReduceOp::max);
      if (time_is_up > 0.0F) break;
      ctx->allreduce(gradient.data(), gradient.size(), ringfuse::DataType::f32,
                     ringfuse::ReduceOp::sum);
      if (++done == 1) {
        std::printf("rank %d: looping\n", ctx->rank());
        std::fflush(stdout);
      }
    }
    std::printf("rank %d: finished %ld all-reduces\n", ctx->rank(), done);
  } catch (const ringfuse::Error& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 3;
  }
  return 0;
}
