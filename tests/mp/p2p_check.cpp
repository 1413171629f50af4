// One rank of a point-to-point check, started by ringfuse-run, mpirun or a test (the world
// comes from the environment). Modes:
//   pipeline   4 stages, activations forward and gradients back for 100 micro-batches, each
//              stage exchanging with both neighbours in one send_recv_group; checked values
//   anysource  every rank but 0 sends its rank; rank 0 receives from kAnySource
//   ring       every rank sends right and receives left in one group, 1 MiB and 1 element
//   victim     rank 0 sends one message, then sleeps (the test kills it); rank 1 receives it,
//              then waits for a second one that never comes
//   child-victim  3 ranks: victim's exchange inside subgroup {2, 0} (global rank 0 is the
//              child's rank 1 and is killed; global rank 2 receives), whose error must name
//              global rank 0
//   rendezvous-victim  rank 0 sends 8 MiB (an announced message) that rank 1, inside a receive
//              of another tag, never takes; the test kills rank 1 while rank 0's send waits
// Prints "rank R: <mode> ok" on success; exit 3 with the error on a ringfuse::Error.
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace {

using ringfuse::Context;
using ringfuse::DataType;
using ringfuse::P2POp;

std::vector<float> filled(std::size_t n, float base) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = base + static_cast<float>(i % 97);
  return v;
}

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("MISMATCH: " + what);
}

void pipeline(Context& ctx, int micro_batches) {
  constexpr std::size_t kCount = 4096;
  const int s = ctx.rank();
  const int last = ctx.size() - 1;
  std::vector<float> received_act(kCount), received_grad(kCount), out_act, out_grad;
  std::vector<std::vector<float>> kept(static_cast<std::size_t>(micro_batches));
  const auto in_range = [&](int m) { return m >= 0 && m < micro_batches; };
  for (int t = 0; t < micro_batches + 2 * last + 1; ++t) {
    std::vector<P2POp> ops;
    const int fwd_send = t - s, fwd_recv = t - (s - 1);
    const int bwd_send = t - (2 * last + 1 - s), bwd_recv = t - (2 * last - s);
    if (s < last && in_range(fwd_send)) {
      out_act = s == 0 ? filled(kCount, static_cast<float>(fwd_send)) : received_act;
      if (s > 0) for (auto& x : out_act) x += 1.0f;
      ops.push_back({P2POp::Kind::send, out_act.data(), kCount, DataType::f32, s + 1, 0});
    }
    if (s > 0 && in_range(bwd_send)) {
      out_grad = s == last ? kept[static_cast<std::size_t>(bwd_send)] : received_grad;
      for (auto& x : out_grad) x = s == last ? x * 2.0f : x + 1.0f;
      ops.push_back({P2POp::Kind::send, out_grad.data(), kCount, DataType::f32, s - 1, 1});
    }
    const bool get_act = s > 0 && in_range(fwd_recv);
    const bool get_grad = s < last && in_range(bwd_recv);
    if (get_act) ops.push_back({P2POp::Kind::recv, received_act.data(), kCount, DataType::f32, s - 1, 0});
    if (get_grad) ops.push_back({P2POp::Kind::recv, received_grad.data(), kCount, DataType::f32, s + 1, 1});
    ctx.send_recv_group(ops);
    if (get_act) {
      check(received_act == filled(kCount, static_cast<float>(fwd_recv + s - 1)),
            fmt::format("stage {} activation of micro-batch {}", s, fwd_recv));
      if (s == last) kept[static_cast<std::size_t>(fwd_recv)] = received_act;
    }
    if (get_grad) {
      auto expected = filled(kCount, static_cast<float>(bwd_recv + last - 1));
      for (auto& x : expected) x = x * 2.0f + static_cast<float>(last - 1 - s);
      check(received_grad == expected,
            fmt::format("stage {} gradient of micro-batch {}", s, bwd_recv));
    }
  }
}

void anysource(Context& ctx) {
  if (ctx.rank() != 0) {
    const std::int32_t value = ctx.rank() * 10;
    ctx.send(&value, 1, DataType::i32, 0, 3);
    return;
  }
  std::vector<bool> seen(static_cast<std::size_t>(ctx.size()), false);
  for (int i = 1; i < ctx.size(); ++i) {
    std::int32_t value = -1;
    const auto status = ctx.recv(&value, 1, DataType::i32, ringfuse::kAnySource, ringfuse::kAnyTag);
    check(status.source > 0 && status.source < ctx.size() && !seen[status.source],
          fmt::format("source {}", status.source));
    check(value == status.source * 10 && status.tag == 3 && status.count == 1,
          fmt::format("message from rank {}", status.source));
    seen[static_cast<std::size_t>(status.source)] = true;
  }
}

