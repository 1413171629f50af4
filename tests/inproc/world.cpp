#include "world.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "subprocess.hpp"
#include "transport/self_transport.hpp"
#include "transport/shm_transport.hpp"
#include "transport/tcp_mesh.hpp"

namespace ringfuse::inproc {
namespace {

using namespace std::chrono_literals;

// Far above a healthy collective here (milliseconds), short enough that a lost message fails
// the test long before CTest's timeout.
constexpr auto kConnectTimeout = 30s;
constexpr auto kOperationTimeout = 30s;
// Small rings, so that ordinary test sizes wrap around them many times.
constexpr std::size_t kRingBytes = std::size_t{64} << 10;
constexpr std::size_t kMismatchesKept = 10;

}  // namespace

std::unique_ptr<transport::Transport> connect_transport(int rank, int size,
                                                        rendezvous::Store& store,
                                                        const std::string& key_prefix,
                                                        const TransportSpec& spec) {
  if (size == 1) return std::make_unique<transport::SelfTransport>();
  transport::MeshOptions mesh;
  mesh.advertise_host = "127.0.0.1";
  mesh.job_id = key_prefix;
  mesh.key_prefix = key_prefix;
  mesh.connect_timeout = kConnectTimeout;
  mesh.op_timeout = kOperationTimeout;
  mesh.streams = spec.streams;
  mesh.peer_wait = spec.peer_wait;
  mesh.large_waits_sleep = spec.large_waits_sleep;
  if (spec.kind == TransportKind::shm) {
    transport::ShmOptions shm{mesh};
    shm.ring_bytes = kRingBytes;
    shm.window_bytes = spec.window_bytes;
    shm.cross_memory_min_bytes = spec.cross_memory_min_bytes;
    return std::make_unique<transport::ShmTransport>(rank, size, store, shm);
  }
  return std::make_unique<transport::TcpMesh>(rank, size, store, mesh);
}

std::unique_ptr<transport::Transport> Rank::connect(int rank, int size, const std::string& channel,
                                                    const TransportSpec& spec) {
  return connect_transport(rank, size, store_, key_prefix_ + channel + "/", spec);
}

void Rank::expect(bool ok, const std::string& what) {
  ++checks_;
  if (ok) return;
  if (++mismatch_count_ <= static_cast<int>(kMismatchesKept)) mismatches_.push_back(what);
}

void run_ranks(int size, const std::function<void(Rank&)>& body, std::chrono::seconds deadline) {
  static std::atomic<int> runs{0};
  // "ringfuse/" first: the shared-memory segment names leave it out (shm_transport.cpp).
  const std::string prefix = fmt::format("ringfuse/inproc-{}-{}/", ::getpid(), runs++);
  rendezvous::MemoryStore store(prefix);

  struct Outcome {
    std::optional<std::string> error;  // what the rank threw
  };
  std::vector<Rank> ranks;
  ranks.reserve(static_cast<std::size_t>(size));
  for (int r = 0; r < size; ++r) ranks.emplace_back(r, size, store, prefix);
  std::vector<std::future<Outcome>> outcomes;
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    std::promise<Outcome> promise;
    outcomes.push_back(promise.get_future());
    threads.emplace_back([&body, &rank = ranks[r], promise = std::move(promise)]() mutable {
      Outcome outcome;
      try {
        body(rank);
      } catch (const std::exception& e) {
        outcome.error = e.what();
      } catch (...) {
        outcome.error = "an exception that is not a std::exception";
      }
      promise.set_value(std::move(outcome));
    });
  }

  const auto until =
      std::chrono::steady_clock::now() + deadline * ringfuse::testing::timeout_scale();
  std::vector<int> unfinished;
  for (int r = 0; r < size; ++r) {
    if (outcomes[r].wait_until(until) != std::future_status::ready) unfinished.push_back(r);
  }
  if (!unfinished.empty()) {
    std::fprintf(stderr, "FATAL: %s: ranks %s of %d did not finish within %lld s; exiting\n",
                 prefix.c_str(), fmt::format("{}", fmt::join(unfinished, ", ")).c_str(), size,
                 static_cast<long long>(deadline.count()));
    std::fflush(stderr);
    std::_Exit(1);
  }
  for (auto& thread : threads) thread.join();

  for (int r = 0; r < size; ++r) {
    const auto outcome = outcomes[r].get();
    const Rank& rank = ranks[r];
    if (outcome.error)
      ADD_FAILURE() << "rank " << r << " of " << size << " threw: " << *outcome.error;
    for (const auto& what : rank.mismatches())
      ADD_FAILURE() << "rank " << r << ": MISMATCH " << what;
    if (rank.mismatch_count() > static_cast<int>(rank.mismatches().size())) {
      ADD_FAILURE() << "rank " << r << ": and "
                    << rank.mismatch_count() - static_cast<int>(rank.mismatches().size())
                    << " more mismatches";
    }
    if (!outcome.error && rank.checks() == 0) ADD_FAILURE() << "rank " << r << " checked nothing";
  }
}

}  // namespace ringfuse::inproc
