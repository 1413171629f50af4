#include "process_group_store.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/errors.hpp"

namespace ringfuse::python {
namespace {

// c10d reports everything as c10::Error (a timeout included, as "Socket Timeout" or "Wait
// timeout"); Ringfuse callers expect ringfuse::Error with the rank and what was asked for.
template <class Call>
auto translated(int rank, ErrorKind kind, const std::string& what, Call&& call) {
  try {
    return call();
  } catch (const c10::Error& error) {
    throw core::rank_error(kind, rank, "torch.distributed store: {}: {}", what,
                           error.what_without_backtrace());
  } catch (const std::exception& error) {
    throw core::rank_error(kind, rank, "torch.distributed store: {}: {}", what, error.what());
  }
}

}  // namespace

void C10dStore::set(const std::string& key, std::string_view value) {
  translated(rank_, ErrorKind::peer_failure, fmt::format("set '{}'", key), [&] {
    store_->set(key, std::vector<std::uint8_t>(value.begin(), value.end()));
    return 0;
  });
}

std::string C10dStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  wait({key}, timeout);
  return translated(rank_, ErrorKind::peer_failure, fmt::format("get '{}'", key), [&] {
    const auto bytes = store_->get(key);
    return std::string(bytes.begin(), bytes.end());
  });
}

void C10dStore::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  // Polled with check(), never c10d's own wait: a TCPStore wait that times out leaves its
  // answer to come later on the connection, where the next request reads it as its own (a
  // failure report then waited out the whole store timeout, 30 min by default), and a zero
  // timeout means "forever" to c10d where it means "do not wait" here.
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout;
  std::chrono::microseconds pause{100};
  // Keys before `present` are known to exist; a rendezvous of many ranks then asks about one
  // missing key per round, not about all of them.
  std::size_t present = 0;
  const auto rest = [&] {
    return std::vector<std::string>(keys.begin() + static_cast<std::ptrdiff_t>(present),
                                    keys.end());
  };
  while (present < keys.size()) {
    if (check(rest())) return;
    while (present < keys.size() && check({keys[present]})) ++present;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      throw core::rank_error(
          ErrorKind::timeout, rank_,
          "torch.distributed store: waited {} ms for keys [{}]: a rank has not reached this "
          "rendezvous; check that every rank started and uses the same backend",
          timeout.count(), fmt::join(rest(), ", "));
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
    // From 0.1 ms up to 10 ms at first (a group's ranks arrive within milliseconds of each
    // other: a new_group takes 15 ms, as with c10d's own wait), up to 50 ms once a rank is late.
    const std::chrono::microseconds most = now - start < std::chrono::seconds(1)
                                               ? std::chrono::milliseconds(10)
                                               : std::chrono::milliseconds(50);
    pause = std::min(pause * 2, most);
  }
}

std::int64_t C10dStore::add(const std::string& key, std::int64_t delta) {
  return translated(rank_, ErrorKind::peer_failure, fmt::format("add to '{}'", key),
                    [&] { return store_->add(key, delta); });
}

bool C10dStore::remove(const std::string& key) {
  return translated(rank_, ErrorKind::peer_failure, fmt::format("delete '{}'", key),
                    [&] { return store_->deleteKey(key); });
}

bool C10dStore::check(const std::vector<std::string>& keys) {
  return translated(rank_, ErrorKind::peer_failure, fmt::format("check [{}]", fmt::join(keys, ", ")),
                    [&] { return store_->check(keys); });
}

}  // namespace ringfuse::python
