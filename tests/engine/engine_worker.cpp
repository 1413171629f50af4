// One rank of the engine's multi-process tests: `engine_worker MODE`, launched by
// engine_test with RINGFUSE_* set. Prints "ok" and exits 0 when every check passed; prints
// what went wrong and exits 3 otherwise.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <ringfuse/ringfuse.hpp>

#include "core/combine.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::DataType;
using ringfuse::ReduceOp;
using ringfuse::TensorView;

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void fail(const std::string& what) {
  std::printf("FAILED: %s\n", what.c_str());
  std::fflush(stdout);
  std::_Exit(3);
}

double value_at(int rank, std::size_t index) { return static_cast<double>(rank + 1 + index % 5); }

double expected_reduce(int size, std::size_t index, ReduceOp op) {
  double acc = value_at(0, index);
  for (int r = 1; r < size; ++r) {
    acc = ringfuse::core::combine(op, acc, value_at(r, index));
  }
  return op == ReduceOp::avg ? acc / size : acc;
}

// A typed host buffer filled with value_at(rank, i).
struct Buffer {
  DataType type;
  std::vector<double> f64;
  std::vector<float> f32;
  std::vector<std::int32_t> i32;
  std::vector<std::uint16_t> f16;

  Buffer(DataType t, std::size_t n, int rank) : type(t) {
    for (std::size_t i = 0; i < n; ++i) {
      const double v = value_at(rank, i);
      if (t == DataType::f64) f64.push_back(v);
      if (t == DataType::f32) f32.push_back(static_cast<float>(v));
      if (t == DataType::i32) i32.push_back(static_cast<std::int32_t>(v));
      if (t == DataType::f16) f16.push_back(to_half(static_cast<float>(v)));
    }
  }
  static std::uint16_t to_half(float v) {  // exact for small integers
    if (v == 0) return 0;
    int e = 0;
    const float m = std::frexp(v, &e);  // v = m * 2^e, m in [0.5,1)
    const auto mant = static_cast<std::uint16_t>((m * 2 - 1) * 1024);
    return static_cast<std::uint16_t>(((e - 1 + 15) << 10) | mant);
  }
  static double from_half(std::uint16_t h) {
    const int e = (h >> 10) & 31;
    const int m = h & 1023;
    if (e == 0) return m / 1024.0 / 16384.0;
    return std::ldexp(1.0 + m / 1024.0, e - 15);
  }
  void* data() {
    if (type == DataType::f64) return f64.data();
    if (type == DataType::f32) return f32.data();
    if (type == DataType::i32) return i32.data();
    return f16.data();
  }
  std::size_t size() const {
    return std::max({f64.size(), f32.size(), i32.size(), f16.size()});
  }
  double at(std::size_t i) const {
    if (type == DataType::f64) return f64[i];
    if (type == DataType::f32) return f32[i];
    if (type == DataType::i32) return i32[i];
    return from_half(f16[i]);
  }
};

struct Case {
  std::string name;
  DataType type;
  ReduceOp op;
  std::size_t count;
  ringfuse::AllreduceOptions options;
};

std::vector<Case> mixed_cases() {
  const DataType types[] = {DataType::f32, DataType::f64, DataType::i32, DataType::f16};
  const ReduceOp ops[] = {ReduceOp::sum, ReduceOp::avg, ReduceOp::max, ReduceOp::min};
  const std::size_t counts[] = {1, 1000, 4099, 30000};
  std::vector<Case> cases;
  for (int i = 0; i < 24; ++i) {
    Case c;
    c.type = types[i % 4];
    c.op = ops[(i / 4) % 4];
    c.count = counts[(i / 2) % 4];
    if (c.type == DataType::f16 && c.op == ReduceOp::avg) c.op = ReduceOp::sum;
    c.options.op = c.op;
    c.name = "grad." + std::to_string(i);
    cases.push_back(c);
  }
  Case scaled{"scaled", DataType::f32, ReduceOp::avg, 5000, {}};
  scaled.options = {ReduceOp::avg, 0.5, 4.0, ringfuse::Compression::none};
  cases.push_back(scaled);
  Case compressed{"compressed", DataType::f32, ReduceOp::sum, 7000, {}};
  compressed.options.compression = ringfuse::Compression::fp16;
  cases.push_back(compressed);
  return cases;
}

// Fused groups of 300 KiB to 1.2 MiB, odd counts: large enough for the shared window
// (RINGFUSE_FUSION_SHM=1 takes fused all-reduces of 256 KiB and more), each tensor below
// the 1 MiB from which the engine runs a tensor in place.
std::vector<Case> large_cases() {
  std::vector<Case> cases;
  const std::size_t counts[] = {30011, 50021, 70001};
  for (const DataType type : {DataType::f32, DataType::f64, DataType::i32, DataType::f16}) {
    for (const ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max, ReduceOp::min}) {
      if (type == DataType::f16 && op == ReduceOp::avg) continue;
      for (const std::size_t count : counts) {
        Case c{"large." + std::to_string(cases.size()), type, op, count, {}};
        c.options.op = op;
        cases.push_back(c);
      }
    }
  }
  for (int i = 0; i < 3; ++i) {
    Case scaled{"scaled." + std::to_string(i), DataType::f32, ReduceOp::avg, 40003, {}};
    scaled.options = {ReduceOp::avg, 0.5, 4.0, ringfuse::Compression::none};
    cases.push_back(scaled);
    Case compressed{"compressed." + std::to_string(i), DataType::f32, ReduceOp::sum, 50001, {}};
    compressed.options.compression = ringfuse::Compression::fp16;
    cases.push_back(compressed);
  }
  return cases;
}

void check_close(const std::string& what, double got, double want) {
  if (std::abs(got - want) > 1e-3 * std::max(1.0, std::abs(want))) {
    fail(what + ": got " + std::to_string(got) + ", want " + std::to_string(want));
  }
}

void check_cases(const std::vector<Case>& cases, const std::vector<Buffer>& buffers, int size) {
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto check = [&](std::size_t j) {
      double want = expected_reduce(size, j, c.op);
      if (c.type == DataType::i32 && c.op == ReduceOp::avg) want = std::trunc(want);
      if (c.name.starts_with("scaled")) want = expected_reduce(size, j, ReduceOp::avg) * 0.5 * 4.0;
      check_close(c.name + "[" + std::to_string(j) + "]", buffers[i].at(j), want);
    };
    for (std::size_t j = 0; j < c.count; j += 1 + c.count / 97) check(j);
    check(c.count - 1);  // blocks split at odd places
  }
}

