// A rank for the /metrics progress test: STEPS steps of one blocking all-reduce and one engine
// all-reduce of 1 MiB each, reporting each step, then it waits (at most 30 s) for RELEASE_FILE
// to appear so the test can scrape the launcher while the ranks are still alive.
//   progress_rank STEPS RELEASE_FILE
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <ringfuse/ringfuse.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: progress_rank STEPS RELEASE_FILE\n");
    return 2;
  }
  const int steps = std::atoi(argv[1]);
  const std::filesystem::path release = argv[2];
  try {
    auto ctx = ringfuse::init();
    std::vector<float> gradient(std::size_t{1} << 18, 1.0F);  // 1 MiB
    for (int step = 1; step <= steps; ++step) {
      ctx->allreduce(gradient.data(), gradient.size(), ringfuse::DataType::f32,
                     ringfuse::ReduceOp::sum);
      ctx->engine()
          .allreduce("gradient", {gradient.data(), ringfuse::DataType::f32,
                                  {static_cast<std::int64_t>(gradient.size())}})
          .wait(std::chrono::seconds(30));
      ctx->report_step(static_cast<std::uint64_t>(step));
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!std::filesystem::exists(release)) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::fprintf(stderr, "rank %d: %s never appeared\n", ctx->rank(), release.c_str());
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ctx->barrier();
  } catch (const ringfuse::Error& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 3;
  }
  return 0;
}
