#include "context/stall_chain.hpp"

#include <algorithm>
#include <charconv>
#include <vector>

#include <fmt/format.h>

#include "ringfuse/error.hpp"

namespace ringfuse::context {
namespace {

using Clock = std::chrono::steady_clock;

std::string wait_key(const std::string& scope, int rank) {
  return fmt::format("{}stall/{}", scope, rank);
}

std::optional<int> as_rank(const std::string& text) {
  int rank = -1;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), rank);
  if (error != std::errc{} || end != text.data() + text.size() || rank < 0) return std::nullopt;
  return rank;
}

// "rank 2 waits for rank 0, which waits for rank 1"
std::string chain_text(const std::vector<int>& chain) {
  std::string text = fmt::format("rank {} waits for rank {}", chain[0], chain[1]);
  for (std::size_t i = 2; i < chain.size(); ++i) {
    text += fmt::format(", which waits for rank {}", chain[i]);
  }
  return text;
}

}  // namespace

std::optional<std::string> explain_stall(rendezvous::Store& store, const std::string& scope, int me,
                                         int waited_for, std::uint64_t sequence,
                                         std::chrono::milliseconds patience) {
  try {
    // A first question that cannot wait: when the store is as unreachable as the peer (a cut
    // link), its client learns so within its reply margin here, and fails the rest at once.
    try {
      (void)store.get(wait_key(scope, waited_for), std::chrono::milliseconds(0));
    } catch (const Error& error) {
      if (error.kind() != ErrorKind::timeout) return std::nullopt;  // not merely absent
    }
    store.set(wait_key(scope, me), std::to_string(waited_for));
    const auto deadline = Clock::now() + patience;
    std::vector<int> chain{me, waited_for};
    while (true) {
      const int last = chain.back();
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      std::optional<int> next;
      try {
        next = as_rank(store.get(wait_key(scope, last), std::max(left, std::chrono::milliseconds(0))));
      } catch (const std::exception&) {
        // No report from `last` in time: it is not waiting in this collective, or it reached
        // it much later than this rank; the words say what was seen, not more.
        const auto seconds = std::chrono::duration<double>(patience).count();
        if (chain.size() == 2) {
          return fmt::format("Rank {} has not timed out waiting for another rank in "
                             "collective #{} (in the {:g} s after this rank did): it probably "
                             "stopped there (stalled, or calling another collective).",
                             last, sequence, seconds);
        }
        return fmt::format("Following the ranks' own timeouts in collective #{}: {}, and rank {} "
                           "has not timed out waiting for another rank (in the {:g} s after "
                           "this rank did): rank {} probably stopped there (stalled, or calling "
                           "another collective).",
                           sequence, chain_text(chain), last, seconds, last);
      }
      if (!next) return std::nullopt;
      if (std::find(chain.begin(), chain.end(), *next) != chain.end()) {
        chain.push_back(*next);
        return fmt::format("In collective #{}, {}: these ranks wait for each other, so none of "
                           "them stopped alone: they are not making the same collective calls in "
                           "the same order.",
                           sequence, chain_text(chain));
      }
      chain.push_back(*next);
    }
  } catch (const std::exception&) {
    return std::nullopt;  // the store is gone too: the timeout's own words must do
  }
}

}  // namespace ringfuse::context