void print_stats(const ringfuse::EngineStats& stats) {
  std::printf("stats: hits=%llu misses=%llu evictions=%llu fused=%llu fast_cycles=%llu\n",
              static_cast<unsigned long long>(stats.cache_hits),
              static_cast<unsigned long long>(stats.cache_misses),
              static_cast<unsigned long long>(stats.cache_evictions),
              static_cast<unsigned long long>(stats.fused_tensors),
              static_cast<unsigned long long>(stats.fast_path_cycles));
}

void mode_fusion_large(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const auto cases = large_cases();
  for (int iteration = 0; iteration < 3; ++iteration) {
    std::vector<Buffer> buffers;
    std::vector<ringfuse::Work> works;
    for (const auto& c : cases) buffers.emplace_back(c.type, c.count, ctx.rank());
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const auto& c = cases[i];
      works.push_back(engine.allreduce(
          c.name, TensorView{buffers[i].data(), c.type, {static_cast<std::int64_t>(c.count)}},
          c.options));
    }
    engine.flush();
    for (auto& work : works) work.wait(60s);
    check_cases(cases, buffers, ctx.size());
  }
  print_stats(engine.stats());
}

// The all-reduces of `cases`, a broadcast from the last rank, and an allgather where rank r
// contributed (r + 1) * 3 elements of value r: what mode_fusion and mode_name_order check.
void check_mixed(const std::vector<Case>& cases, const std::vector<Buffer>& buffers,
                 const std::vector<float>& bcast, const std::vector<std::int32_t>& gather_out,
                 int size) {
  check_cases(cases, buffers, size);
  for (float v : bcast) check_close("bcast", v, size - 1);
  std::size_t pos = 0;
  for (int r = 0; r < size; ++r) {
    for (int k = 0; k < (r + 1) * 3; ++k) check_close("gather", gather_out.at(pos++), r);
  }
  if (pos != gather_out.size()) fail("gather size");
}

void mode_fusion(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const int rank = ctx.rank();
  const int size = ctx.size();
  const auto cases = mixed_cases();
  for (int iteration = 0; iteration < 3; ++iteration) {
    std::vector<Buffer> buffers;
    std::vector<ringfuse::Work> works;
    for (const auto& c : cases) buffers.emplace_back(c.type, c.count, rank);
    // Non-all-reduce collectives in the middle of the stream.
    std::vector<float> bcast(333, static_cast<float>(rank));
    std::vector<std::int32_t> gather_in(static_cast<std::size_t>(rank + 1) * 3, rank);
    std::vector<std::int32_t> gather_out;
    std::vector<float> a2a_in(static_cast<std::size_t>(size) * 4), a2a_out(a2a_in.size());
    for (std::size_t i = 0; i < a2a_in.size(); ++i) a2a_in[i] = static_cast<float>(rank * 1000 + i);
    std::vector<double> rs_in(static_cast<std::size_t>(size) * 10, rank + 1.0), rs_out(10);
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const auto& c = cases[i];
      works.push_back(engine.allreduce(
          c.name, TensorView{buffers[i].data(), c.type, {static_cast<std::int64_t>(c.count)}},
          c.options));
      if (i == 5) works.push_back(engine.broadcast("bcast", {bcast.data(), DataType::f32, {333}}, size - 1));
      if (i == 9) {
        works.push_back(engine.allgather(
            "gather", {gather_in.data(), DataType::i32, {rank + 1, 3}},
            [&](const std::vector<std::int64_t>& shape) {
              gather_out.resize(static_cast<std::size_t>(shape[0] * shape[1]));
              return static_cast<void*>(gather_out.data());
            }));
      }
      if (i == 13) {
        works.push_back(engine.alltoall("a2a", {a2a_in.data(), DataType::f32, {size * 4}},
                                        {a2a_out.data(), DataType::f32, {size * 4}}));
      }
      if (i == 17) {
        works.push_back(engine.reducescatter("rs", {rs_in.data(), DataType::f64, {size * 10}},
                                             {rs_out.data(), DataType::f64, {10}}));
        works.push_back(engine.barrier());
      }
    }
    std::vector<float> g1(100, 1.0f), g2(50, 2.0f);
    works.push_back(engine.grouped_allreduce(
        "group", {{g1.data(), DataType::f32, {100}}, {g2.data(), DataType::f32, {50}}}));
    engine.flush();
    for (auto& work : works) work.wait(60s);
    check_mixed(cases, buffers, bcast, gather_out, size);
    for (int r = 0; r < size; ++r) {
      for (int k = 0; k < 4; ++k) {
        check_close("a2a", a2a_out[static_cast<std::size_t>(r * 4 + k)], r * 1000 + rank * 4 + k);
      }
    }
    for (double v : rs_out) check_close("reducescatter", v, size * (size + 1) / 2.0);
    for (float v : g1) check_close("group.0", v, size);
    for (float v : g2) check_close("group.1", v, 2.0 * size);
  }
  print_stats(engine.stats());
}

void mode_mismatch(ringfuse::Context& ctx, const std::string& kind) {
  auto& engine = ctx.engine();
  const int rank = ctx.rank();
  const bool odd = rank == ctx.size() - 2;
  std::vector<float> warm(16, 1.0f);
  engine.allreduce("warmup", {warm.data(), DataType::f32, {4, 4}}).wait(30s);
  std::vector<double> data(1024 * 512, 1.0);
  TensorView view{data.data(), DataType::f32, {1024, 512}};
  ringfuse::AllreduceOptions options;
  std::string name = "layer.weight";
  if (odd && kind == "shape") view.shape = {1024, 511};
  if (odd && kind == "dtype") view.dtype = DataType::f64;
  if (odd && kind == "op") options.op = ReduceOp::max;
  if (odd && kind == "name") name = "layer.bias";
  const long long enqueued = now_ms();
  auto work = engine.allreduce(name, view, options);
  try {
    work.wait(30s);
    fail("the mismatched all-reduce succeeded");
  } catch (const ringfuse::Error& e) {
    std::printf("ENQUEUED_MS %lld\nERROR_MS %lld\nMISMATCH: %s\n", enqueued, now_ms(), e.what());
  }
  // The engine stays usable after a mismatch.
  std::vector<float> after(8, 2.0f);
  engine.allreduce("after", {after.data(), DataType::f32, {8}}).wait(30s);
  for (float v : after) check_close("after", v, 2.0 * ctx.size());
}

