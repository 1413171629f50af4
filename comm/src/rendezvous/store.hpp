// Key-value store used for rendezvous: ranks publish their addresses and wait for each other's.
// Modelled on c10d's Store: every wait has a deadline, every failure throws ringfuse::Error.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringfuse::rendezvous {

class Store {
 public:
  virtual ~Store() = default;

  /// Stores (or replaces) `value` under `key`; wakes every waiter on `key`.
  virtual void set(const std::string& key, std::string_view value) = 0;
  /// Waits up to `timeout` for `key` to exist and returns its value.
  /// Throws Error(ErrorKind::timeout) naming the key when it does not appear in time.
  virtual std::string get(const std::string& key, std::chrono::milliseconds timeout) = 0;
  /// Waits up to `timeout` until every key exists; the timeout error names the missing keys.
  virtual void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) = 0;
  /// Atomically adds `delta` to the integer under `key` (missing = 0) and returns the new value.
  virtual std::int64_t add(const std::string& key, std::int64_t delta) = 0;
  /// Removes `key`; returns whether it existed.
  virtual bool remove(const std::string& key) = 0;
  /// Returns whether every key exists, without waiting.
  virtual bool check(const std::vector<std::string>& keys) = 0;
  /// The same store without any key prefix (PrefixStore): where the launcher's own records
  /// (rank_exits.hpp) are.
  virtual Store& root() { return *this; }
};

}  // namespace ringfuse::rendezvous
