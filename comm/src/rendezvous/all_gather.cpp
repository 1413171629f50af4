#include "rendezvous/all_gather.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "ringfuse/error.hpp"

namespace ringfuse::rendezvous {

std::vector<std::string> all_gather(Store& store, const std::string& key, std::string_view value,
                                    int rank, int size, std::chrono::milliseconds timeout) {
  return gather_first(store, key, value, rank, size, timeout);
}

std::vector<std::string> gather_first(Store& store, const std::string& key,
                                      std::string_view value, int rank, int count,
                                      std::chrono::milliseconds timeout,
                                      const WhileWaiting& while_waiting) {
  const auto key_of = [&](int r) { return fmt::format("{}/{}", key, r); };
  store.set(key_of(rank), value);
  std::vector<std::string> keys;
  keys.reserve(static_cast<std::size_t>(count));
  for (int r = 0; r < count; ++r) keys.push_back(key_of(r));
  if (keys.empty()) return {};
  // One wait for all keys, so a timeout names every missing rank rather than the first.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (!while_waiting.check) {
    store.wait(keys, timeout);
  } else {
    for (;;) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      try {
        store.wait(keys, std::clamp(left, std::chrono::milliseconds(1), while_waiting.every));
        break;
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::timeout || left <= while_waiting.every) throw;
      }
      while_waiting.check();
    }
  }
  std::vector<std::string> values;
  values.reserve(keys.size());
  for (int r = 0; r < count; ++r) {
    if (r == rank) {
      values.emplace_back(value);
      continue;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    values.push_back(store.get(keys[static_cast<std::size_t>(r)],
                               std::max(left, std::chrono::milliseconds(1))));
  }
  return values;
}

std::string broadcast(Store& store, const std::string& key, std::string_view value, int rank,
                      int root, std::chrono::milliseconds timeout) {
  if (rank == root) {
    store.set(key, value);
    return std::string(value);
  }
  return store.get(key, timeout);
}

}  // namespace ringfuse::rendezvous