void mode_stall(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  std::vector<float> warm(16, 1.0f);
  engine.allreduce("warmup", {warm.data(), DataType::f32, {16}}).wait(30s);
  std::printf("ready\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(1s);  // the test stops the victim meanwhile
  std::vector<float> grad(1000, 1.0f);
  try {
    engine.allreduce("grad.after.stall", {grad.data(), DataType::f32, {1000}}).wait(60s);
    fail("the all-reduce with a stopped rank succeeded");
  } catch (const ringfuse::Error& e) {
    std::printf("STALL: %s\n", e.what());
  }
}

// The cache-index round under skew: the last rank submits each step's second half late, so
// the others hold tensors it has not sent yet and the coordinator releases only what every
// rank agrees on, cycle after cycle.
void mode_skew(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const int rank = ctx.rank();
  const int size = ctx.size();
  constexpr int kTensors = 40;
  constexpr int kSteps = 6;
  for (int step = 0; step < kSteps; ++step) {
    std::vector<std::vector<float>> grads;
    for (int t = 0; t < kTensors; ++t) {
      grads.emplace_back(static_cast<std::size_t>(100 + 37 * t), static_cast<float>(rank + t));
    }
    std::vector<ringfuse::Work> works;
    for (int t = 0; t < kTensors; ++t) {
      if (rank == size - 1 && t == kTensors / 2) {
        // Only once its first half is through: the others hold tensors it has not sent.
        engine.flush();
        for (auto& work : works) work.wait(60s);
      }
      works.push_back(engine.allreduce(
          "skew." + std::to_string(t),
          {grads[t].data(), DataType::f32, {static_cast<std::int64_t>(grads[t].size())}}));
    }
    engine.flush();
    for (auto& work : works) work.wait(60s);
    for (int t = 0; t < kTensors; ++t) {
      const double want = size * (size - 1) / 2.0 + static_cast<double>(size) * t;
      for (float v : grads[t]) check_close("skew." + std::to_string(t), v, want);
    }
  }
  const auto stats = engine.stats();
  std::printf("stats: hits=%llu misses=%llu fast_cycles=%llu cycles=%llu\n",
              static_cast<unsigned long long>(stats.cache_hits),
              static_cast<unsigned long long>(stats.cache_misses),
              static_cast<unsigned long long>(stats.fast_path_cycles),
              static_cast<unsigned long long>(stats.cycles));
}

// All-reduces 'grad.a' (64 floats) and 'grad.b' (32) twice, collectives #1-#4, so that both
// are in every rank's response cache and go the cache-index way from then on.
void warm_up_cached_pair(ringfuse::Engine& engine, std::vector<float>& a, std::vector<float>& b) {
  for (int warm = 0; warm < 2; ++warm) {
    auto wa = engine.allreduce("grad.a", {a.data(), DataType::f32, {64}});
    auto wb = engine.allreduce("grad.b", {b.data(), DataType::f32, {32}});
    wa.wait(30s);
    wb.wait(30s);
  }
}

// Two tensors every rank has in its cache, submitted in the opposite order by one rank: the
// cache-index round sees two indices at one sequence number and hands over to the full way,
// which names the mismatch.
void mode_mismatch_order(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const bool odd = ctx.rank() == ctx.size() - 2;
  std::vector<float> a(64, 1.0f), b(32, 1.0f);
  warm_up_cached_pair(engine, a, b);
  const long long enqueued = now_ms();
  std::vector<ringfuse::Work> works;
  if (odd) works.push_back(engine.allreduce("grad.b", {b.data(), DataType::f32, {32}}));
  works.push_back(engine.allreduce("grad.a", {a.data(), DataType::f32, {64}}));
  if (!odd) works.push_back(engine.allreduce("grad.b", {b.data(), DataType::f32, {32}}));
  engine.flush();
  try {
    works.front().wait(30s);
    fail("the swapped all-reduce succeeded");
  } catch (const ringfuse::Error& e) {
    std::printf("ENQUEUED_MS %lld\nERROR_MS %lld\nMISMATCH: %s\n", enqueued, now_ms(), e.what());
  }
  try {
    works.back().wait(30s);
    fail("the second swapped all-reduce succeeded");
  } catch (const ringfuse::Error&) {
  }
  std::vector<float> after(8, 2.0f);
  engine.allreduce("after", {after.data(), DataType::f32, {8}}).wait(30s);
  for (float v : after) check_close("after", v, 2.0 * ctx.size());
}

// Rank 1 skips a tensor the others submit, after both were cached: the stall inspector names
// the rank and the tensor, and the job aborts after RINGFUSE_STALL_ABORT_S.
void mode_stall_missing(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  std::vector<float> a(64, 1.0f), b(32, 1.0f);
  warm_up_cached_pair(engine, a, b);
  const long long enqueued = now_ms();
  std::printf("ENQUEUED_MS %lld\n", enqueued);
  engine.allreduce("grad.a", {a.data(), DataType::f32, {64}}).wait(30s);
  if (ctx.rank() == 1) {
    std::this_thread::sleep_for(6s);  // the others abort meanwhile
    try {
      engine.allreduce("late", {a.data(), DataType::f32, {64}}).wait(30s);
      fail("the engine still ran after the stall abort");
    } catch (const ringfuse::Error& e) {
      std::printf("STALL: %s\n", e.what());
    }
    return;
  }
  try {
    engine.allreduce("grad.b", {b.data(), DataType::f32, {32}}).wait(60s);
    fail("the all-reduce that rank 1 never submitted succeeded");
  } catch (const ringfuse::Error& e) {
    std::printf("ERROR_MS %lld\nSTALL: %s\n", now_ms(), e.what());
  }
}

void mode_join(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const int rank = ctx.rank();
  const int size = ctx.size();
  const int batches = 2 * (rank + 1);
  for (int b = 0; b < batches; ++b) {
    std::vector<float> grad(1000, 1.0f);
    std::vector<std::int32_t> top(10, rank);
    engine.allreduce("grad", {grad.data(), DataType::f32, {1000}}).wait(30s);
    auto w = engine.allreduce("top", {top.data(), DataType::i32, {10}}, {ReduceOp::max});
    w.wait(30s);
    int active = 0;
    for (int r = 0; r < size; ++r) active += 2 * (r + 1) > b ? 1 : 0;
    for (float v : grad) check_close("grad batch " + std::to_string(b), v, active);
    for (auto v : top) check_close("max", v, size - 1);
  }
  auto joined = engine.join();
  joined.wait(30s);
  std::printf("last joined: %d\n", joined.last_joined_rank());
  std::vector<float> after(8, 1.0f);
  engine.allreduce("after.join", {after.data(), DataType::f32, {8}}).wait(30s);
  for (float v : after) check_close("after join", v, size);
}

// The engine's average and the blocking call's give the same bits: 7 ranks of 6 sum to 42,
// whose average is 6, not 6.0000005 (1/7 rounded to f32 and multiplied in), alone and fused.
void mode_avg_bits(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  std::vector<float> blocking(5, 6.0f);
  ctx.allreduce(blocking.data(), blocking.size(), DataType::f32, ReduceOp::avg);
  std::vector<float> alone(5, 6.0f);
  engine.allreduce("alone", {alone.data(), DataType::f32, {5}}, {ReduceOp::avg}).wait(30s);
  std::vector<std::vector<float>> fused(4, std::vector<float>(5, 6.0f));
  std::vector<ringfuse::Work> works;
  for (std::size_t i = 0; i < fused.size(); ++i) {
    works.push_back(engine.allreduce("fused." + std::to_string(i),
                                     {fused[i].data(), DataType::f32, {5}}, {ReduceOp::avg}));
  }
  for (auto& work : works) work.wait(30s);
  const auto same_bits = [&](const std::string& what, float got) {
    if (std::memcmp(&got, &blocking[0], sizeof(float)) != 0) {
      char text[128];
      std::snprintf(text, sizeof(text), "engine average %.9g, but the blocking call gave %.9g",
                    static_cast<double>(got), static_cast<double>(blocking[0]));
      fail(what + ": " + text);
    }
  };
  for (float v : alone) same_bits("alone", v);
  for (const auto& tensor : fused) {
    for (float v : tensor) same_bits("fused", v);
  }
  std::printf("engine avg of a sum of %d over %d ranks: %.9g\n", 6 * ctx.size(), ctx.size(),
              static_cast<double>(alone[0]));
}

// A few fused all-reduces, for the timeline test of what ran.
void mode_plain(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  std::vector<std::vector<float>> tensors(3, std::vector<float>(1000, 1.0f));
  std::vector<ringfuse::Work> works;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    works.push_back(engine.allreduce("plain." + std::to_string(i),
                                     {tensors[i].data(), DataType::f32, {1000}}));
  }
  for (auto& work : works) work.wait(30s);
  for (const auto& tensor : tensors) {
    for (float v : tensor) check_close("plain", v, ctx.size());
  }
  std::printf("plain: %zu all-reduces checked\n", tensors.size());
}

