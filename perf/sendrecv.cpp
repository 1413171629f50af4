#include "sendrecv.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#ifdef RINGFUSE_PERF_HAVE_MPI
#include <mpi.h>
#endif

#include "mpi_bootstrap.hpp"
#include "ringfuse/error.hpp"
#include "size_parse.hpp"
#include "stats.hpp"
#include "sweep.hpp"

namespace ringfuse::perf {
namespace {

using Clock = std::chrono::steady_clock;

/// Up to 64 messages in flight (osu_bw's window), at most 256 MiB of them per iteration (all
/// of one buffer, as osu_bw sends it), so a row of large messages takes seconds, not minutes.
int window_for(std::uint64_t bytes) {
  const std::uint64_t cap = (std::uint64_t{256} << 20) / std::max<std::uint64_t>(bytes, 1);
  return static_cast<int>(std::clamp<std::uint64_t>(cap, 1, 64));
}

/// One side of the measurement: ours or Open MPI's blocking send/receive of bytes.
struct PointToPoint {
  std::string name;
  std::function<void(const void*, std::size_t, int)> send;
  std::function<void(void*, std::size_t, int)> recv;
  /// `count` sends of the same buffer in flight at once.
  std::function<void(const void*, std::size_t, int, int)> send_window;
  std::function<void(void*, std::size_t, int, int)> recv_window;
};

PointToPoint ours(Context& ctx) {
  PointToPoint p{"ringfuse", {}, {}, {}, {}};
  p.send = [&ctx](const void* data, std::size_t bytes, int peer) {
    ctx.send(data, bytes, DataType::u8, peer, 0);
  };
  p.recv = [&ctx](void* data, std::size_t bytes, int peer) {
    ctx.recv(data, bytes, DataType::u8, peer, 0);
  };
  p.send_window = [&ctx](const void* data, std::size_t bytes, int peer, int count) {
    std::vector<P2POp> ops(static_cast<std::size_t>(count),
                           P2POp{P2POp::Kind::send, const_cast<void*>(data), bytes, DataType::u8,
                                 peer, 1});
    ctx.send_recv_group(ops);
  };
  p.recv_window = [&ctx](void* data, std::size_t bytes, int peer, int count) {
    std::vector<P2POp> ops(static_cast<std::size_t>(count),
                           P2POp{P2POp::Kind::recv, data, bytes, DataType::u8, peer, 1});
    ctx.send_recv_group(ops);
  };
  return p;
}

#ifdef RINGFUSE_PERF_HAVE_MPI
PointToPoint open_mpi() {
  PointToPoint p{"mpi", {}, {}, {}, {}};
  p.send = [](const void* data, std::size_t bytes, int peer) {
    MPI_Send(data, static_cast<int>(bytes), MPI_BYTE, peer, 0, MPI_COMM_WORLD);
  };
  p.recv = [](void* data, std::size_t bytes, int peer) {
    MPI_Recv(data, static_cast<int>(bytes), MPI_BYTE, peer, 0, MPI_COMM_WORLD,
             MPI_STATUS_IGNORE);
  };
  p.send_window = [](const void* data, std::size_t bytes, int peer, int count) {
    std::vector<MPI_Request> requests(static_cast<std::size_t>(count));
    for (auto& r : requests) {
      MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, peer, 1, MPI_COMM_WORLD, &r);
    }
    MPI_Waitall(count, requests.data(), MPI_STATUSES_IGNORE);
  };
  p.recv_window = [](void* data, std::size_t bytes, int peer, int count) {
    std::vector<MPI_Request> requests(static_cast<std::size_t>(count));
    for (auto& r : requests) {
      MPI_Irecv(data, static_cast<int>(bytes), MPI_BYTE, peer, 1, MPI_COMM_WORLD, &r);
    }
    MPI_Waitall(count, requests.data(), MPI_STATUSES_IGNORE);
  };
  return p;
}
#endif

struct SendRecvRow {
  std::uint64_t bytes = 0;
  std::string impl;
  int window = 1;
  double latency_us = 0;  // half a round trip, median
  double bandwidth_gbps = 0;  // window bytes / median window time, GB/s (1e9)
  std::uint64_t wrong = 0;
  std::optional<double> latency_vs_mpi;    // ours / Open MPI's (lower is better)
  std::optional<double> bandwidth_vs_mpi;  // ours / Open MPI's (higher is better)
};

std::byte pattern(std::uint64_t bytes, std::size_t i) {
  return static_cast<std::byte>((i * 131 + bytes) & 0xff);
}

SendRecvRow measure(Context& ctx, PointToPoint& p, std::uint64_t bytes, const PerfOptions& o,
                    std::vector<std::byte>& out, std::vector<std::byte>& in) {
  const int rank = ctx.rank();
  const int peer = 1 - rank;
  const bool active = rank < 2;
  SendRecvRow row;
  row.bytes = bytes;
  row.impl = p.name;
  row.window = window_for(bytes);
  std::vector<double> round_trips, windows;
  std::byte ack{};
  ctx.barrier();
  for (int i = 0; active && i < o.warmup + o.iters; ++i) {
    const auto start = Clock::now();
    if (rank == 0) {
      p.send(out.data(), bytes, peer);
      p.recv(in.data(), bytes, peer);
    } else {
      p.recv(in.data(), bytes, peer);
      p.send(out.data(), bytes, peer);
    }
    if (i >= o.warmup) round_trips.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  if (o.check && active && bytes > 0) {
    for (std::size_t i = 0; i < bytes; ++i) row.wrong += in[i] != pattern(bytes, i) ? 1 : 0;
  }
  ctx.barrier();
  for (int i = 0; active && i < o.warmup + o.iters; ++i) {
    const auto start = Clock::now();
    if (rank == 0) {
      p.send_window(out.data(), bytes, peer, row.window);
      p.recv(&ack, 1, peer);
    } else {
      p.recv_window(in.data(), bytes, peer, row.window);
      p.send(&ack, 1, peer);
    }
    if (i >= o.warmup) windows.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  if (active) {
    row.latency_us = median(round_trips) * 1e6 / 2;
    row.bandwidth_gbps =
        static_cast<double>(bytes) * row.window / median(windows) / 1e9;
  }
  row.wrong = sum_across_ranks(ctx, row.wrong);
  return row;
}

void print(std::ostream& os, const std::vector<SendRecvRow>& rows, const std::string& header) {
  os << header;
  os << fmt::format("#{:>11} {:>9} {:>7} {:>10} {:>11} {:>7} {:>12} {:>12}\n", "size", "impl",
                    "window", "lat_us", "bw_GBps", "wrong", "lat_vs_mpi", "bw_vs_mpi");
  for (const auto& r : rows) {
    os << fmt::format(" {:>11} {:>9} {:>7} {:>10.2f} {:>11.3f} {:>7} {:>12} {:>12}\n",
                      format_size(r.bytes), r.impl, r.window, r.latency_us, r.bandwidth_gbps,
                      r.wrong,
                      r.latency_vs_mpi ? fmt::format("{:.2f}", *r.latency_vs_mpi) : "-",
                      r.bandwidth_vs_mpi ? fmt::format("{:.2f}", *r.bandwidth_vs_mpi) : "-");
  }
}

}  // namespace

int run_sendrecv(int argc, char** argv, const PerfOptions& o) {
  std::vector<std::string> command(argv, argv + argc);
  auto launch = Launch::start(argc, argv, std::nullopt);
  Context& ctx = launch->context();
  if (ctx.size() < 2) {
    throw Error(ErrorKind::invalid_config,
                "sendrecv measures ranks 0 and 1: launch at least 2 ranks (-np 2)");
  }
  std::vector<PointToPoint> impls{ours(ctx)};
  std::vector<std::string> notes;
  const bool want_mpi = std::find(o.peers.begin(), o.peers.end(), "mpi") != o.peers.end();
  if (want_mpi) {
#ifdef RINGFUSE_PERF_HAVE_MPI
    if (launch->mpi_ready()) {
      impls.push_back(open_mpi());
    } else {
      notes.push_back(fmt::format("peer mpi: unavailable: {}", launch->mpi_unavailable()));
    }
#else
    notes.push_back("peer mpi: unavailable: built without Open MPI");
#endif
  }
  std::vector<SendRecvRow> rows;
  for (const std::uint64_t bytes : sweep_sizes(o)) {
    std::vector<std::byte> out(bytes), in(bytes);
    for (std::size_t i = 0; i < bytes; ++i) out[i] = pattern(bytes, i);
    std::optional<std::size_t> mpi_row;
    const std::size_t first = rows.size();
    for (auto& impl : impls) {
      std::fill(in.begin(), in.end(), std::byte{0});
      rows.push_back(measure(ctx, impl, bytes, o, out, in));
      if (impl.name == "mpi") mpi_row = rows.size() - 1;
    }
    if (mpi_row) {
      auto& mine = rows[first];
      mine.latency_vs_mpi = mine.latency_us / rows[*mpi_row].latency_us;
      mine.bandwidth_vs_mpi = mine.bandwidth_gbps / rows[*mpi_row].bandwidth_gbps;
    }
  }
  std::uint64_t wrong = 0;
  for (const auto& r : rows) wrong += r.impl == "ringfuse" ? r.wrong : 0;
  if (ctx.rank() == 0) {
    const char* transport = std::getenv("RINGFUSE_TRANSPORT");
    std::string header = fmt::format(
        "# ringfuse-perf sendrecv: {} ranks under {} (ranks 0 and 1 measure); {}\n"
        "# latency = half the round trip of a ping-pong; bandwidth = a window of back-to-back "
        "sends, then a 1-byte ack; median of {} iterations after {} warm-up\n",
        ctx.size(), launch->launcher(),
        transport ? fmt::format("RINGFUSE_TRANSPORT={}", transport)
                  : std::string("RINGFUSE_TRANSPORT unset (the library's default)"),
        o.iters, o.warmup);
    for (const auto& note : notes) header += "# " + note + "\n";
    print(std::cout, rows, header);
    std::cout.flush();
    if (!o.json_path.empty()) {
      nlohmann::json doc;
      doc["benchmark"] = "sendrecv";
      doc["ranks"] = ctx.size();
      doc["launcher"] = launch->launcher();
      doc["command"] = command;
      doc["notes"] = notes;
      for (const auto& r : rows) {
        nlohmann::json row{{"bytes", r.bytes}, {"impl", r.impl}, {"window", r.window},
                           {"latency_us", r.latency_us}, {"bandwidth_GBps", r.bandwidth_gbps},
                           {"wrong", r.wrong}};
        if (r.latency_vs_mpi) row["latency_vs_mpi"] = *r.latency_vs_mpi;
        if (r.bandwidth_vs_mpi) row["bandwidth_vs_mpi"] = *r.bandwidth_vs_mpi;
        doc["rows"].push_back(row);
      }
      std::ofstream(o.json_path) << doc.dump(2) << "\n";
    }
  }
  return wrong == 0 ? 0 : 3;
}

}  // namespace ringfuse::perf
