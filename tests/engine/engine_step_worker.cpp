// One rank of the engine's per-step tests (issue 18): `engine_step_worker MODE`, launched by
// engine_test with RINGFUSE_* set. It replaces the global operator new and delete to count,
// per step of many small tensors, the allocations the caller's thread makes and the frees
// every other thread (the engine's) makes. Prints "ok" and exits 0 when every check passed;
// prints what went wrong and exits 3 otherwise.
//
// Modes:
//   allocations      after warm-up steps: allreduce_view enqueues allocate nothing on the
//                    caller's thread, and with the owning allreduce() (name and shape copied
//                    by the caller) no other thread frees what the caller allocated
//   group-wakeup     when the first Work of a fused group completes, the group's last one is
//                    done already (one wake-up for a caller that waits on them in order)
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <ringfuse/ringfuse.hpp>

namespace {

std::atomic<long> news_on_caller{0};
std::atomic<long> deletes_elsewhere{0};
thread_local bool on_caller = false;  // set by main() for its own thread

void* counted_new(std::size_t bytes) {
  if (on_caller) news_on_caller.fetch_add(1, std::memory_order_relaxed);
  if (void* block = std::malloc(bytes == 0 ? 1 : bytes)) return block;
  throw std::bad_alloc();
}

void counted_delete(void* block) noexcept {
  if (block == nullptr) return;
  if (!on_caller) deletes_elsewhere.fetch_add(1, std::memory_order_relaxed);
  std::free(block);
}

}  // namespace

void* operator new(std::size_t bytes) { return counted_new(bytes); }
void* operator new[](std::size_t bytes) { return counted_new(bytes); }
void operator delete(void* block) noexcept { counted_delete(block); }
void operator delete[](void* block) noexcept { counted_delete(block); }
void operator delete(void* block, std::size_t) noexcept { counted_delete(block); }
void operator delete[](void* block, std::size_t) noexcept { counted_delete(block); }