// One tensor enqueued twice (under two names) in one fused group, beside a larger one, so
// that both of its places fall in the same half of the group: the engine must reduce it once,
// as the fusion buffer does, not once per place when it runs the group in place.
void mode_aliased(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const float mine = static_cast<float>(ctx.rank() + 1);
  std::vector<float> twice(1000, mine);
  std::vector<float> large(8000, mine);
  for (int step = 0; step < 3; ++step) {
    std::fill(twice.begin(), twice.end(), mine);
    std::fill(large.begin(), large.end(), mine);
    std::vector<ringfuse::Work> works;
    // One group on every load: a cycle that came due between the enqueues (this thread
    // descheduled, the cycle timer) made two all-reduces of one tensor, which sum it twice.
    engine.hold();
    works.push_back(engine.allreduce("twice.a", {twice.data(), DataType::f32, {1000}}));
    works.push_back(engine.allreduce("twice.b", {twice.data(), DataType::f32, {1000}}));
    works.push_back(engine.allreduce("large", {large.data(), DataType::f32, {8000}}));
    engine.flush();
    for (auto& work : works) work.wait(30s);
    const double want = ctx.size() * (ctx.size() + 1) / 2.0;
    for (float v : twice) check_close("the tensor enqueued twice", v, want);
    for (float v : large) check_close("the tensor beside it", v, want);
  }
  std::printf("aliased: checked\n");
}

// Only rank 0 enqueues one tensor under two names; its peers give two tensors. Rank 0 cannot
// reduce that group where it lies (one memory, two places) and packs it into the fusion
// buffer: it must run the algorithm its peers run over their tensors in place, although the
// group is small (8 KB, where the automatic choice would be another).
void mode_aliased_on_one_rank(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const float mine = static_cast<float>(ctx.rank() + 1);
  std::vector<float> first(1000), second(1000);
  for (int step = 0; step < 3; ++step) {
    std::fill(first.begin(), first.end(), mine);
    std::fill(second.begin(), second.end(), mine);
    float* b = ctx.rank() == 0 ? first.data() : second.data();
    std::vector<ringfuse::Work> works;
    engine.hold();  // one group, as in mode_aliased
    works.push_back(engine.allreduce("one-rank.a", {first.data(), DataType::f32, {1000}}));
    works.push_back(engine.allreduce("one-rank.b", {b, DataType::f32, {1000}}));
    engine.flush();
    for (auto& work : works) work.wait(30s);
    const double want = ctx.size() * (ctx.size() + 1) / 2.0;
    for (float v : first) check_close("one-rank.a", v, want);
    if (ctx.rank() != 0) {
      for (float v : second) check_close("one-rank.b", v, want);
    }
  }
  std::printf("aliased on one rank: checked\n");
}

// Issue 18: steps of large tensors (at least RINGFUSE_FUSION_INPLACE_MIN, 1 MiB) among small
// ones, of odd element counts (blocks split unevenly at N = 3 and 4); f32 sums of small
// integers, so every sum is exact and checked element by element. Prints the engine's
// collectives over the steps, read as soon as the last wait() returns, which engine_test
// compares with the number of tensors.
void mode_large_step(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const int rank = ctx.rank();
  const int size = ctx.size();
  // 1.2 MB, 4 KB, 2.1 MB, 308 B, 1.05 MB, 2.8 MB, 20 B: four large, three small.
  const std::vector<std::size_t> counts = {300'001, 1'000, 524'287, 77, 262'145, 700'003, 5};
  constexpr int kSteps = 5;
  const auto input = [](int r, std::size_t tensor, std::size_t j, int step) {
    return static_cast<float>((r + 1) * static_cast<int>(tensor + 1) + static_cast<int>(j % 7) +
                              step);
  };
  std::vector<std::vector<float>> tensors(counts.size());
  const auto before = engine.stats();
  for (int step = 0; step < kSteps; ++step) {
    std::vector<ringfuse::Work> works;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      tensors[i].resize(counts[i]);
      for (std::size_t j = 0; j < counts[i]; ++j) tensors[i][j] = input(rank, i, j, step);
      works.push_back(engine.allreduce("large-step." + std::to_string(i),
                                       {tensors[i].data(), DataType::f32,
                                        {static_cast<std::int64_t>(counts[i])}}));
    }
    engine.flush();
    for (auto& work : works) work.wait(60s);
    for (std::size_t i = 0; i < counts.size(); ++i) {
      for (std::size_t j = 0; j < counts[i]; ++j) {
        float want = 0;
        for (int r = 0; r < size; ++r) want += input(r, i, j, step);
        if (tensors[i][j] != want) {
          fail("step " + std::to_string(step) + ": large-step." + std::to_string(i) + "[" +
               std::to_string(j) + "] = " + std::to_string(tensors[i][j]) + ", want " +
               std::to_string(want));
        }
      }
    }
  }
  const auto after = engine.stats();
  std::printf("large step: tensors=%zu steps=%d collectives=%llu fused=%llu\n", counts.size(),
              kSteps, static_cast<unsigned long long>(after.collectives - before.collectives),
              static_cast<unsigned long long>(after.fused_tensors - before.fused_tensors));
}

