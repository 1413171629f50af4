#include "rendezvous/memory_store.hpp"

#include <algorithm>
#include <charconv>
#include <utility>

#include <fmt/format.h>

#include "core/errors.hpp"
#include "rendezvous/framing.hpp"

namespace ringfuse::rendezvous {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// The TCP client's limits (tcp_store_client.cpp), so that what works here works there: the
// room a frame keeps for the response's own fields, and how many missing keys a timeout lists.
constexpr std::size_t kResponseMargin = 4096;
constexpr std::size_t kMaxKeysListed = 16;

std::string key_list(const std::vector<std::string>& keys) {
  const auto shown = std::min(keys.size(), kMaxKeysListed);
  std::string text = "[";
  for (std::size_t i = 0; i < shown; ++i) {
    if (i > 0) text += ", ";
    text += keys[i];
  }
  if (keys.size() > shown) text += fmt::format(", ... and {} more", keys.size() - shown);
  return text + "]";
}

}  // namespace

MemoryStore::MemoryStore(std::string name) : name_(std::move(name)) {}

bool MemoryStore::has_all(const std::vector<std::string>& keys) const {
  return std::all_of(keys.begin(), keys.end(),
                     [this](const std::string& key) { return data_.contains(key); });
}

void MemoryStore::wait_locked(std::unique_lock<std::mutex>& lock,
                              const std::vector<std::string>& keys, milliseconds timeout) {
  timeout = std::clamp(timeout, milliseconds{0}, framing::kMaxWait);
  const auto deadline = Clock::now() + timeout;
  if (changed_.wait_until(lock, deadline, [&] { return has_all(keys); })) return;
  std::vector<std::string> missing;
  for (const auto& key : keys) {
    if (!data_.contains(key) && std::find(missing.begin(), missing.end(), key) == missing.end())
      missing.push_back(key);
  }
  throw core::rank_error(ErrorKind::timeout, Error::kNoRank,
                         "rendezvous store {}: timed out after {} waiting for keys {}; are the "
                         "ranks that publish them running? (one may have crashed, be stuck, or "
                         "not have started)",
                         name_, framing::seconds_string(timeout), key_list(missing));
}

void MemoryStore::set(const std::string& key, std::string_view value) {
  const std::size_t bytes = key.size() + value.size();
  if (bytes > framing::kMaxFrameBytes - kResponseMargin) {
    throw core::rank_error(ErrorKind::invalid_argument, Error::kNoRank,
                           "rendezvous store {}: cannot set '{}': the request is {} bytes, over "
                           "the store's {} byte limit; the store is for addresses and small "
                           "metadata, send bulk data over the transport",
                           name_, key, bytes, framing::kMaxFrameBytes - kResponseMargin);
  }
  {
    std::lock_guard lock(mutex_);
    data_.insert_or_assign(key, std::string(value));
  }
  changed_.notify_all();
}

std::string MemoryStore::get(const std::string& key, milliseconds timeout) {
  std::unique_lock lock(mutex_);
  wait_locked(lock, {key}, timeout);
  return data_.at(key);
}

void MemoryStore::wait(const std::vector<std::string>& keys, milliseconds timeout) {
  std::unique_lock lock(mutex_);
  wait_locked(lock, keys, timeout);
}

std::int64_t MemoryStore::add(const std::string& key, std::int64_t delta) {
  std::int64_t result = 0;
  {
    std::lock_guard lock(mutex_);
    std::int64_t current = 0;
    const auto it = data_.find(key);
    if (it != data_.end()) {
      const auto& text = it->second;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), current);
      if (ec != std::errc{} || end != text.data() + text.size()) {
        throw core::rank_error(ErrorKind::invalid_argument, Error::kNoRank,
                               "rendezvous store {}: add to '{}' refused: add on key '{}': its "
                               "value ({} bytes) is not a decimal integer; use a separate key "
                               "for counters",
                               name_, key, key, text.size());
      }
    }
    if (__builtin_add_overflow(current, delta, &result)) {
      throw core::rank_error(ErrorKind::invalid_argument, Error::kNoRank,
                             "rendezvous store {}: add to '{}' refused: add on key '{}': {} + {} "
                             "overflows a 64-bit integer",
                             name_, key, key, current, delta);
    }
    data_[key] = std::to_string(result);
  }
  changed_.notify_all();
  return result;
}

bool MemoryStore::remove(const std::string& key) {
  std::lock_guard lock(mutex_);
  return data_.erase(key) > 0;
}

bool MemoryStore::check(const std::vector<std::string>& keys) {
  std::lock_guard lock(mutex_);
  return has_all(keys);
}

}  // namespace ringfuse::rendezvous