namespace {

using namespace std::chrono_literals;
using ringfuse::DataType;
using ringfuse::TensorView;
using ringfuse::Work;

constexpr std::size_t kTensors = 1000;
constexpr int kWarmUp = 3;
constexpr int kSteps = 5;

[[noreturn]] void fail(const std::string& what) {
  std::printf("FAILED: %s\n", what.c_str());
  std::fflush(stdout);
  std::_Exit(3);
}

// A model's gradients: names longer than std::string keeps inline, two-dimensional shapes,
// views into one arena, as a training loop keeps them from step to step.
struct Gradients {
  explicit Gradients(std::size_t count) : arena(count * 4, 1.0f) {
    for (std::size_t i = 0; i < count; ++i) {
      names.push_back("model.layer" + std::to_string(i) + ".weight.grad");
      views.push_back(TensorView{arena.data() + i * 4, DataType::f32, {2, 2}});
    }
    works.reserve(count);
  }
  std::vector<float> arena;
  std::vector<std::string> names;
  std::vector<TensorView> views;
  std::vector<Work> works;
};

enum class Enqueue { view, copy };

/// One step: every gradient enqueued, last first, then flush and wait; returns the caller's
/// allocations during the enqueues alone.
long step(ringfuse::Engine& engine, Gradients& g, Enqueue how) {
  g.works.clear();
  const long before = news_on_caller.load();
  for (std::size_t i = g.names.size(); i-- > 0;) {
    if (how == Enqueue::view) {
      g.works.push_back(engine.allreduce_view(g.names[i], g.views[i]));
    } else {
      TensorView view = g.views[i];  // the copies a binding makes of name and shape
      g.works.push_back(engine.allreduce(g.names[i], std::move(view)));
    }
  }
  const long allocated = news_on_caller.load() - before;
  engine.flush();
  for (const Work& work : g.works) work.wait(60s);
  return allocated;
}

void mode_allocations(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  Gradients g(kTensors);
  for (int i = 0; i < kWarmUp; ++i) step(engine, g, Enqueue::view);
  long allocated = 0;
  for (int i = 0; i < kSteps; ++i) allocated += step(engine, g, Enqueue::view);
  std::printf("allreduce_view: %ld allocations on the caller's thread in %d steps of %zu\n",
              allocated, kSteps, kTensors);
  std::string failures;
  // The engine's own occasional growth may show; one per tensor and step may not.
  if (allocated >= static_cast<long>(kTensors)) {
    failures += "allreduce_view allocated " + std::to_string(allocated) + " times in " +
                std::to_string(kSteps) + " steps of " + std::to_string(kTensors) +
                " tensors on the caller's thread; expected none once a step has run. ";
  }

  for (int i = 0; i < kWarmUp; ++i) step(engine, g, Enqueue::copy);
  const long freed_before = deletes_elsewhere.load();
  for (int i = 0; i < kSteps; ++i) step(engine, g, Enqueue::copy);
  const long freed = deletes_elsewhere.load() - freed_before;
  std::printf("allreduce with copies: %ld frees on other threads in %d steps of %zu\n", freed,
              kSteps, kTensors);
  // The engine thread frees a few blocks of its own per step (messages, plans), and now and
  // then a Work state whose handle the caller dropped first: far fewer than one per tensor.
  // The names and shapes the caller allocated are 2 per tensor.
  if (freed >= static_cast<long>(kSteps * kTensors / 2)) {
    failures += "other threads freed " + std::to_string(freed) + " blocks in " +
                std::to_string(kSteps) + " steps of " + std::to_string(kTensors) +
                " tensors enqueued by allreduce(); the caller's names and shapes should be "
                "freed on its own thread. ";
  }
  if (!failures.empty()) fail(failures);
  for (float v : g.arena) {
    if (v <= 0.0f) fail("a gradient lost its value: " + std::to_string(v));
  }
}

void mode_group_wakeup(ringfuse::Context& ctx) {
  auto& engine = ctx.engine();
  Gradients g(300);
  for (int round = 0; round < 3; ++round) {
    g.works.clear();
    std::atomic<int> first_saw_last_done{-1};
    std::atomic<int> middle_saw_last_done{-1};
    for (std::size_t i = 0; i < g.names.size(); ++i) {
      TensorView view = g.views[i];
      g.works.push_back(engine.allreduce(g.names[i], std::move(view)));
    }
    // Registered before the flush: the quiet timer (a fifth of a 5 s cycle) has not run out,
    // so nothing has completed yet and the callbacks run on the engine thread.
    const Work last = g.works.back();
    g.works.front().on_complete(
        [&, last](const ringfuse::Error*) { first_saw_last_done = last.test() ? 1 : 0; });
    g.works[g.works.size() / 2].on_complete(
        [&, last](const ringfuse::Error*) { middle_saw_last_done = last.test() ? 1 : 0; });
    engine.flush();
    for (const Work& work : g.works) work.wait(60s);
    // A Work is done before its callbacks run: wait for them (they write to this scope).
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (first_saw_last_done.load() < 0 || middle_saw_last_done.load() < 0) {
      if (std::chrono::steady_clock::now() > deadline) fail("a completion callback never ran");
      std::this_thread::sleep_for(1ms);
    }
    std::printf("round %d: collectives %llu; when the first Work completed the last was %s\n",
                round, static_cast<unsigned long long>(engine.stats().collectives),
                first_saw_last_done.load() == 1 ? "done" : "not done");
    if (first_saw_last_done.load() != 1 || middle_saw_last_done.load() != 1) {
      fail("when the fused group's first Work completed, its last was not done (first " +
           std::to_string(first_saw_last_done.load()) + ", middle " +
           std::to_string(middle_saw_last_done.load()) +
           "): a caller waiting on them in order is woken once per Work");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  on_caller = true;
  if (argc < 2) fail("usage: engine_step_worker allocations|group-wakeup");
  const std::string mode = argv[1];
  try {
    auto ctx = ringfuse::init();
    if (mode == "allocations") {
      mode_allocations(*ctx);
    } else if (mode == "group-wakeup") {
      mode_group_wakeup(*ctx);
    } else {
      fail("unknown mode " + mode);
    }
  } catch (const std::exception& e) {
    fail(e.what());
  }
  std::printf("ok\n");
  return 0;
}
