// RINGFUSE_TIMELINE: a Chrome-trace / Perfetto JSON file per rank ("path" -> "path" with
// ".<rank>" before a ".json" suffix, else ".<rank>.json" appended). Rows (tid): 1 negotiation,
// 2 queue, 3 fusion memcpy, 4 collectives. Written by the engine thread only.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "engine/request.hpp"

namespace ringfuse::engine {

class Timeline {
 public:
  enum Row { kNegotiation = 1, kQueue = 2, kMemcpy = 3, kCollective = 4 };

  Timeline() = default;
  Timeline(const std::string& path, int rank);
  ~Timeline();
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;

  bool enabled() const { return file_ != nullptr; }
  static std::string path_for_rank(const std::string& path, int rank);
  /// One complete ("X") event; `args` is a JSON object body without braces (may be empty).
  void event(Row row, const std::string& name, Clock::time_point start, Clock::time_point end,
             const std::string& args = {});

 private:
  std::FILE* file_ = nullptr;
  int rank_ = 0;
  bool first_ = true;
  Clock::time_point origin_ = Clock::now();
};

/// Escapes a string for a JSON string literal (without quotes).
std::string json_escape(const std::string& text);

}  // namespace ringfuse::engine
