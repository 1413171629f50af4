// Google Benchmark over the reduction kernels (reduce/reduce.hpp) next to a memcpy of the same
// bytes: the kernels should run at memory speed, so "GB/s of buffer" is comparable with memcpy.
// bytes_per_second counts the destination buffer's bytes once per call (a kernel reads two
// buffers and writes one, as does memcpy plus one more read) — read the ratio, not the absolute.
// `of_memcpy` is that ratio, from memcpys timed inside the same iterations.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "reduce/reduce.hpp"
#include "ringfuse/types.hpp"

namespace {

using ringfuse::DataType;
using ringfuse::ReduceOp;

struct Inputs {
  std::vector<std::uint8_t> dst;
  std::vector<std::uint8_t> src;
  explicit Inputs(std::size_t bytes) : dst(bytes, 1), src(bytes, 1) {}
};

// Each iteration times a batch of reductions, then a batch of memcpys of the same bytes, so the
// `of_memcpy` counter (memcpy time / reduction time) compares the two under the same machine
// conditions: on a shared machine, separate benchmarks minutes apart drift by 30% and more.
void BM_reduce_into(benchmark::State& state, DataType type, ReduceOp op) {
  using Clock = std::chrono::steady_clock;
  const auto bytes = static_cast<std::size_t>(state.range(0));
  Inputs in(bytes);
  std::vector<std::uint8_t> copy(bytes, 1);
  const std::size_t count = bytes / ringfuse::element_size(type);
  // ~1 MiB per batch: long enough that reading the clock costs under 1% at 4 KiB.
  const std::size_t batch = std::max<std::size_t>(1, (std::size_t{1} << 20) / bytes);
  Clock::duration reducing{};
  Clock::duration copying{};
  for (auto _ : state) {
    const auto start = Clock::now();
    for (std::size_t i = 0; i < batch; ++i) {
      ringfuse::reduce::reduce_into(in.dst.data(), in.src.data(), count, type, op);
      benchmark::DoNotOptimize(in.dst.data());
      benchmark::ClobberMemory();
    }
    const auto reduced = Clock::now();
    for (std::size_t i = 0; i < batch; ++i) {
      std::memcpy(copy.data(), in.src.data(), bytes);
      benchmark::DoNotOptimize(copy.data());
      benchmark::ClobberMemory();
    }
    const auto copied = Clock::now();
    reducing += reduced - start;
    copying += copied - reduced;
    state.SetIterationTime(std::chrono::duration<double>(reduced - start).count());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * batch * bytes));
  state.counters["of_memcpy"] =
      std::chrono::duration<double>(copying).count() / std::chrono::duration<double>(reducing).count();
}

void BM_divide(benchmark::State& state, DataType type) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  // Zeros divided by 3: a divisor of 1 is skipped by the library, and repeatedly dividing
  // non-zero floats would reach denormals and measure the slow path instead.
  std::vector<std::uint8_t> dst(bytes, 0);
  const std::size_t count = bytes / ringfuse::element_size(type);
  for (auto _ : state) {
    ringfuse::reduce::divide(dst.data(), count, type, 3);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}

void BM_memcpy(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  Inputs in(bytes);
  for (auto _ : state) {
    std::memcpy(in.dst.data(), in.src.data(), bytes);
    benchmark::DoNotOptimize(in.dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}

// 4 KiB (L1) .. 64 MiB (DRAM), in steps of 8x.
void sizes(benchmark::internal::Benchmark* b) { b->RangeMultiplier(8)->Range(4 << 10, 64 << 20); }

BENCHMARK(BM_memcpy)->Apply(sizes);
void paired_sizes(benchmark::internal::Benchmark* b) { sizes(b); b->UseManualTime(); }

BENCHMARK_CAPTURE(BM_reduce_into, f32_sum, DataType::f32, ReduceOp::sum)->Apply(paired_sizes);
BENCHMARK_CAPTURE(BM_reduce_into, f32_max, DataType::f32, ReduceOp::max)->Apply(paired_sizes);
BENCHMARK_CAPTURE(BM_reduce_into, f64_sum, DataType::f64, ReduceOp::sum)->Apply(paired_sizes);
BENCHMARK_CAPTURE(BM_reduce_into, f16_sum, DataType::f16, ReduceOp::sum)->Apply(paired_sizes);
BENCHMARK_CAPTURE(BM_reduce_into, bf16_sum, DataType::bf16, ReduceOp::sum)->Apply(paired_sizes);
BENCHMARK_CAPTURE(BM_reduce_into, i32_sum, DataType::i32, ReduceOp::sum)->Apply(paired_sizes);
BENCHMARK_CAPTURE(BM_reduce_into, i8_prod, DataType::i8, ReduceOp::prod)->Apply(paired_sizes);
BENCHMARK_CAPTURE(BM_divide, f32, DataType::f32)->Apply(sizes);
BENCHMARK_CAPTURE(BM_divide, f16, DataType::f16)->Apply(sizes);
BENCHMARK_CAPTURE(BM_divide, i32, DataType::i32)->Apply(sizes);

}  // namespace

BENCHMARK_MAIN();
