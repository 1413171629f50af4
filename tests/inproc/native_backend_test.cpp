// The native backend over in-process transports: that every Algorithm value (as asked for, and
// as the backend's default) runs the algorithm it names, that automatic picks what
// choose_allreduce says, and when the hierarchical and the shared-window paths take over. The
// backend's transports are real ones, wrapped to record the exchanges they are asked for; the
// algorithm that should have run is replayed directly on the same transport, recording too,
// and the two records must be equal. A wrong dispatch changes the record (the test checks that
// ring, tree and rhd records differ from each other), and every result is checked as well.
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"
#include "backend/native_backend.hpp"
#include "transport/shared_window.hpp"

namespace ringfuse::inproc {
namespace {

/// One exchange a transport was asked for.
struct Exchange {
  int send_peer;
  std::size_t send_bytes;
  int recv_peer;
  std::size_t recv_bytes;
  bool reduces;
  bool operator==(const Exchange&) const = default;
};
using Record = std::vector<Exchange>;

/// Passes every call on to a real transport (which it does not own) and records the exchange.
class RecordingTransport final : public transport::Transport {
 public:
  RecordingTransport(transport::Transport& inner, Record& record)
      : inner_(inner), record_(record) {}

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  void send_recv(int send_peer, const void* send_buf, std::size_t send_bytes, int recv_peer,
                 void* recv_buf, std::size_t recv_bytes, const RecvProgress& progress) override {
    record_.push_back({send_peer, send_bytes, recv_peer, recv_bytes, false});
    inner_.send_recv(send_peer, send_buf, send_bytes, recv_peer, recv_buf, recv_bytes, progress);
  }
  void send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes, int recv_peer,
                        void* dst, std::size_t recv_count, DataType type, ReduceOp op,
                        const Staging& staging) override {
    record_.push_back({send_peer, send_bytes, recv_peer, recv_count * element_size(type), true});
    inner_.send_recv_reduce(send_peer, send_buf, send_bytes, recv_peer, dst, recv_count, type, op,
                            staging);
  }
  transport::SharedWindow* shared_window() override { return inner_.shared_window(); }
  void set_operation(std::string label) override { inner_.set_operation(std::move(label)); }

