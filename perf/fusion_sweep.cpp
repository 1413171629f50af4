#include "fusion_sweep.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <nlohmann/json.hpp>

#ifdef RINGFUSE_PERF_HAVE_MPI
#include <mpi.h>
#endif

#include "fusion_model.hpp"
#include "malloc_tuning.hpp"
#include "mpi_bootstrap.hpp"
#include "ringfuse/engine.hpp"
#include "ringfuse/error.hpp"
#include "stats.hpp"

namespace ringfuse::perf {
namespace {

using Clock = std::chrono::steady_clock;

enum class Mode { single, fused, unfused, unfused_before_engine, mpi_per_tensor };

const char* to_string(Mode m) {
  switch (m) {
    case Mode::single: return "single";
    case Mode::fused: return "fused";
    case Mode::unfused: return "unfused";
    case Mode::unfused_before_engine: return "unfused-no-eng";
    case Mode::mpi_per_tensor: return "mpi-per-tensor";
  }
  return "?";
}

struct FusionRow {
  std::string model;
  Mode mode = Mode::single;
  std::size_t tensors = 0;
  std::uint64_t bytes = 0;
  TimingSummary time;
  std::optional<double> vs_single;  // time / single's time
  std::optional<double> vs_fused;   // time / fused's time
  std::optional<std::uint64_t> wrong;
  // EngineStats deltas over the timed steps, divided by the number of steps (rank 0's engine).
  std::optional<std::array<double, 7>> engine;
  std::vector<double> slowest_s;  // each timed step's slowest rank's time
  bool interleaved = false;       // measured in the same rounds as the model's other modes
  // The median over rounds of time / single's time in the same round (interleaved rows only).
  std::optional<double> paired_vs_single;
};

constexpr const char* kStatNames[7] = {"cycles",     "fast_path_cycles", "cache_hits",
                                       "cache_misses", "cache_evictions",  "collectives",
                                       "fused_tensors"};

std::array<double, 7> per_step(const EngineStats& a, const EngineStats& b, int steps) {
  const double n = steps;
  return {static_cast<double>(b.cycles - a.cycles) / n,
          static_cast<double>(b.fast_path_cycles - a.fast_path_cycles) / n,
          static_cast<double>(b.cache_hits - a.cache_hits) / n,
          static_cast<double>(b.cache_misses - a.cache_misses) / n,
          static_cast<double>(b.cache_evictions - a.cache_evictions) / n,
          static_cast<double>(b.collectives - a.collectives) / n,
          static_cast<double>(b.fused_tensors - a.fused_tensors) / n};
}

// Small integers, so every sum over ranks is exact in f32 and the check is exact.
float input_value(std::uint64_t i, int rank) {
  return static_cast<float>(static_cast<int>((i * 7 + static_cast<std::uint64_t>(rank) * 13) % 31) - 15);
}

// One model's buffers: the pristine input (restored, untimed, before every step) and the
// gradients, which all live in one arena, each tensor a view at its offset.
class Step {
 public:
  Step(const Model& model, int rank, int size) : model_(model), size_(size) {
    input_.resize(model.total_numel);
    for (std::uint64_t i = 0; i < input_.size(); ++i) input_[i] = input_value(i, rank);
    grads_.resize(model.total_numel);
    std::uint64_t offset = 0;
    for (const GradientSpec& g : model.gradients) {
      offsets_.push_back(offset);
      offset += g.numel;
    }
  }

  void restore() { std::memcpy(grads_.data(), input_.data(), input_.size() * sizeof(float)); }
  void poison() { std::fill(grads_.begin(), grads_.end(), -1e30f); }

