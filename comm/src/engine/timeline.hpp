// RINGFUSE_TIMELINE: a Chrome-trace / Perfetto JSON file per rank ("path" -> "path" with
// ".<rank>" before a ".json" suffix, else ".<rank>.json" appended). Rows (tid): 1 negotiation,
// 2 queue, 3 fusion memcpy, 4 collectives. The engine thread writes the events; callers'
// threads may start and stop the file at any time (Engine::start_timeline / stop_timeline),
// so every operation takes the timeline's lock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>

#include "engine/request.hpp"

namespace ringfuse::engine {

class Timeline {
 public:
  enum Row { kNegotiation = 1, kQueue = 2, kMemcpy = 3, kCollective = 4 };

  explicit Timeline(int rank) : rank_(rank) {}
  ~Timeline() { stop(); }
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;

  /// Opens path_for_rank(path) (closing the file being written first); throws
  /// Error(invalid_config) naming the file when it cannot be written.
  void start(const std::string& path, bool mark_cycles);
  /// Closes the file being written, as a complete JSON document; nothing if none is open.
  void stop();

  /// Whether a file is open: callers skip formatting events otherwise. A racing stop() only
  /// makes event() drop what it was given.
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  bool marking_cycles() const { return mark_cycles_.load(std::memory_order_relaxed); }
  static std::string path_for_rank(const std::string& path, int rank);
  /// One complete ("X") event; `args` is a JSON object body without braces (may be empty).
  void event(Row row, const std::string& name, Clock::time_point start, Clock::time_point end,
             const std::string& args = {});
  /// One instant ("i") event, as the cycle marks are.
  void instant(Row row, const std::string& name, Clock::time_point at);

 private:
  void close_locked();

  const int rank_;
  std::mutex mutex_;
  std::FILE* file_ = nullptr;  // guarded by mutex_
  Clock::time_point origin_;   // guarded by mutex_
  std::atomic<bool> enabled_{false};
  std::atomic<bool> mark_cycles_{false};
};

/// Escapes a string for a JSON string literal (without quotes).
std::string json_escape(const std::string& text);

}  // namespace ringfuse::engine
