// agree_on_collective(): Gloo's blocking collectives plus the engine's mismatch diagnosis, for
// callers that cannot afford the engine's negotiation round per collective. The common case
// (every rank agrees) costs one all-reduce of {h, -h}: its MAX is {h, -h} again exactly when
// every rank's hash is h, since max(-h) = -min(h). Only a disagreement pays for the allgather
// of what each rank called, so the message can name the ranks. agree_and_allreduce() checks
// with frames instead, in a world of two: each rank's hash and up to 4 KiB of a small
// all-reduce's elements in one allgather, so the check and that all-reduce are one exchange.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/errors.hpp"
#include "engine/rank_set.hpp"  // describe_ranks(): the engine's wording for ranks
#include "reduce/reduce.hpp"
#include "ringfuse/context.hpp"

namespace ringfuse {
namespace {

// Each rank's call in the mismatch's allgather: name, then signature, NUL-padded.
constexpr std::size_t kNameBytes = 64;
constexpr std::size_t kSlotBytes = 256;
using Slot = std::array<char, kSlotBytes>;

// FNV-1a: a hash every rank computes alike (std::hash need not agree between builds).
std::uint64_t fnv1a(std::uint64_t hash, std::string_view text) {
  for (const unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

/// Non-negative, so that its negation is an int64 too.
std::int64_t hash_of(const CollectiveCall& call) {
  std::uint64_t hash = fnv1a(14695981039346656037ULL, call.name);
  hash = fnv1a(hash, std::string_view("\0", 1));  // "ab"+"c" and "a"+"bc" differ
  hash = fnv1a(hash, call.signature);
  return static_cast<std::int64_t>(hash >> 1);
}

void put(std::string_view text, char* at, std::size_t capacity) {
  if (text.size() >= capacity) {  // cut, and say so; the hash compared the whole text
    std::memcpy(at, text.data(), capacity - 4);
    std::memcpy(at + capacity - 4, "...", 3);
    return;
  }
  std::memcpy(at, text.data(), text.size());
}

Slot encode(const CollectiveCall& call) {
  Slot slot{};
  put(call.name, slot.data(), kNameBytes);
  put(call.signature, slot.data() + kNameBytes, kSlotBytes - kNameBytes);
  return slot;
}

std::pair<std::string, std::string> decode(const char* slot) {
  return {std::string(slot, strnlen(slot, kNameBytes)),
          std::string(slot + kNameBytes, strnlen(slot + kNameBytes, kSlotBytes - kNameBytes))};
}

/// The check's own collectives failed (a peer gone, or one that never calls it): the error
/// again, saying which of the caller's collectives was being checked, since the caller's user
/// called that one, not the check's all-reduce.
Error while_checking(const Error& failure, const CollectiveCall& call, std::string_view where,
                     int rank) {
  std::string cause = failure.what();
  const auto prefix = fmt::format("rank {}: ", rank);
  if (cause.starts_with(prefix)) cause.erase(0, prefix.size());
  Error named = core::error_at(failure.kind(), rank, failure.peer(),
                               "{}: collective '{}' {}: while checking that every rank calls "
                               "it: {}",
                               where, call.name, call.signature, cause);
  named.in_collective(failure.sequence(), failure.backend());
  return named;
}

/// Runs `step` (one of the check's own collectives), naming the checked call if it fails.
template <class Step>
void checking(Context& context, const CollectiveCall& call, std::string_view where,
              const Step& step) {
  try {
    step();
  } catch (const Error& failure) {
    throw while_checking(failure, call, where, context.global_rank(context.rank()));
  }
}

/// Once the ranks know that they disagree: every rank allgathers what it called and throws the
/// same error naming which ranks called what.
[[noreturn]] void report_mismatch(Context& context, const CollectiveCall& call,
                                  std::string_view where) {
  const Slot own = encode(call);
  std::vector<char> all(kSlotBytes * static_cast<std::size_t>(context.size()));
  checking(context, call, where,
           [&] { context.allgather(own.data(), all.data(), kSlotBytes, DataType::u8); });
  // Group the ranks by what they called, in order of first appearance.
  std::vector<std::pair<std::pair<std::string, std::string>, std::vector<int>>> groups;
  for (int rank = 0; rank < context.size(); ++rank) {
    auto called = decode(all.data() + kSlotBytes * static_cast<std::size_t>(rank));
    auto group = std::find_if(groups.begin(), groups.end(),
                              [&](const auto& g) { return g.first == called; });
    if (group == groups.end()) {
      groups.push_back({std::move(called), {context.global_rank(rank)}});
    } else {
      group->second.push_back(context.global_rank(rank));
    }
  }
  const std::string& first_name = groups.front().first.first;
  const bool names_differ = std::any_of(groups.begin(), groups.end(), [&](const auto& g) {
    return g.first.first != first_name;
  });
  std::vector<std::string> parts;
  for (const auto& [called, ranks] : groups) {
    parts.push_back(names_differ
                        ? fmt::format("{}: '{}' {}", engine::describe_ranks(ranks), called.first,
                                      called.second)
                        : fmt::format("{}: {}", engine::describe_ranks(ranks), called.second));
  }
  // Calls that differ only past what a slot holds read alike here; say so.
  const char* cut = groups.size() == 1 ? " (they differ past what this message shows)" : "";
  throw core::rank_error(
      ErrorKind::invalid_argument, context.global_rank(context.rank()),
      "{}: collective{} does not match across ranks: {}{}; every rank must call the same "
      "collectives in the same order, with the same sizes, dtypes, operators and roots",
      where, names_differ ? std::string() : fmt::format(" '{}'", first_name),
      fmt::join(parts, "; "), cut);
}

// agree_and_allreduce()'s frame: the call's hash, the payload's bytes, then the payload.
constexpr std::size_t kFrameHeaderBytes = 16;
constexpr std::size_t kFrameBytes = kFrameHeaderBytes + kCheckCarriesBytes;
// Frames are allgathered: one exchange in a world of two, as the check's all-reduce. In larger
// worlds the ring's size - 1 steps of 4 KiB would cost more than the all-reduce's few of 16
// bytes (not measured: kept out).
constexpr int kFramedWorldSize = 2;

bool carries(const SmallAllreduce* allreduce) {
  return allreduce != nullptr && is_defined(allreduce->type, allreduce->op) &&
         allreduce->count * element_size(allreduce->type) <= kCheckCarriesBytes &&
         (allreduce->count == 0 || allreduce->data != nullptr);
}

}  // namespace

void agree_on_collective(Context& context, const CollectiveCall& call, std::string_view where) {
  // A world of one has no peer to disagree with: its check would be an all-reduce with itself.
  if (context.size() == 1) return;
  const std::int64_t hash = hash_of(call);
  std::array<std::int64_t, 2> seen{hash, -hash};
  checking(context, call, where, [&] {
    context.allreduce(seen.data(), seen.size(), DataType::i64, ReduceOp::max);
  });
  if (seen[0] == hash && seen[1] == -hash) return;
  report_mismatch(context, call, where);
}

bool agree_and_allreduce(Context& context, const CollectiveCall& call, std::string_view where,
                         const SmallAllreduce* allreduce) {
  const bool carry = carries(allreduce);
  // One rank's reduction is its own elements (avg divides by 1).
  if (context.size() == 1) return carry;
  if (context.size() != kFramedWorldSize) {
    agree_on_collective(context, call, where);
    return false;
  }
  const auto size = static_cast<std::size_t>(context.size());
  const std::uint64_t bytes = carry ? allreduce->count * element_size(allreduce->type) : 0;
  // Every rank's frame, this rank's written in its place (the allgather then copies nothing of
  // its own); kept per thread, so a steady loop allocates nothing. Bytes past a frame's payload
  // are whatever the last call left there (this process's own).
  thread_local std::vector<std::byte> frames;
  frames.resize(kFrameBytes * size);
  std::byte* own = frames.data() + kFrameBytes * static_cast<std::size_t>(context.rank());
  const std::int64_t hash = hash_of(call);
  std::memcpy(own, &hash, sizeof hash);
  std::memcpy(own + sizeof hash, &bytes, sizeof bytes);
  if (bytes > 0) std::memcpy(own + kFrameHeaderBytes, allreduce->data, bytes);
  // allgatherv with fixed counts: allgather() would build the counts for every call.
  static constexpr std::array<std::size_t, kFramedWorldSize> counts{kFrameBytes, kFrameBytes};
  checking(context, call, where, [&] {
    context.allgatherv(own, frames.data(), counts, DataType::u8);
  });
  const std::array<std::uint64_t, 2> header{static_cast<std::uint64_t>(hash), bytes};
  for (std::size_t rank = 0; rank < size; ++rank) {
    if (std::memcmp(frames.data() + kFrameBytes * rank, header.data(), kFrameHeaderBytes) != 0) {
      report_mismatch(context, call, where);  // every rank saw every frame: all come here
    }
  }
  if (!carry) return false;
  // In rank order on every rank, so every rank holds the same bits.
  const auto payload = [&](std::size_t rank) {
    return frames.data() + kFrameBytes * rank + kFrameHeaderBytes;
  };
  if (bytes > 0) {
    reduce::reduce(allreduce->data, payload(0), payload(1), allreduce->count, allreduce->type,
                   allreduce->op);
    for (std::size_t rank = 2; rank < size; ++rank) {
      reduce::reduce_into(allreduce->data, payload(rank), allreduce->count, allreduce->type,
                          allreduce->op);
    }
    if (allreduce->op == ReduceOp::avg) {
      reduce::divide(allreduce->data, allreduce->count, allreduce->type, size);
    }
  }
  return true;
}

}  // namespace ringfuse
