// ringfuse-perf: nccl-tests-style sweeps of one collective, ours and the peers' in one run.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "flags.hpp"
#include "fusion_sweep.hpp"
#include "gloo_peer.hpp"
#include "json_output.hpp"
#include "malloc_tuning.hpp"
#include "mpi_bootstrap.hpp"
#include "mpi_peer.hpp"
#include "native_impl.hpp"
#include "nccl_peer.hpp"
#include "report.hpp"
#include "sendrecv.hpp"
#include "ringfuse/error.hpp"
#include "size_parse.hpp"
#include "split_color.hpp"
#include "sweep.hpp"
#include "table_output.hpp"

namespace ringfuse::perf {
namespace {

bool wants(const PerfOptions& o, std::string_view peer) {
  return std::find(o.peers.begin(), o.peers.end(), peer) != o.peers.end();
}

// A case an implementation cannot run is the same at every size, so one line says it.
void note_unsupported(const PerfOptions& o, const Context& ctx,
                      const std::vector<std::unique_ptr<Implementation>>& impls, RunInfo& info) {
  CaseSpec spec;
  spec.collective = o.collective;
  spec.type = o.type;
  spec.op = o.op;
  spec.root = o.root;
  spec.rank = ctx.rank();
  spec.size = ctx.size();
  spec.layout = make_layout(o.collective, o.type, sweep_sizes(o).front(), ctx.size());
  spec.device = o.device;
  for (const auto& impl : impls) {
    const std::string why = impl->unsupported(spec);
    if (!why.empty()) {
      info.notes.push_back(fmt::format("{} {}: not measured: {}", impl->name(), impl->algo(spec), why));
    }
  }
}

int run(int argc, char** argv, const PerfOptions& o) {
  RunInfo info;
  info.malloc_env = describe_malloc_env();
  // Which data plane ours used matters more than anything else in these tables (TCP loopback
  // vs shared memory), so the header says what the environment asked for.
  const char* transport = std::getenv("RINGFUSE_TRANSPORT");
  info.transport = transport != nullptr ? fmt::format("RINGFUSE_TRANSPORT={}", transport)
                                        : "RINGFUSE_TRANSPORT unset (the library's default)";
  info.transport += fmt::format("; backend {}", o.backend);
  info.command.assign(argv, argv + argc);
  auto launch = Launch::start(argc, argv, backend_override(o));
  Context& ctx = launch->context();
  if (o.device == Device::cuda) {
    info.transport += fmt::format("; buffers on GPU {} (local rank {} % visible GPUs)",
                                  select_cuda_device(ctx.local_rank()), ctx.local_rank());
  }
  info.collective = std::string(to_string(o.collective));
  info.launcher = launch->launcher();
  info.with_peers = !o.peers.empty();
  // --split: every rank measures on its child; the table (rank 0's) is that of rank 0's child.
  std::unique_ptr<Context> child;
  if (!o.split.empty()) {
    child = ctx.split(split_color(o.split, ctx.rank(), ctx.size(), ctx.world().cross_rank),
                      ctx.rank());
    info.transport += fmt::format("; measured on {} ({} of the world's {} ranks, --split {})",
                                  child->label(), child->size(), ctx.size(), o.split);
  }
  Context& measured = child ? *child : ctx;
  info.nranks = measured.size();

  // Declared after `launch`, so every implementation (Gloo's mesh, MPI calls) is gone before the
  // Context closes and MPI finalises.
  std::vector<std::unique_ptr<Implementation>> impls;
  impls.push_back(make_native(measured, o.algo));
  bool mpi_measured = false;
  if (wants(o, "mpi")) {
    if (launch->mpi_ready()) {
      impls.push_back(make_mpi_peer("mpi"));
      mpi_measured = true;
    } else {
      info.notes.push_back(fmt::format("peer mpi: unavailable: {}", launch->mpi_unavailable()));
    }
  }
  const auto peer_world = [&](std::string_view peer, std::chrono::milliseconds timeout) {
    return PeerWorld{ctx.rank(),
                     ctx.size(),
                     launch->store_host(),
                     launch->store_port(),
                     fmt::format("ringfuse-perf/{}/{}/", launch->job_id(), peer),
                     launch->job_secret(),
                     timeout};
  };
  if (wants(o, "nccl")) {
    NcclPeer nccl = make_nccl_peer(peer_world("nccl", ctx.options().op_timeout));
    if (nccl.impl) {
      impls.push_back(std::move(nccl.impl));
    } else {
      info.notes.push_back(fmt::format("peer nccl: unavailable: {}", nccl.unavailable));
    }
  }
  if (wants(o, "gloo")) {
    GlooPeers gloo = make_gloo_peers(peer_world("gloo", ctx.options().connect_timeout));
    if (gloo.impls.empty()) info.notes.push_back(fmt::format("peer gloo: unavailable: {}", gloo.unavailable));
    for (auto& impl : gloo.impls) impls.push_back(std::move(impl));
  }
  note_unsupported(o, measured, impls, info);

  std::vector<Implementation*> pass1;
  for (const auto& impl : impls) pass1.push_back(impl.get());
  std::vector<Row> rows = run_sweep(measured, o, pass1);
  // The children finish at different times; under mpirun (or torchrun) rank 0 hosts the
  // rendezvous store, which a child still measuring may need: nobody leaves before all are done.
  if (child) ctx.barrier();

  // Open MPI's best configuration: the same sweep again with glibc told to keep freed memory
  // (DESIGN.md §3). Last, because mallopt() cannot restore glibc's dynamic mmap threshold.
  if (mpi_measured && o.malloc_tuning == MallocTuning::both && !malloc_env_tuned()) {
    if (apply_tuned_mallopt()) {
      info.malloc_pass = "mpi+malloc: Open MPI measured again after mallopt(M_MMAP_MAX, 0), "
                         "mallopt(M_TRIM_THRESHOLD, INT_MAX), the in-process equivalent of "
                         "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296";
      auto tuned = make_mpi_peer("mpi+malloc");
      Implementation* pass2[] = {tuned.get()};
      auto more = run_sweep(ctx, o, pass2);
      rows.insert(rows.end(), more.begin(), more.end());
    } else {
      info.notes.push_back("mpi+malloc: glibc refused mallopt(); not measured");
    }
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return a.size < b.size; });
  compute_ratios(rows);

  if (ctx.rank() == 0) {
    print_table(std::cout, info, rows);
    std::cout.flush();
    if (!o.json_path.empty()) write_json(o.json_path, info, rows);
  }
  std::uint64_t wrong = 0;
  for (const Row& r : rows) {
    if (r.ours) wrong += r.wrong.value_or(0);  // a peer's wrong results do not fail our run
  }
  return wrong == 0 ? 0 : 3;
}

}  // namespace
}  // namespace ringfuse::perf

int main(int argc, char** argv) {
  using namespace ringfuse::perf;
  const ParsedFlags parsed = parse_flags(argc, argv);
  if (!parsed.options) return parsed.exit_code;
  const PerfOptions& options = *parsed.options;
  if (options.malloc_tuning == MallocTuning::env && !malloc_env_tuned()) {
    // Before MPI_Init and before any connection: the new image starts from scratch.
    std::cerr << "ringfuse-perf: " << reexec_with_tuned_env(argv) << "\n";
    return 1;
  }
  try {
    if (options.fusion) return run_fusion(argc, argv, options);
    if (options.sendrecv) return run_sendrecv(argc, argv, options);
    return run(argc, argv, options);
  } catch (const ringfuse::Error& e) {
    std::cerr << "ringfuse-perf: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ringfuse-perf: " << e.what() << "\n";
    return 1;
  }
}
