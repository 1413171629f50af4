// All-reduce through the shared window (ShmOptions.window_bytes > 0): each rank's buffer lies
// in its own window at the same offset, and the ranks reduce straight out of each other's.
#include <algorithm>
#include <cstring>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "allreduce_check.hpp"
#include "transport/shared_window.hpp"

namespace ringfuse::inproc {
namespace {

constexpr std::size_t kWindowBytes = std::size_t{1} << 20;
constexpr std::size_t kGuardBytes = 64;
constexpr auto kGuard = std::byte{0x5A};

/// check_allreduce() with the buffer in the window, `kGuardBytes` + a misalignment past its
/// start (the same on every rank, as window_allreduce requires), between guard bytes.
void check_in_window(Rank& rank, transport::SharedWindow& window, const AllreduceCases& cases) {
  std::size_t case_index = 0;
  for_each_case(cases, [&](DataType type, ReduceOp op, std::size_t count) {
    for (bool aligned : {true, false}) {
      const std::size_t offset = kGuardBytes + misalignment(type, aligned, 0, case_index++);
      const std::size_t bytes = count * element_size(type);
      std::byte* base = window.reserve(offset + bytes + kGuardBytes);
      std::fill(base, base + offset, kGuard);
      std::fill(base + offset + bytes, base + offset + bytes + kGuardBytes, kGuard);
      std::byte* data = base + offset;
      for (std::size_t i = 0; i < count; ++i) {
        put(data, i, type, input(rank.rank(), i, type, op, cases.seed));
      }
      algo::window_allreduce(window, offset, algo::ReduceBuffer{data, count, type, op});
      const auto what = fmt::format("{} at window offset {}", label(type, count, op), offset);
      const auto difference = first_difference(data, count, type, [&](std::size_t i) {
        return reference(rank.size(), i, type, op, cases.seed);
      });
      rank.expect(!difference, fmt::format("{}: {}", what, difference.value_or("")));
      const bool intact =
          std::all_of(base, base + offset, [](std::byte b) { return b == kGuard; }) &&
          std::all_of(data + bytes, data + bytes + kGuardBytes,
                      [](std::byte b) { return b == kGuard; });
      rank.expect(intact, what + ": wrote outside the buffer");
    }
  });
}

void check(int size, std::initializer_list<AllreduceCases> case_sets) {
  run_ranks(size, [&](Rank& rank) {
    auto transport = rank.connect({TransportKind::shm, kWindowBytes});
    auto* window = transport->shared_window();
    rank.expect(window != nullptr, "the shared-memory transport has no window");
    if (window == nullptr) return;
    for (const auto& cases : case_sets) check_in_window(rank, *window, cases);
    algo::barrier(*transport);
  });
}

class WindowEveryTypeAndOp : public ::testing::TestWithParam<int> {};

TEST_P(WindowEveryTypeAndOp, MatchesTheReference) {
  check(GetParam(), {every_type_and_op(odd_counts(GetParam(), {13, 1009})),
                     // Blocks of more than one 128 KiB piece each.
                     {{DataType::f32}, {ReduceOp::sum, ReduceOp::avg}, {100003}, 2}});
}

INSTANTIATE_TEST_SUITE_P(InProcess, WindowEveryTypeAndOp, ::testing::Values(2, 3, 5),
                         [](const auto& info) { return fmt::format("shm_np{}", info.param); });

class WindowEveryWorldSize : public ::testing::TestWithParam<int> {};

TEST_P(WindowEveryWorldSize, MatchesTheReference) {
  check(GetParam(), {{{DataType::bf16, DataType::f32, DataType::i8},
                      kEveryOp,
                      odd_counts(GetParam(), {31, 40009}),
                      1}});
}

INSTANTIATE_TEST_SUITE_P(InProcess, WindowEveryWorldSize, ::testing::Range(2, 9),
                         [](const auto& info) { return fmt::format("shm_np{}", info.param); });

}  // namespace
}  // namespace ringfuse::inproc