  void run(Context& ctx, Mode mode) {
    const auto& gs = model_.gradients;
    switch (mode) {
      case Mode::single:
        ctx.allreduce(grads_.data(), grads_.size(), DataType::f32, ReduceOp::sum);
        break;
      case Mode::unfused:
      case Mode::unfused_before_engine:
        // Backward produces the last layer's gradient first.
        for (std::size_t i = gs.size(); i-- > 0;) {
          ctx.allreduce(grads_.data() + offsets_[i], gs[i].numel, DataType::f32, ReduceOp::sum);
        }
        break;
      case Mode::fused: {
        Engine& engine = ctx.engine();
        works_.clear();
        for (std::size_t i = gs.size(); i-- > 0;) {
          if (enqueue_copies_) {  // a binding that builds a name and a shape per call
            TensorView view{grads_.data() + offsets_[i], DataType::f32, gs[i].shape};
            works_.push_back(engine.allreduce(names_[i], std::move(view)));
          } else {  // a training loop that keeps its parameters' names and views
            works_.push_back(engine.allreduce_view(names_[i], views_[i]));
          }
        }
        engine.flush();
        for (const Work& w : works_) w.wait();
        break;
      }
      case Mode::mpi_per_tensor:
#ifdef RINGFUSE_PERF_HAVE_MPI
        for (std::size_t i = gs.size(); i-- > 0;) {
          MPI_Allreduce(MPI_IN_PLACE, grads_.data() + offsets_[i], static_cast<int>(gs[i].numel),
                        MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        }
#endif
        break;
    }
  }

  void prepare_names(const std::string& prefix, bool enqueue_copies) {
    enqueue_copies_ = enqueue_copies;
    names_.clear();
    views_.clear();
    for (std::size_t i = 0; i < model_.gradients.size(); ++i) {
      const GradientSpec& g = model_.gradients[i];
      names_.push_back(prefix + g.name);
      views_.push_back(TensorView{grads_.data() + offsets_[i], DataType::f32, g.shape});
    }
  }

  std::uint64_t count_wrong() const {
    std::uint64_t wrong = 0;
    for (std::uint64_t i = 0; i < grads_.size(); ++i) {
      float expected = 0;
      for (int r = 0; r < size_; ++r) expected += input_value(i, r);
      if (grads_[i] != expected) ++wrong;
    }
    return wrong;
  }

 private:
  const Model& model_;
  int size_;
  std::vector<float> input_;
  std::vector<float> grads_;
  std::vector<std::uint64_t> offsets_;
  std::vector<std::string> names_;
  std::vector<TensorView> views_;  // the fused row's, over grads_
  bool enqueue_copies_ = false;
  std::vector<Work> works_;
};

void barrier(Context& ctx, Mode mode) {
#ifdef RINGFUSE_PERF_HAVE_MPI
  if (mode == Mode::mpi_per_tensor) {
    MPI_Barrier(MPI_COMM_WORLD);
    return;
  }
#endif
  (void)mode;
  ctx.barrier();
}

EngineStats& operator+=(EngineStats& sum, const std::array<EngineStats, 2>& before_after) {
  const auto& [a, b] = before_after;
  sum.cycles += b.cycles - a.cycles;
  sum.fast_path_cycles += b.fast_path_cycles - a.fast_path_cycles;
  sum.cache_hits += b.cache_hits - a.cache_hits;
  sum.cache_misses += b.cache_misses - a.cache_misses;
  sum.cache_evictions += b.cache_evictions - a.cache_evictions;
  sum.collectives += b.collectives - a.collectives;
  sum.fused_tensors += b.fused_tensors - a.fused_tensors;
  return sum;
}

// The rows of `modes`, measured round by round: each warm-up and each timed round runs every
// mode once, forward in even rounds and backward in odd ones, so that a disturbance of this
// shared machine (another job, ranks descheduled) falls on every mode alike, and no mode
// always runs first or right after another. One mode alone is the sequential measurement.
std::vector<FusionRow> measure_modes(Context& ctx, const PerfOptions& o, const Model& model,
                                     Step& step, const std::vector<Mode>& modes) {
  step.prepare_names(fmt::format("{}/", model.name), o.fusion_enqueue == "copy");
  step.poison();
  const auto round_order = [&](int round) {
    std::vector<Mode> order = modes;
    if (round % 2 == 1) std::reverse(order.begin(), order.end());
    return order;
  };
  for (int i = 0; i < o.warmup; ++i) {
    for (const Mode mode : round_order(i)) {
      step.restore();
      barrier(ctx, mode);
      step.run(ctx, mode);
    }
  }
  std::vector<std::vector<double>> seconds(modes.size());
  std::vector<std::uint64_t> wrong(modes.size(), 0);
  EngineStats engine_sum;  // the fused steps' own deltas, not the other modes' between them
  for (int i = 0; i < o.iters; ++i) {
    for (const Mode mode : round_order(o.warmup + i)) {
      const auto index = static_cast<std::size_t>(
          std::find(modes.begin(), modes.end(), mode) - modes.begin());
      step.restore();
      barrier(ctx, mode);
      std::array<EngineStats, 2> stats;
      if (mode == Mode::fused) stats[0] = ctx.engine().stats();
      const auto start = Clock::now();
      step.run(ctx, mode);
      seconds[index].push_back(std::chrono::duration<double>(Clock::now() - start).count());
      if (mode == Mode::fused) {
        stats[1] = ctx.engine().stats();
        engine_sum += stats;
      }
      // Each mode's result of the last round, before the next mode overwrites it.
      if (o.check && i == o.iters - 1) wrong[index] = step.count_wrong();
    }
  }
  std::vector<FusionRow> rows;
  for (std::size_t m = 0; m < modes.size(); ++m) {
    FusionRow row;
    if (modes[m] == Mode::fused) row.engine = per_step(EngineStats{}, engine_sum, o.iters);
    row.model = model.name;
    row.mode = modes[m];
    row.tensors = model.gradients.size();
    row.bytes = model.total_numel * sizeof(float);
    row.slowest_s = slowest_across_ranks(ctx, std::move(seconds[m]));
    row.time = summarize(row.slowest_s);
    row.interleaved = modes.size() > 1;
    if (o.check) row.wrong = sum_across_ranks(ctx, wrong[m]);
    rows.push_back(std::move(row));
  }
  return rows;
}

void compute_ratios(std::vector<FusionRow>& rows) {
  for (FusionRow& r : rows) {
    for (const FusionRow& base : rows) {
      if (base.model != r.model || base.time.median_us <= 0) continue;
      if (base.mode == Mode::single) {
        r.vs_single = r.time.median_us / base.time.median_us;
        if (r.interleaved && base.interleaved && r.slowest_s.size() == base.slowest_s.size()) {
          std::vector<double> ratios;
          for (std::size_t i = 0; i < r.slowest_s.size(); ++i) {
            if (base.slowest_s[i] > 0) ratios.push_back(r.slowest_s[i] / base.slowest_s[i]);
          }
          if (!ratios.empty()) r.paired_vs_single = median(ratios);
        }
      }
      if (base.mode == Mode::fused) r.vs_fused = r.time.median_us / base.time.median_us;
    }
  }
}

std::string opt(const std::optional<double>& v) {
  return v ? fmt::format("{:.3f}", *v) : std::string("-");
}

struct Header {
  std::string launcher;
  int nranks = 0;
  std::string transport;
  std::string malloc_env;
  std::vector<std::string> notes;
  std::vector<std::string> command;
  EngineConfig engine;
};

void print(std::ostream& out, const Header& h, const PerfOptions& o,
           const std::vector<FusionRow>& rows) {
  fmt::print(out, "# ringfuse-perf fusion: model {}, {} ranks, launched by {}\n", o.model,
             h.nranks, h.launcher);
  fmt::print(out, "# time_us: median over {} steps (after {} warm-ups) of the slowest rank's "
                  "step time; f32 sum\n", o.iters, o.warmup);
  fmt::print(out, "# modes: single = one ctx->allreduce of the total bytes; fused = every tensor "
                  "enqueued to the engine in reverse order ({}), flush(), wait all; unfused = one "
                  "blocking ctx->allreduce per tensor with the engine started; unfused-no-eng = the same before the engine was started (same process, same run); mpi-per-tensor = MPI_Allreduce per tensor\n",
             o.fusion_enqueue == "copy" ? "allreduce with a copy of each name and shape"
                                        : "allreduce_view over kept names and views");
  fmt::print(out, "# ours: {}; engine: fusion_threshold {} B, cycle_time {} us, cache_capacity {}\n",
             h.transport, h.engine.fusion_threshold, h.engine.cycle_time.count(),
             h.engine.cache_capacity);
  fmt::print(out, "# malloc environment: {}\n", h.malloc_env);
  for (const auto& note : h.notes) fmt::print(out, "# {}\n", note);
  fmt::print(out, "#\n");
  fmt::print(out, "# order: {}\n",
             o.fusion_order == "interleaved"
                 ? "interleaved: each round runs every mode of a model once, forward and "
                   "backward in turn (unfused-no-eng before the engine, alone); "
                   "paired_vs_single = median over rounds of time / single's time in that round"
                 : "sequential: each mode's iterations together, one mode after the other");
  fmt::print(out, "#{:>9} {:>15} {:>7} {:>11} {:>11} {:>9} {:>9} {:>6} {:>16}\n", "model",
             "mode", "tensors", "bytes", "time_us", "vs_single", "vs_fused", "wrong",
             "paired_vs_single");
  for (const FusionRow& r : rows) {
    fmt::print(out, " {:>9} {:>15} {:>7} {:>11} {:>11.1f} {:>9} {:>9} {:>6} {:>16}\n", r.model,
               to_string(r.mode), r.tensors, r.bytes, r.time.median_us, opt(r.vs_single),
               opt(r.vs_fused), r.wrong ? fmt::format("{}", *r.wrong) : std::string("N/A"),
               opt(r.paired_vs_single));
  }
  for (const FusionRow& with : rows) {
    if (with.mode != Mode::unfused) continue;
    for (const FusionRow& without : rows) {
      if (without.mode == Mode::unfused_before_engine && without.model == with.model &&
          without.time.median_us > 0) {
        fmt::print(out, "# {}: unfused with the engine started / before it: {:.3f}\n", with.model,
                   with.time.median_us / without.time.median_us);
      }
    }
  }
  std::uint64_t wrong = 0;
  for (const FusionRow& r : rows) wrong += r.wrong.value_or(0);
  fmt::print(out, "# out of bounds values : {} {}\n", wrong, wrong == 0 ? "OK" : "FAILED");
  fmt::print(out, "#\n# engine stats per timed step (EngineStats deltas / steps, rank 0)\n");
  fmt::print(out, "#{:>9} {:>15}", "model", "mode");
  for (const char* name : kStatNames) fmt::print(out, " {:>16}", name);
  fmt::print(out, "\n");
  for (const FusionRow& r : rows) {
    if (!r.engine) continue;
    fmt::print(out, " {:>9} {:>15}", r.model, to_string(r.mode));
    for (const double v : *r.engine) fmt::print(out, " {:>16.2f}", v);
    fmt::print(out, "\n");
  }
}

void write_json(const std::string& path, const Header& h, const PerfOptions& o,
                const std::vector<FusionRow>& rows) {
  nlohmann::json doc;
  doc["tool"] = "ringfuse-perf";
  doc["subcommand"] = "fusion";
  doc["model"] = o.model;
  doc["nranks"] = h.nranks;
  doc["launcher"] = h.launcher;
  doc["transport"] = h.transport;
  doc["malloc_env"] = h.malloc_env;
  doc["notes"] = h.notes;
  doc["command"] = h.command;
  doc["iters"] = o.iters;
  doc["warmup"] = o.warmup;
  doc["enqueue"] = o.fusion_enqueue;
  doc["order"] = o.fusion_order;
  doc["engine_config"] = {{"fusion_threshold", h.engine.fusion_threshold},
                          {"cycle_time_us", h.engine.cycle_time.count()},
                          {"cache_capacity", h.engine.cache_capacity}};
  auto& out = doc["rows"] = nlohmann::json::array();
  for (const FusionRow& r : rows) {
    nlohmann::json j;
    j["model"] = r.model;
    j["mode"] = to_string(r.mode);
    j["tensors"] = r.tensors;
    j["bytes"] = r.bytes;
    j["time_us"] = r.time.median_us;
    j["min_us"] = r.time.min_us;
    j["max_us"] = r.time.max_us;
    j["vs_single"] = r.vs_single ? nlohmann::json(*r.vs_single) : nlohmann::json(nullptr);
    j["vs_fused"] = r.vs_fused ? nlohmann::json(*r.vs_fused) : nlohmann::json(nullptr);
    j["paired_vs_single"] =
        r.paired_vs_single ? nlohmann::json(*r.paired_vs_single) : nlohmann::json(nullptr);
    j["wrong"] = r.wrong ? nlohmann::json(*r.wrong) : nlohmann::json(nullptr);
    if (r.engine) {
      nlohmann::json s;
      for (std::size_t k = 0; k < r.engine->size(); ++k) s[kStatNames[k]] = (*r.engine)[k];
      j["engine_per_step"] = s;
    } else {
      j["engine_per_step"] = nullptr;
    }
    out.push_back(std::move(j));
  }
  std::ofstream file(path);
  file << doc.dump(2) << "\n";
  if (!file) throw Error(ErrorKind::system, fmt::format("ringfuse-perf: cannot write --json {}", path));
}

}  // namespace

int run_fusion(int argc, char** argv, const PerfOptions& o) {
  Header h;
  h.malloc_env = describe_malloc_env();
  const char* transport = std::getenv("RINGFUSE_TRANSPORT");
  h.transport = transport != nullptr ? fmt::format("RINGFUSE_TRANSPORT={}", transport)
                                     : "RINGFUSE_TRANSPORT unset (the library's default)";
  h.transport += fmt::format("; backend {}", o.backend);
  h.command.assign(argv, argv + argc);
  auto launch = Launch::start(argc, argv, backend_override(o));
  Context& ctx = launch->context();
  h.launcher = launch->launcher();
  h.nranks = ctx.size();
  const bool with_mpi = launch->mpi_ready();
  // The blocking calls before any engine exists, so that what a started engine costs them
  // (issue 18: within 1.5x) is one ratio of one table.
  const auto wanted = [&](Mode mode) {
    return o.fusion_modes.empty() ||
           std::find(o.fusion_modes.begin(), o.fusion_modes.end(), to_string(mode)) !=
               o.fusion_modes.end();
  };
  std::optional<FusionRow> before_engine;
  if (const Model model = make_model(o.model);
      model.gradients.size() > 1 && wanted(Mode::unfused_before_engine)) {
    Step step(model, ctx.rank(), ctx.size());
    before_engine = measure_modes(ctx, o, model, step, {Mode::unfused_before_engine}).front();
  }
  Engine& engine = ctx.engine();  // collective: every rank starts it here
  h.engine = engine.config();
  if (!with_mpi) h.notes.push_back(fmt::format("mpi-per-tensor: not measured: {}",
                                               launch->mpi_unavailable()));

  std::vector<FusionRow> rows;
  // The requested model, then a scalar: with the response cache hit, one engine step of it is
  // one negotiation cycle plus a 4-byte all-reduce, against `single`'s 4-byte all-reduce alone.
  for (const std::string& name : {o.model, std::string("scalar")}) {
    const Model model = make_model(name);
    Step step(model, ctx.rank(), ctx.size());
    std::vector<Mode> modes = {Mode::single, Mode::fused};
    if (model.gradients.size() > 1) modes.push_back(Mode::unfused);
    if (with_mpi) modes.push_back(Mode::mpi_per_tensor);
    std::erase_if(modes, [&](Mode mode) { return !wanted(mode); });
    if (before_engine && name == o.model &&
        std::find(modes.begin(), modes.end(), Mode::unfused) == modes.end()) {
      rows.push_back(*before_engine);
    }
    std::vector<std::vector<Mode>> batches;  // measured together
    if (o.fusion_order == "interleaved") {
      batches.push_back(modes);
    } else {
      for (const Mode mode : modes) batches.push_back({mode});
    }
    for (const auto& batch : batches) {
      const auto started = Clock::now();
      for (FusionRow& row : measure_modes(ctx, o, model, step, batch)) {
        if (row.mode == Mode::unfused && before_engine && name == o.model) {
          rows.push_back(*before_engine);  // beside the row it is compared with
        }
        rows.push_back(std::move(row));
      }
      if (ctx.rank() == 0) {
        std::string what;
        for (const Mode mode : batch) {
          what += fmt::format("{}{}", what.empty() ? "" : ",", to_string(mode));
        }
        fmt::print(stderr, "ringfuse-perf: fusion {} {} done in {:.1f} s\n", name, what,
                   std::chrono::duration<double>(Clock::now() - started).count());
      }
    }
  }
  compute_ratios(rows);
  if (ctx.rank() == 0) {
    print(std::cout, h, o, rows);
    std::cout.flush();
    if (!o.json_path.empty()) write_json(o.json_path, h, o, rows);
  }
  std::uint64_t wrong = 0;
  for (const FusionRow& r : rows) wrong += r.wrong.value_or(0);
  return wrong == 0 ? 0 : 3;
}

}  // namespace ringfuse::perf
