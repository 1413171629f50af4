#include "transport/group_gather.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/errors.hpp"
#include "rendezvous/all_gather.hpp"
#include "ringfuse/error.hpp"
#include "transport/ended_peers.hpp"

namespace ringfuse::transport {
namespace {

// The positions (other than `position`) among the first `count` that have not published
// `key`: one store round trip each.
std::vector<int> not_published(rendezvous::Store& store, const std::string& key, int position,
                               int count) {
  std::vector<int> absent;
  for (int peer = 0; peer < count; ++peer) {
    if (peer != position && !store.check({fmt::format("{}/{}", key, peer)})) {
      absent.push_back(peer);
    }
  }
  return absent;
}

}  // namespace

std::vector<std::string> gather_first_in_group(rendezvous::Store& store, const std::string& key,
                                               std::string_view value, int position, int count,
                                               std::chrono::milliseconds timeout,
                                               const GlobalRanks& global, std::string_view what,
                                               const std::string& closes_prefix) {
  try {
    return rendezvous::gather_first(
        store, key, value, position, count, timeout,
        {.check = [&] {
          give_up_on_ended_peers(
              store, global, position, [&] { return not_published(store, key, position, count); },
              what, closes_prefix);
        }});
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::timeout) throw;
    std::vector<int> absent;
    try {
      absent = not_published(store, key, position, count);
    } catch (const std::exception&) {
      throw e;  // the store is gone as well: its own message says so
    }
    if (absent.empty()) throw;
    std::vector<std::string> missing;
    for (const int peer : absent) missing.push_back(global.name(peer));
    throw core::error_at(ErrorKind::timeout, global(position), global(absent.front()),
                         "{}: {} did not arrive within {} s (RINGFUSE_CONNECT_TIMEOUT_S); check "
                         "that {} still running and can reach the rendezvous store",
                         what, fmt::join(missing, ", "),
                         std::chrono::duration_cast<std::chrono::seconds>(timeout).count(),
                         missing.size() == 1 ? "it is" : "they are");
  }
}

std::vector<std::string> all_gather_in_group(rendezvous::Store& store, const std::string& key,
                                             std::string_view value, int position, int size,
                                             std::chrono::milliseconds timeout,
                                             const GlobalRanks& global, std::string_view what,
                                             const std::string& closes_prefix) {
  return gather_first_in_group(store, key, value, position, size, timeout, global, what,
                               closes_prefix);
}

}  // namespace ringfuse::transport