 private:
  transport::Transport& inner_;
  Record& record_;
};

std::unique_ptr<transport::Transport> recording(transport::Transport& inner, Record& record) {
  return std::make_unique<RecordingTransport>(inner, record);
}

constexpr Algorithm kEveryAlgorithm[] = {Algorithm::automatic, Algorithm::ring, Algorithm::tree,
                                         Algorithm::rhd};
constexpr std::size_t kWindowBytes = std::size_t{4} << 20;
constexpr DataType kType = DataType::f32;
constexpr ReduceOp kOp = ReduceOp::avg;  // its division sits in a different place in each

// f32 counts on each side of choose_allreduce's thresholds in a world of 4: fewer elements than
// ranks, tree (up to 32 KiB), rhd (up to 1 MiB), ring; and two counts of at least 256 KiB.
constexpr std::size_t kCounts[] = {3, 1000, 16411, 300007};

void fill(std::byte* data, std::size_t count, int rank) {
  for (std::size_t i = 0; i < count; ++i) put(data, i, kType, input(rank, i, kType, kOp));
}

void check_result(Rank& rank, const std::byte* data, std::size_t count, const std::string& what) {
  const auto difference = first_difference(
      data, count, kType, [&](std::size_t i) { return reference(rank.size(), i, kType, kOp); });
  rank.expect(!difference, fmt::format("{}: {}", what, difference.value_or("")));
}

/// The record of `algo` run directly on `inner`, over this rank's input (the result is checked).
Record replay(Rank& rank, transport::Transport& inner, Algorithm algo, std::size_t count) {
  Record record;
  RecordingTransport transport(inner, record);
  algo::Workspace workspace;
  std::vector<std::byte> data(count * element_size(kType));
  fill(data.data(), count, rank.rank());
  const algo::ReduceBuffer buffer{data.data(), count, kType, kOp};
  switch (algo) {
    case Algorithm::ring: algo::ring_allreduce(transport, workspace, buffer); break;
    case Algorithm::tree: algo::tree_allreduce(transport, workspace, buffer); break;
    case Algorithm::rhd: algo::rhd_allreduce(transport, workspace, buffer); break;
    case Algorithm::automatic: ADD_FAILURE() << "replay needs a concrete algorithm"; break;
  }
  check_result(rank, data.data(), count, fmt::format("direct {}", to_string(algo)));
  return record;
}

/// What an all-reduce of `count` elements asked as `asked` should run on a backend whose
/// default is `fallback`: the algorithm asked for, else the default, else choose_allreduce's.
Algorithm expected_algorithm(Algorithm asked, Algorithm fallback, std::size_t count, int size) {
  if (asked != Algorithm::automatic) return asked;
  if (fallback != Algorithm::automatic) return fallback;
  return algo::choose_allreduce(count * element_size(kType), count, size);
}

class NativeBackendDispatch : public ::testing::TestWithParam<WorldParam> {};

TEST_P(NativeBackendDispatch, EveryAlgorithmRunsWhatItNames) {
  const auto world = GetParam();
  run_ranks(world.size, [&](Rank& rank) {
    auto inner = rank.connect({world.kind});
    // The records must tell the algorithms apart, or this test could not see a wrong dispatch.
    for (std::size_t count : kCounts) {
      const auto ring = replay(rank, *inner, Algorithm::ring, count);
      const auto tree = replay(rank, *inner, Algorithm::tree, count);
      const auto rhd = replay(rank, *inner, Algorithm::rhd, count);
      rank.expect(ring != tree && ring != rhd && tree != rhd,
                  fmt::format("ring, tree and rhd exchange alike for {} elements", count));
    }
    for (Algorithm fallback : kEveryAlgorithm) {
      Record record;
      backend::NativeBackend backend(recording(*inner, record), fallback);
      for (Algorithm asked : kEveryAlgorithm) {
        for (std::size_t count : kCounts) {
          const Algorithm wanted = expected_algorithm(asked, fallback, count, rank.size());
          const auto what = fmt::format("allreduce {} asked {} with default {} (expected {})",
                                        label(kType, count, kOp), to_string(asked),
                                        to_string(fallback), to_string(wanted));
          std::vector<std::byte> data(count * element_size(kType));
          fill(data.data(), count, rank.rank());
          record.clear();
          const auto executed = backend.allreduce(data.data(), count, kType, kOp, asked);
          check_result(rank, data.data(), count, what);
          rank.expect(record == replay(rank, *inner, wanted, count),
                      what + ": exchanged differently from that algorithm");
          rank.expect(executed.algorithm == to_string(wanted),
                      what + ": reported that it ran " + executed.algorithm);
        }
      }
    }
    algo::barrier(*inner);
  });
}

INSTANTIATE_TEST_SUITE_P(InProcess, NativeBackendDispatch,
                         ::testing::Values(WorldParam{4, TransportKind::tcp},
                                           WorldParam{4, TransportKind::shm},
                                           WorldParam{3, TransportKind::tcp}),
                         world_name);

// A buffer in the shared window goes through window_allreduce, which exchanges nothing through
// the transport, only when the algorithm is automatic and it is at least 256 KiB; otherwise
// the transport's algorithm runs.
TEST(NativeBackendWindow, OnlyAutomaticLargeBuffersInTheWindowUseIt) {
  run_ranks(4, [&](Rank& rank) {
    auto inner = rank.connect({TransportKind::shm, kWindowBytes});
    Record record;
    backend::NativeBackend backend(recording(*inner, record), Algorithm::automatic);
    auto* window = backend.shared_window();
    rank.expect(window != nullptr, "no shared window");
    if (window == nullptr) return;
    for (Algorithm asked : kEveryAlgorithm) {
      for (std::size_t count : {std::size_t{1000}, std::size_t{65537}, std::size_t{300007}}) {
        const std::size_t bytes = count * element_size(kType);
        std::byte* data = window->reserve(bytes);
        fill(data, count, rank.rank());
        const bool in_window = asked == Algorithm::automatic && bytes >= (std::size_t{256} << 10);
        const auto what = fmt::format("allreduce {} in the window, asked {}",
                                      label(kType, count, kOp), to_string(asked));
        record.clear();
        const auto executed = backend.allreduce(data, count, kType, kOp, asked);
        check_result(rank, data, count, what);
        const Algorithm wanted =
            expected_algorithm(asked, Algorithm::automatic, count, rank.size());
        const std::string ran = in_window ? "shared-window" : std::string(to_string(wanted));
        rank.expect(executed.algorithm == ran,
                    what + ": reported that it ran " + executed.algorithm + ", not " + ran);
        rank.expect(in_window ? record.empty() : record == replay(rank, *inner, wanted, count),
                    fmt::format("{}: exchanged differently from {}", what,
                                in_window ? "the window" : to_string(wanted)));
      }
    }
    algo::barrier(*inner);
  });
}

// With a hierarchy, all-reduces of at least min_bytes asked as automatic go hierarchical (and
// nothing through the flat transport); with min_bytes 0 every non-empty one does, whatever
// algorithm was asked for.
TEST(NativeBackendHierarchy, MinBytesAndAlgorithmDecide) {
  constexpr int kLocal = 2;
  run_ranks(4, [&](Rank& rank) {
    const int host = rank.rank() / kLocal;
    const int local_rank = rank.rank() % kLocal;
    auto flat = rank.connect({TransportKind::tcp});
    auto local =
        rank.connect(local_rank, kLocal, fmt::format("host{}", host), {TransportKind::shm});
    auto cross = rank.connect(host, 2, fmt::format("local{}", local_rank), {TransportKind::tcp});
    for (std::size_t min_bytes : {std::size_t{64} << 10, std::size_t{0}}) {
      Record record, hierarchical;
      backend::NativeBackend backend(recording(*flat, record), Algorithm::automatic);
      backend.set_hierarchy(
          {recording(*local, hierarchical), recording(*cross, hierarchical), min_bytes});
      for (Algorithm asked : kEveryAlgorithm) {
        for (std::size_t count : {std::size_t{0}, std::size_t{1000}, std::size_t{16411}}) {
          const std::size_t bytes = count * element_size(kType);
          const bool goes_hierarchical =
              count > 0 &&
              (min_bytes == 0 || (asked == Algorithm::automatic && bytes >= min_bytes));
          const auto what = fmt::format("allreduce {} asked {}, hierarchy from {} bytes",
                                        label(kType, count, kOp), to_string(asked), min_bytes);
          std::vector<std::byte> data(std::max<std::size_t>(bytes, 1));
          fill(data.data(), count, rank.rank());
          record.clear();
          hierarchical.clear();
          const auto executed = backend.allreduce(data.data(), count, kType, kOp, asked);
          check_result(rank, data.data(), count, what);
          rank.expect(goes_hierarchical == (executed.algorithm == "hierarchical"),
                      what + ": reported that it ran " + executed.algorithm);
          if (goes_hierarchical) {
            Record expected;
            RecordingTransport local_replay(*local, expected), cross_replay(*cross, expected);
            algo::Workspace workspace;
            std::vector<std::byte> copy(bytes);
            fill(copy.data(), count, rank.rank());
            algo::hierarchical_allreduce(local_replay, cross_replay, workspace,
                                         {copy.data(), count, kType, kOp});
            rank.expect(record.empty() && hierarchical == expected && !expected.empty(),
                        what + ": did not run the hierarchical all-reduce");
          } else {
            const Algorithm wanted =
                expected_algorithm(asked, Algorithm::automatic, count, rank.size());
            rank.expect(
                hierarchical.empty() &&
                    (count == 0 ? record.empty() : record == replay(rank, *flat, wanted, count)),
                fmt::format("{}: expected {} over the flat transport", what, to_string(wanted)));
          }
        }
      }
    }
    algo::barrier(*flat);
  });
}

// Which fused groups the engine may hand over in place (allreduce_pieces): over shared
// memory, every size in a world whose size is a power of two; otherwise only the sizes
// halving-doubling is chosen for anyway (the tree keeps small groups, the ring large ones);
// never with an algorithm forced, a hierarchy, or over TCP (which would gather the pieces).
TEST(NativeBackendPieces, TakesWhatHalvingDoublingWouldRunAnyway) {
  for (const int size : {3, 4}) {
    run_ranks(size, [&](Rank& rank) {
      const bool power_of_two = size == 4;
      for (Algorithm forced : kEveryAlgorithm) {
        // Deciding exchanges nothing; each backend gets a channel of its own all the same.
        backend::NativeBackend backend(
            rank.connect(rank.rank(), size, fmt::format("forced-{}", to_string(forced)),
                         {TransportKind::shm}),
            forced);
        for (std::size_t count : {std::size_t{1000}, std::size_t{65537}, std::size_t{300007}}) {
          const bool rhd_size = count == 65537;  // 4 KiB: tree, 256 KiB: rhd, 1.2 MiB: ring
          const bool want = forced == Algorithm::automatic && (power_of_two || rhd_size);
          rank.expect(backend.takes_pieces(count, kType) == want,
                      fmt::format("{} ranks, {} elements, RINGFUSE_ALGO={}: takes_pieces() "
                                  "should say {}",
                                  size, count, to_string(forced), want));
        }
      }
      backend::NativeBackend over_tcp(rank.connect(rank.rank(), size, "tcp", {TransportKind::tcp}),
                                      Algorithm::automatic);
      rank.expect(!over_tcp.takes_pieces(65537, kType), "took pieces over tcp");
      auto flat = rank.connect(rank.rank(), size, "flat", {TransportKind::shm});
      auto local = rank.connect(rank.rank(), size, "local", {TransportKind::shm});
      auto cross = rank.connect(0, 1, fmt::format("cross{}", rank.rank()), {TransportKind::tcp});
      backend::NativeBackend backend(std::move(flat), Algorithm::automatic);
      backend.set_hierarchy({std::move(local), std::move(cross), 0});
      rank.expect(!backend.takes_pieces(65537, kType), "took pieces with a hierarchy");
    });
  }
}

}  // namespace
}  // namespace ringfuse::inproc