// The stats a caller reads as soon as wait() returns include the collective that completed
// the Work: 500 one-tensor steps, each checked at once (the executor counted a collective
// after completing its Works, and a waiter woken on another core read one short).
void mode_count_after_wait(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  float value = 1.0f;
  const auto before = engine.stats().collectives;
  for (unsigned long long step = 1; step <= 500; ++step) {
    engine.allreduce("counted", {&value, DataType::f32, {1}}).wait(30s);
    const auto counted = engine.stats().collectives - before;
    if (counted < step) {
      fail("after step " + std::to_string(step) + "'s wait() the engine had counted " +
           std::to_string(counted) + " collectives");
    }
  }
  std::printf("count after wait: checked\n");
}

// An integer case for mode_int_scale: x(r, i) small and of both signs; what the engine must
// give is Horovod's rule, computed here in exact integer arithmetic where it can be.
struct IntScaleCase {
  std::string name;
  DataType type;
  ReduceOp op;
  std::size_t count;
  double prescale;
  double postscale;
};

std::int64_t int_input(int rank, std::size_t index, DataType type) {
  const auto v = static_cast<std::int64_t>((static_cast<std::size_t>(rank) * 7 + index * 3) % 19);
  return type == DataType::u8 ? v : v - 9;
}

// trunc(double(x) * factor): what the engine does before the reduction (prescale) and after it
// (postscale). Every value here is small, so the product is exact in a double.
std::int64_t scaled(std::int64_t x, double factor) {
  return static_cast<std::int64_t>(std::trunc(static_cast<double>(x) * factor));
}

std::int64_t int_expected(const IntScaleCase& c, int size, std::size_t index) {
  std::int64_t acc = scaled(int_input(0, index, c.type), c.prescale);
  for (int r = 1; r < size; ++r) {
    acc = ringfuse::core::combine(c.op, acc, scaled(int_input(r, index, c.type), c.prescale));
  }
  if (c.op == ReduceOp::avg) acc /= size;  // divided first, toward zero, then scaled
  return scaled(acc, c.postscale);
}

// A host buffer of any integer type, read and written as int64.
struct IntBuffer {
  DataType type;
  std::vector<std::byte> bytes;
  IntBuffer(DataType t, std::size_t n) : type(t), bytes(n * ringfuse::element_size(t)) {}
  void* data() { return bytes.data(); }
  template <class T>
  T* as() { return reinterpret_cast<T*>(bytes.data()); }
  void set(std::size_t i, std::int64_t v) {
    switch (type) {
      case DataType::i8: as<std::int8_t>()[i] = static_cast<std::int8_t>(v); break;
      case DataType::u8: as<std::uint8_t>()[i] = static_cast<std::uint8_t>(v); break;
      case DataType::i16: as<std::int16_t>()[i] = static_cast<std::int16_t>(v); break;
      case DataType::i32: as<std::int32_t>()[i] = static_cast<std::int32_t>(v); break;
      case DataType::i64: as<std::int64_t>()[i] = v; break;
      default: fail("IntBuffer: not an integer type");
    }
  }
  std::int64_t get(std::size_t i) {
    switch (type) {
      case DataType::i8: return as<std::int8_t>()[i];
      case DataType::u8: return as<std::uint8_t>()[i];
      case DataType::i16: return as<std::int16_t>()[i];
      case DataType::i32: return as<std::int32_t>()[i];
      case DataType::i64: return as<std::int64_t>()[i];
      default: fail("IntBuffer: not an integer type");
    }
  }
};

// Integer tensors with prescale/postscale (issue #18.5): scaled in f64 and truncated toward
// zero, as Horovod does, instead of refused; fused groups and a tensor run in place (above
// 1 MiB), three times over (the second and later cycles take the response cache's path).
void mode_int_scale(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  std::vector<IntScaleCase> cases;
  for (int copy = 0; copy < 2; ++copy) {  // two of each: they fuse
    const std::string n = "." + std::to_string(copy);
    cases.push_back({"i32.avg" + n, DataType::i32, ReduceOp::avg, 1001 + 7u * copy, 0.5, 3.0});
    cases.push_back({"i64.max" + n, DataType::i64, ReduceOp::max, 333, -2.0, 1.0});
    cases.push_back({"i8.sum" + n, DataType::i8, ReduceOp::sum, 77, 1.5, 0.25});
    cases.push_back({"u8.sum" + n, DataType::u8, ReduceOp::sum, 99, 0.5, 2.0});
    cases.push_back({"i32.min" + n, DataType::i32, ReduceOp::min, 500, 1.0, -0.5});
  }
  // 1.2 MB: run in place, not packed into the fusion buffer.
  cases.push_back({"i32.sum.big", DataType::i32, ReduceOp::sum, 300007, 0.7, 1.5});
  for (int iteration = 0; iteration < 3; ++iteration) {
    std::vector<IntBuffer> buffers;
    std::vector<ringfuse::Work> works;
    for (const auto& c : cases) {
      auto& buffer = buffers.emplace_back(c.type, c.count);
      for (std::size_t i = 0; i < c.count; ++i) buffer.set(i, int_input(ctx.rank(), i, c.type));
    }
    for (std::size_t k = 0; k < cases.size(); ++k) {
      const auto& c = cases[k];
      ringfuse::AllreduceOptions options{c.op, c.prescale, c.postscale,
                                         ringfuse::Compression::none};
      works.push_back(engine.allreduce(
          c.name, TensorView{buffers[k].data(), c.type, {static_cast<std::int64_t>(c.count)}},
          options));
    }
    engine.flush();
    for (auto& work : works) work.wait(60s);
    for (std::size_t k = 0; k < cases.size(); ++k) {
      const auto& c = cases[k];
      for (std::size_t i = 0; i < c.count; ++i) {
        const std::int64_t want = int_expected(c, ctx.size(), i);
        const std::int64_t got = buffers[k].get(i);
        if (got != want) {
          fail(c.name + "[" + std::to_string(i) + "]: got " + std::to_string(got) + ", want " +
               std::to_string(want));
        }
      }
    }
  }
  std::printf("int-scale: %zu integer tensors with prescale/postscale checked\n", cases.size());
}

bool bool_input(int rank, std::size_t index, ReduceOp op, int size) {
  // True on at most one rank for or, false on at most one rank for and: both results turn up.
  const bool marked = index % static_cast<std::size_t>(size + 1) == static_cast<std::size_t>(rank);
  return ringfuse::core::is_logical_and(op) ? !marked : marked;
}