void ring(Context& ctx) {
  const int right = (ctx.rank() + 1) % ctx.size();
  const int left = (ctx.rank() + ctx.size() - 1) % ctx.size();
  for (const std::size_t count : {std::size_t{1}, std::size_t{1} << 18}) {
    auto out = filled(count, static_cast<float>(ctx.rank()));
    std::vector<float> in(count);
    const P2POp ops[] = {{P2POp::Kind::recv, in.data(), count, DataType::f32, left, 5},
                         {P2POp::Kind::send, out.data(), count, DataType::f32, right, 5}};
    const auto statuses = ctx.send_recv_group(ops);
    check(statuses.size() == 1 && statuses[0].source == left && statuses[0].count == count,
          "ring status");
    check(in == filled(count, static_cast<float>(left)), fmt::format("ring of {}", count));
  }
}

void victim(Context& ctx) {
  float value = 1.0f;
  if (ctx.rank() == 0) {
    ctx.send(&value, 1, DataType::f32, 1, 0);
    std::cout << "rank 0: running" << std::endl;
    std::this_thread::sleep_for(std::chrono::minutes(5));  // killed by the test
  } else if (ctx.rank() == 1) {
    ctx.recv(&value, 1, DataType::f32, 0, 0);
    std::cout << "rank 1: running" << std::endl;
    ctx.recv(&value, 1, DataType::f32, 0, 0);  // never sent: rank 0 is killed instead
  }
}

void rendezvous_victim(Context& ctx) {
  float value = 1.0f;
  if (ctx.rank() == 0) {
    ctx.send(&value, 1, DataType::f32, 1, 0);
    std::cout << "rank 0: running" << std::endl;
    const std::vector<float> large(std::size_t{2} << 20, 2.0f);  // 8 MiB
    ctx.send(large.data(), large.size(), DataType::f32, 1, 1);
    // Only a send that did not wait for its receive gets here.
    std::cout << "rank 0: the 8 MiB send completed without a receive" << std::endl;
    ctx.recv(&value, 1, DataType::f32, 1, 2);  // never sent: rank 1 is killed
  } else if (ctx.rank() == 1) {
    ctx.recv(&value, 1, DataType::f32, 0, 0);
    std::cout << "rank 1: running" << std::endl;
    ctx.recv(&value, 1, DataType::f32, 0, 2);  // never sent: this rank is killed in it
  }
}

void child_victim(Context& ctx) {
  auto child = ctx.subgroup(std::vector<int>{2, 0});
  float value = 1.0f;
  if (ctx.rank() == 0) {
    child->send(&value, 1, DataType::f32, 0, 0);
    std::cout << "rank 0: running" << std::endl;
    std::this_thread::sleep_for(std::chrono::minutes(5));  // killed by the test
  } else if (ctx.rank() == 2) {
    child->recv(&value, 1, DataType::f32, 1, 0);
    std::cout << "rank 2: running" << std::endl;
    child->recv(&value, 1, DataType::f32, 1, 0);  // never sent: rank 0 is killed instead
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"point-to-point check"};
  std::string mode = "pipeline";
  int micro_batches = 100;
  app.add_option("--mode", mode)
      ->check(CLI::IsMember(
          {"pipeline", "anysource", "ring", "victim", "child-victim", "rendezvous-victim"}));
  app.add_option("--micro-batches", micro_batches);
  CLI11_PARSE(app, argc, argv);
  int rank = -1;
  try {
    auto ctx = ringfuse::init();
    rank = ctx->rank();
    if (mode == "pipeline") pipeline(*ctx, micro_batches);
    if (mode == "anysource") anysource(*ctx);
    if (mode == "ring") ring(*ctx);
    if (mode == "victim") victim(*ctx);
    if (mode == "child-victim") child_victim(*ctx);
    if (mode == "rendezvous-victim") rendezvous_victim(*ctx);
    ctx->barrier();
    std::cout << "rank " << rank << ": " << mode << " ok" << std::endl;
  } catch (const ringfuse::Error& e) {
    std::cerr << "ERROR " << e.what() << std::endl;
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "rank " << rank << ": " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
