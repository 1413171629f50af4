// All-reduce through the peers' private memory (algo::cross_memory_allreduce over the
// shared-memory transport's PeerMemory). The ranks are threads of one process here, so the
// kernel copies within it, through the same system calls (process_vm_readv / _writev) that
// reach another process; tests/mp runs it across processes.
#include <atomic>
#include <bit>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"

namespace ringfuse::inproc {
namespace {

using namespace std::chrono_literals;

TransportSpec with_cross_memory() {
  TransportSpec spec{TransportKind::shm};
  spec.cross_memory_min_bytes = 1;
  return spec;
}

using WithPeerMemory = std::function<void(Rank&, transport::PeerMemory&, algo::Workspace&)>;

void run_with_peer_memory(int size, const WithPeerMemory& body) {
  run_ranks(size, [&](Rank& rank) {
    auto transport = rank.connect(with_cross_memory());
    auto* memory = transport->peer_memory();
    rank.expect(memory != nullptr, "the shared-memory transport offers no peer memory");
    if (memory == nullptr) return;
    algo::Workspace workspace;
    body(rank, *memory, workspace);
    algo::barrier(*transport);  // nobody closes the transport while a peer still waits on it
  });
}

void check(int size, std::initializer_list<AllreduceCases> case_sets) {
  run_with_peer_memory(size, [&](Rank& rank, transport::PeerMemory& memory,
                                 algo::Workspace& workspace) {
    for (const auto& cases : case_sets) {
      check_allreduce(rank, cases, [&](const algo::ReduceBuffer& buffer) {
        algo::cross_memory_allreduce(memory, workspace, buffer);
      });
    }
  });
}

class CrossMemoryEveryTypeAndOp : public ::testing::TestWithParam<int> {};

TEST_P(CrossMemoryEveryTypeAndOp, MatchesTheReference) {
  check(GetParam(), {every_type_and_op(odd_counts(GetParam(), {1, 13, 1009})),
                     // Several 128 KiB pieces, the last one short.
                     {{DataType::f32}, {ReduceOp::sum, ReduceOp::avg}, {100003}, 2}});
}

INSTANTIATE_TEST_SUITE_P(InProcess, CrossMemoryEveryTypeAndOp, ::testing::Values(2, 3, 5),
                         [](const auto& info) { return fmt::format("shm_np{}", info.param); });

class CrossMemoryEveryWorldSize : public ::testing::TestWithParam<int> {};

TEST_P(CrossMemoryEveryWorldSize, MatchesTheReference) {
  check(GetParam(), {{{DataType::bf16, DataType::f32, DataType::i8},
                      kEveryOp,
                      odd_counts(GetParam(), {31, 40009, 300007}),
                      1}});
}

INSTANTIATE_TEST_SUITE_P(InProcess, CrossMemoryEveryWorldSize, ::testing::Range(2, 9),
                         [](const auto& info) { return fmt::format("shm_np{}", info.param); });

// Whichever rank claims a piece, it adds the ranks' copies in rank order: every rank gets the
// same bits, and the same as ((x0 + x1) + x2) + x3, with values whose sum depends on the order.
TEST(CrossMemory, EveryRankGetsTheSumInRankOrderBitForBit) {
  constexpr int kRanks = 4;
  constexpr std::size_t kCount = 300007;  // ten pieces
  const auto value = [](int rank, std::size_t i) {
    return static_cast<float>((i * 2654435761u + static_cast<std::size_t>(rank) * 40503u) %
                              1000003) /
           (7.0f + static_cast<float>(rank));
  };
  run_with_peer_memory(kRanks, [&](Rank& rank, transport::PeerMemory& memory,
                                   algo::Workspace& workspace) {
    std::vector<float> data(kCount);
    for (int round = 0; round < 8; ++round) {
      for (std::size_t i = 0; i < kCount; ++i) data[i] = value(rank.rank(), i);
      algo::cross_memory_allreduce(
          memory, workspace,
          algo::ReduceBuffer{reinterpret_cast<std::byte*>(data.data()), kCount, DataType::f32,
                             ReduceOp::sum});
      std::size_t wrong = 0;
      std::size_t first = 0;
      for (std::size_t i = 0; i < kCount; ++i) {
        float expected = value(0, i);
        for (int owner = 1; owner < kRanks; ++owner) expected += value(owner, i);
        if (std::bit_cast<std::uint32_t>(data[i]) != std::bit_cast<std::uint32_t>(expected)) {
          if (wrong++ == 0) first = i;
        }
      }
      rank.expect(wrong == 0, fmt::format("round {}: {} elements are not the sum in rank order, "
                                          "the first at {}",
                                          round, wrong, first));
    }
  });
}

// A rank that does not run (here: waits) holds nobody up: the others claim and finish every
// piece, writing its result into its buffer, and it finds nothing left to claim.
TEST(CrossMemory, TheRanksThatRunDoEveryPiece) {
  constexpr int kRanks = 4;
  constexpr int kLate = 3;
  constexpr std::size_t kCount = 100003;
  std::atomic<int> done{0};
  run_with_peer_memory(kRanks, [&](Rank& rank, transport::PeerMemory& memory,
                                   algo::Workspace& workspace) {
    std::vector<std::int32_t> data(kCount);
    for (std::size_t i = 0; i < kCount; ++i) {
      data[i] = static_cast<std::int32_t>(i) * (rank.rank() + 1);
    }
    auto* bytes = reinterpret_cast<std::byte*>(data.data());
    if (rank.rank() != kLate) {
      algo::cross_memory_allreduce(
          memory, workspace, algo::ReduceBuffer{bytes, kCount, DataType::i32, ReduceOp::sum});
      done.fetch_add(1);
    } else {
      memory.open(bytes, kCount * sizeof(std::int32_t),
                  algo::cross_memory_pieces(kCount, DataType::i32));
      const auto deadline = std::chrono::steady_clock::now() + 30s;
      while (done.load() < kRanks - 1 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
      }
      rank.expect(done.load() == kRanks - 1, "the other ranks did not finish without this one");
      rank.expect(!memory.claim().has_value(), "a piece was left for the late rank");
      memory.close();
    }
    const std::int32_t factor = kRanks * (kRanks + 1) / 2;
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < kCount; ++i) {
      wrong += data[i] != static_cast<std::int32_t>(i) * factor ? 1 : 0;
    }
    rank.expect(wrong == 0, fmt::format("rank {}: {} elements wrong", rank.rank(), wrong));
  });
}

// Ranks that were given different thresholds all take the largest: every rank must choose
// the same algorithm for every size.
TEST(CrossMemory, TheRanksAgreeOnTheLargestThreshold) {
  run_ranks(3, [&](Rank& rank) {
    TransportSpec spec{TransportKind::shm};
    spec.cross_memory_min_bytes = std::size_t{1} << (20 + rank.rank());  // 1, 2, 4 MiB
    auto transport = rank.connect(spec);
    auto* memory = transport->peer_memory();
    rank.expect(memory != nullptr && memory->min_bytes() == std::size_t{4} << 20,
                fmt::format("rank {}: threshold {}", rank.rank(),
                            memory != nullptr ? memory->min_bytes() : 0));
    algo::barrier(*transport);
  });
}

// With ShmOptions::cross_memory_min_bytes 0 the transport offers nothing
// (RINGFUSE_CROSS_MEMORY_MIN=off).
TEST(CrossMemory, NotOfferedUnlessAskedFor) {
  run_ranks(2, [&](Rank& rank) {
    auto transport = rank.connect({TransportKind::shm});
    rank.expect(transport->peer_memory() == nullptr, "peer memory offered though not asked for");
    algo::barrier(*transport);
  });
}

}  // namespace
}  // namespace ringfuse::inproc