// i16 and bool through the engine (issue #18.4), fused and alone, every operator (bool: sum,
// max and bor are or, min, prod and band and, bxor exclusive or); the average of bools, a
// bitwise operator on floats and a scaled bool are refused on the caller's thread, and the
// engine goes on.
void mode_dtypes(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const int rank = ctx.rank();
  const int size = ctx.size();
  const auto& ops = ringfuse::kAllReduceOps;
  const std::size_t counts[] = {1, 1003, 600011};  // the last runs in place (over 1 MiB)
  const auto i16_input = [](int r, std::size_t i) {
    const auto v = (static_cast<std::size_t>(r) * 37 + i * 11) % 200;
    return static_cast<std::int16_t>(static_cast<int>(v) - 100);
  };
  for (int iteration = 0; iteration < 2; ++iteration) {
    std::vector<std::vector<std::int16_t>> shorts;
    std::vector<std::vector<std::uint8_t>> flags;
    std::vector<std::pair<ReduceOp, std::size_t>> short_cases;
    std::vector<std::pair<ReduceOp, std::size_t>> flag_cases;
    std::vector<ringfuse::Work> works;
    for (const ReduceOp op : ops) {
      for (const std::size_t count : counts) {
        auto& s = shorts.emplace_back(count);
        for (std::size_t i = 0; i < count; ++i) s[i] = i16_input(rank, i);
        short_cases.emplace_back(op, count);
        works.push_back(engine.allreduce(
            "i16." + std::string(ringfuse::to_string(op)) + "." + std::to_string(count),
            {s.data(), DataType::i16, {static_cast<std::int64_t>(count)}}, {op}));
        if (op == ReduceOp::avg) continue;
        auto& f = flags.emplace_back(count);
        for (std::size_t i = 0; i < count; ++i) f[i] = bool_input(rank, i, op, size) ? 1 : 0;
        flag_cases.emplace_back(op, count);
        works.push_back(engine.allreduce(
            "bool." + std::string(ringfuse::to_string(op)) + "." + std::to_string(count),
            {f.data(), DataType::boolean, {static_cast<std::int64_t>(count)}}, {op}));
      }
    }
    engine.flush();
    for (auto& work : works) work.wait(60s);
    for (std::size_t k = 0; k < short_cases.size(); ++k) {
      const auto [op, count] = short_cases[k];
      for (std::size_t i = 0; i < count; ++i) {
        std::int64_t acc = i16_input(0, i);
        for (int r = 1; r < size; ++r) {
          acc = ringfuse::core::combine(op, acc, std::int64_t{i16_input(r, i)});
        }
        if (op == ReduceOp::avg) acc /= size;
        const auto want = static_cast<std::int16_t>(acc);  // prod wraps modulo 2^16
        if (shorts[k][i] != want) {
          fail("i16 " + std::string(ringfuse::to_string(op)) + "[" + std::to_string(i) +
               "]: got " + std::to_string(shorts[k][i]) + ", want " + std::to_string(want));
        }
      }
    }
    for (std::size_t k = 0; k < flag_cases.size(); ++k) {
      const auto [op, count] = flag_cases[k];
      for (std::size_t i = 0; i < count; ++i) {
        bool acc = ringfuse::core::is_logical_and(op);
        for (int r = 0; r < size; ++r) {
          acc = ringfuse::core::combine_bools(op, acc, bool_input(r, i, op, size));
        }
        if (flags[k][i] != (acc ? 1 : 0)) {
          fail("bool " + std::string(ringfuse::to_string(op)) + "[" + std::to_string(i) +
               "]: got " + std::to_string(flags[k][i]) + ", want " + std::to_string(acc));
        }
      }
    }
  }
  // Refused where they are enqueued, with the reason; nothing reaches the other ranks.
  std::vector<std::uint8_t> flags(8, 1);
  const TensorView view{flags.data(), DataType::boolean, {8}};
  const auto expect_refused = [&](const std::string& what, auto call, const std::string& reason) {
    try {
      call();
      fail(what + " was accepted");
    } catch (const ringfuse::Error& e) {
      if (e.kind() != ringfuse::ErrorKind::invalid_argument ||
          std::string(e.what()).find(reason) == std::string::npos) {
        fail(what + " refused with: " + e.what());
      }
      std::printf("%s refused: %s\n", what.c_str(), e.what());
    }
  };
  expect_refused("bool avg", [&] { engine.allreduce("bool.avg", view, {ReduceOp::avg}); },
                 "avg of bool is not defined");
  std::vector<float> floats(8, 1.0f);
  expect_refused(
      "f32 bxor",
      [&] { engine.allreduce("f32.bxor", {floats.data(), DataType::f32, {8}}, {ReduceOp::bxor}); },
      "bxor of f32 is not defined");
  expect_refused("bool prescale",
                 [&] { engine.allreduce("bool.scaled", view, {ReduceOp::max, 2.0, 1.0}); },
                 "prescale/postscale");
  // The engine goes on.
  auto work = engine.allreduce("bool.after", view, {ReduceOp::min});
  work.wait(30s);
  for (const auto v : flags) check_close("bool.after", v, 1);
  std::printf("dtypes: i16 and bool checked\n");
}

// Rank 0 enqueues an all-reduce at once, the others 600 ms later: meanwhile every control
// connection sees quiet spells longer than the engine's polling tick (rank 0, waiting for the
// others, runs a cycle only every RINGFUSE_CYCLE_TIME_MS). Then an ordinary shutdown.
void mode_uneven_then_leave(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  if (ctx.rank() != 0) std::this_thread::sleep_for(600ms);
  std::vector<float> tensor(16, 1.0f);
  engine.allreduce("uneven", {tensor.data(), DataType::f32, {16}}).wait(30s);
  for (float v : tensor) check_close("uneven", v, ctx.size());
  std::printf("uneven all-reduce checked\n");
}

// RINGFUSE_MATCH=name: every rank enqueues the same collectives in its own order (rotated by
// rank, reversed on odd ranks), twice over; all complete with the right values, and the
// all-reduces that were ready together were fused.
void mode_name_order(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const int rank = ctx.rank();
  const int size = ctx.size();
  const auto cases = mixed_cases();
  for (int iteration = 0; iteration < 2; ++iteration) {
    std::vector<Buffer> buffers;
    for (const auto& c : cases) buffers.emplace_back(c.type, c.count, rank);
    std::vector<float> bcast(333, static_cast<float>(rank));
    std::vector<std::int32_t> gather_in(static_cast<std::size_t>(rank + 1) * 3, rank);
    std::vector<std::int32_t> gather_out;
    std::vector<std::function<ringfuse::Work()>> enqueue;
    for (std::size_t i = 0; i < cases.size(); ++i) {
      enqueue.push_back([&, i] {
        const auto& c = cases[i];
        return engine.allreduce(
            c.name, TensorView{buffers[i].data(), c.type, {static_cast<std::int64_t>(c.count)}},
            c.options);
      });
    }
    enqueue.push_back([&] {
      return engine.broadcast("bcast", {bcast.data(), DataType::f32, {333}}, size - 1);
    });
    enqueue.push_back([&] {
      return engine.allgather("gather", {gather_in.data(), DataType::i32, {rank + 1, 3}},
                              [&](const std::vector<std::int64_t>& shape) {
                                gather_out.resize(static_cast<std::size_t>(shape[0] * shape[1]));
                                return static_cast<void*>(gather_out.data());
                              });
    });
    enqueue.push_back([&] { return engine.barrier("fence"); });
    std::rotate(enqueue.begin(), enqueue.begin() + (5 * rank) % enqueue.size(), enqueue.end());
    if (rank % 2 == 1) std::reverse(enqueue.begin(), enqueue.end());
    std::vector<ringfuse::Work> works;
    for (auto& submit : enqueue) works.push_back(submit());
    engine.flush();
    for (auto& work : works) work.wait(60s);
    check_mixed(cases, buffers, bcast, gather_out, size);
  }
  print_stats(engine.stats());
}

// RINGFUSE_MATCH=name: a name enqueued again while it is pending is refused at once (the last
// rank holds 'dup' back, so it is still pending on the others); once its Work completed the
// name may be enqueued again.
void mode_name_duplicate(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const int size = ctx.size();
  const bool late = ctx.rank() == size - 1;
  std::vector<float> first(10, 1.0f), second(10, 1.0f), group(4, 1.0f);
  if (late) std::this_thread::sleep_for(500ms);
  auto work = engine.allreduce("dup", {first.data(), DataType::f32, {10}});
  auto grouped = engine.grouped_allreduce("g", {{group.data(), DataType::f32, {4}}});
  if (!late) {
    for (const auto& [what, attempt] :
         std::vector<std::pair<std::string, std::function<void()>>>{
             {"dup", [&] { engine.allreduce("dup", {second.data(), DataType::f32, {10}}); }},
             {"g", [&] { engine.broadcast("g", {second.data(), DataType::f32, {10}}, 0); }}}) {
      try {
        attempt();
        fail("a second pending '" + what + "' was accepted");
      } catch (const ringfuse::Error& e) {
        if (e.kind() != ringfuse::ErrorKind::invalid_argument) fail(e.what());
        std::printf("DUPLICATE: %s\n", e.what());
      }
    }
  }
  work.wait(30s);
  grouped.wait(30s);
  for (float v : first) check_close("dup", v, size);
  for (float v : group) check_close("g", v, size);
  engine.allreduce("dup", {second.data(), DataType::f32, {10}}).wait(30s);
  for (float v : second) check_close("dup again", v, size);
  std::printf("name-duplicate: checked\n");
}

// Arguments every rank gets wrong are refused at once, and leave the engine (and in name mode
// the names) usable: the next collectives, under the same names, succeed on every rank.
void mode_recover(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const int size = ctx.size();
  std::vector<float> data(static_cast<std::size_t>(size) * 2 + 1, 1.0f), out(data.size());
  const auto refused = [&](const std::string& what, const std::function<void()>& attempt) {
    try {
      attempt();
      fail(what + " was accepted");
    } catch (const ringfuse::Error& e) {
      if (e.kind() != ringfuse::ErrorKind::invalid_argument) fail(e.what());
      std::printf("REFUSED: %s\n", e.what());
    }
  };
  const auto n = static_cast<std::int64_t>(data.size());
  refused("an uneven alltoall", [&] {
    engine.alltoall("x", {data.data(), DataType::f32, {n}}, {out.data(), DataType::f32, {n}});
  });
  refused("a broadcast from no rank", [&] {
    engine.broadcast("y", {data.data(), DataType::f32, {n}}, size);
  });
  refused("a null tensor", [&] { engine.allreduce("x", {nullptr, DataType::f32, {n}}); });
  auto x = engine.allreduce("x", {data.data(), DataType::f32, {n}});
  auto y = engine.broadcast("y", {out.data(), DataType::f32, {n}}, 0);
  x.wait(30s);
  y.wait(30s);
  for (float v : data) check_close("x after the refusals", v, size);
  std::printf("recovered\n");
}

// Issue #18.6: uneven alltoall (rank r sends (r + j) % 3 rows to rank j), uneven reducescatter
// (2 * size + 1 rows), grouped allgather and grouped reducescatter, checked against values
// computed here.
void mode_uneven(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const int rank = ctx.rank();
  const int size = ctx.size();
  constexpr int kWidth = 3;
  // alltoall: row k of the block for rank j holds rank * 1000 + j * 100 + k.
  std::vector<std::int64_t> splits;
  std::vector<float> a2a_in;
  for (int j = 0; j < size; ++j) {
    splits.push_back((rank + j) % 3);
    for (int k = 0; k < (rank + j) % 3; ++k) {
      for (int c = 0; c < kWidth; ++c) a2a_in.push_back(static_cast<float>(rank * 1000 + j * 100 + k));
    }
  }
  std::vector<float> a2a_out;
  const auto in_rows = static_cast<std::int64_t>(a2a_in.size() / kWidth);
  auto a2a = engine.alltoall("a2a.uneven", {a2a_in.data(), DataType::f32, {in_rows, kWidth}},
                             splits, [&](const std::vector<std::int64_t>& shape) {
                               a2a_out.resize(static_cast<std::size_t>(shape[0] * shape[1]));
                               return static_cast<void*>(a2a_out.data());
                             });
  // reducescatter: row i of every rank's input holds rank + 1 + i.
  const int rows = 2 * size + 1;
  std::vector<double> rs_in;
  for (int i = 0; i < rows; ++i) {
    for (int c = 0; c < 2; ++c) rs_in.push_back(rank + 1 + i);
  }
  std::vector<double> rs_out;
  auto rs = engine.reducescatter("rs.uneven", {rs_in.data(), DataType::f64, {rows, 2}},
                                 [&](const std::vector<std::int64_t>& shape) {
                                   rs_out.resize(static_cast<std::size_t>(shape[0] * shape[1]));
                                   return static_cast<void*>(rs_out.data());
                                 });
  // grouped allgather: rank + 1 rows of 2 holding rank, and one row of 4 holding 10 * rank.
  std::vector<std::int32_t> g0(static_cast<std::size_t>(rank + 1) * 2, rank), g1(4, 10 * rank);
  std::vector<std::vector<std::int32_t>> gathered(2);
  auto ag = engine.grouped_allgather(
      "ag.group", {{g0.data(), DataType::i32, {rank + 1, 2}}, {g1.data(), DataType::i32, {1, 4}}},
      [&](std::size_t index, const std::vector<std::int64_t>& shape) {
        gathered.at(index).resize(static_cast<std::size_t>(shape[0] * shape[1]));
        return static_cast<void*>(gathered[index].data());
      });
  // grouped reducescatter: blocks of 3 and 5 floats holding rank + 1.
  std::vector<float> r0_in(static_cast<std::size_t>(size) * 3, rank + 1.0f), r0_out(3);
  std::vector<float> r1_in(static_cast<std::size_t>(size) * 5, rank + 1.0f), r1_out(5);
  auto rsg = engine.grouped_reducescatter(
      "rs.group", {{r0_in.data(), DataType::f32, {size * 3}}, {r1_in.data(), DataType::f32, {size * 5}}},
      {{r0_out.data(), DataType::f32, {3}}, {r1_out.data(), DataType::f32, {5}}});
  engine.flush();
  for (auto* work : {&a2a, &rs, &ag, &rsg}) work->wait(30s);

  std::vector<std::int64_t> want_splits;
  std::size_t pos = 0;
  for (int j = 0; j < size; ++j) {
    want_splits.push_back((j + rank) % 3);
    for (int k = 0; k < (j + rank) % 3; ++k) {
      for (int c = 0; c < kWidth; ++c) check_close("a2a", a2a_out.at(pos++), j * 1000 + rank * 100 + k);
    }
  }
  if (pos != a2a_out.size()) fail("a2a: more rows than sent");
  if (a2a.received_splits() != want_splits) fail("a2a: received_splits");
  if (a2a.output_shape() != std::vector<std::int64_t>{static_cast<std::int64_t>(pos / kWidth), kWidth}) {
    fail("a2a: output_shape");
  }
  const int mine = rows / size + (rank < rows % size ? 1 : 0);
  const int first = rank * (rows / size) + std::min(rank, rows % size);
  if (rs.output_shape() != std::vector<std::int64_t>{mine, 2}) fail("rs: output_shape");
  for (int i = 0; i < mine; ++i) {
    for (int c = 0; c < 2; ++c) {
      check_close("rs row " + std::to_string(first + i), rs_out.at(static_cast<std::size_t>(i * 2 + c)),
                  size * (size + 1) / 2.0 + static_cast<double>(size) * (first + i));
    }
  }
  pos = 0;
  for (int r = 0; r < size; ++r) {
    for (int k = 0; k < (r + 1) * 2; ++k) check_close("ag.group.0", gathered[0].at(pos++), r);
  }
  if (pos != gathered[0].size()) fail("ag.group.0 size");
  for (int r = 0; r < size; ++r) {
    for (int k = 0; k < 4; ++k) check_close("ag.group.1", gathered[1].at(static_cast<std::size_t>(r * 4 + k)), 10 * r);
  }
  for (float v : r0_out) check_close("rs.group.0", v, size * (size + 1) / 2.0);
  for (float v : r1_out) check_close("rs.group.1", v, size * (size + 1) / 2.0);
  print_stats(engine.stats());
  std::printf("uneven: checked\n");
}

// Engine::start_timeline / stop_timeline around the middle of three phases: the file holds
// only that window's collectives, and cycle marks.
void mode_timeline_window(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  const char* path = std::getenv("ENGINE_TEST_TIMELINE");
  if (path == nullptr) fail("ENGINE_TEST_TIMELINE is not set");
  const auto phase = [&](const std::string& prefix) {
    std::vector<std::vector<float>> tensors(3, std::vector<float>(100, 1.0f));
    std::vector<ringfuse::Work> works;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      works.push_back(engine.allreduce(prefix + std::to_string(i),
                                       {tensors[i].data(), DataType::f32, {100}}));
    }
    for (auto& work : works) work.wait(30s);
    for (const auto& tensor : tensors) {
      for (float v : tensor) check_close(prefix, v, ctx.size());
    }
  };
  phase("before.");
  engine.start_timeline(path, true);
  phase("inside.");
  engine.stop_timeline();
  phase("after.");
  engine.stop_timeline();  // nothing open: nothing happens
  std::printf("timeline window: checked\n");
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fail("usage: engine_worker fusion|fusion-large|mismatch-KIND|mismatch-order|stall|"
         "stall-missing|join|skew|avg-bits|plain|aliased|aliased-on-one-rank|large-step|count-after-wait|int-scale|dtypes|uneven-then-leave|"
         "name-order|name-duplicate|recover|timeline-window|uneven");
  }
  const std::string mode = argv[1];
  try {
    auto ctx = ringfuse::init();
    if (mode == "fusion") {
      mode_fusion(*ctx);
    } else if (mode == "fusion-large") {
      mode_fusion_large(*ctx);
    } else if (mode == "mismatch-order") {
      mode_mismatch_order(*ctx);
    } else if (mode.rfind("mismatch-", 0) == 0) {
      mode_mismatch(*ctx, mode.substr(9));
    } else if (mode == "stall") {
      mode_stall(*ctx);
      std::fflush(stdout);
      std::_Exit(0);  // peers are gone or stopped: skip the shutdown handshake
    } else if (mode == "join") {
      mode_join(*ctx);
    } else if (mode == "avg-bits") {
      mode_avg_bits(*ctx);
    } else if (mode == "plain") {
      mode_plain(*ctx);
    } else if (mode == "aliased") {
      mode_aliased(*ctx);
    } else if (mode == "aliased-on-one-rank") {
      mode_aliased_on_one_rank(*ctx);
    } else if (mode == "count-after-wait") {
      mode_count_after_wait(*ctx);
    } else if (mode == "large-step") {
      mode_large_step(*ctx);
    } else if (mode == "int-scale") {
      mode_int_scale(*ctx);
    } else if (mode == "dtypes") {
      mode_dtypes(*ctx);
    } else if (mode == "uneven-then-leave") {
      mode_uneven_then_leave(*ctx);
    } else if (mode == "skew") {
      mode_skew(*ctx);
    } else if (mode == "name-order") {
      mode_name_order(*ctx);
    } else if (mode == "name-duplicate") {
      mode_name_duplicate(*ctx);
    } else if (mode == "recover") {
      mode_recover(*ctx);
    } else if (mode == "uneven") {
      mode_uneven(*ctx);
    } else if (mode == "timeline-window") {
      mode_timeline_window(*ctx);
    } else if (mode == "stall-missing") {
      mode_stall_missing(*ctx);
      std::printf("ok\n");
      std::fflush(stdout);
      std::_Exit(0);  // the engine aborted: skip the shutdown handshake
    } else {
      fail("unknown mode " + mode);
    }
  } catch (const std::exception& e) {
    fail(e.what());
  }
  std::printf("ok\n");
  return 0;
}
