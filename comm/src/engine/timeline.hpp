// RINGFUSE_TIMELINE: a Chrome-trace / Perfetto JSON file per rank ("path" -> "path" with
// ".<rank>" before a ".json" suffix, else ".<rank>.json" appended). One Timeline per rank is
// shared by a Context's engine and the engines of every child made from it (process sets,
// splits, subgroups), as Horovod writes one timeline per process: each engine writes through a
// TimelineTrack of its own. Rows (tid): 1 negotiation, 2 queue, 3 fusion memcpy, 4
// collectives. The Context's own engine (the global set) writes to process row pid = rank, as
// it always did; a child's engine to a process row of its own (pid = 1000000 * n + rank, n =
// 1, 2, ... in the order the rank's child engines started), named by a process_name metadata
// event ("process set 1 (global ranks 0,2)"). Engine threads write events; callers' threads
// may start and stop the file at any time, so every operation takes the timeline's lock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/request.hpp"

namespace ringfuse::engine {

class Timeline {
 public:
  enum Row { kNegotiation = 1, kQueue = 2, kMemcpy = 3, kCollective = 4 };
  /// The process row ("pid") of the i-th child engine's events is i * kChildPidStride + rank:
  /// never a rank's, so traces of several ranks loaded together keep their rows apart.
  static constexpr int kChildPidStride = 1'000'000;

  explicit Timeline(int rank) : rank_(rank) {}
  ~Timeline() { stop(); }
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;

  /// Opens path_for_rank(path) (closing the file being written first); throws
  /// Error(invalid_config) naming the file when it cannot be written. A file another Timeline
  /// is writing (another Context's in this process, e.g. ringfuse.torch's beside the
  /// torch.distributed group's, or another process's) is left alone: this one then writes
  /// NAME.<rank>.<k>.json, the first k >= 2 free, and says so in a warning.
  void start(const std::string& path, bool mark_cycles);
  /// RINGFUSE_TIMELINE (and RINGFUSE_TIMELINE_MARK_CYCLES): start(path, mark_cycles) the
  /// first time an engine of the rank starts, unless the timeline was started before (by this
  /// or by start()): a child engine started later, or after stop(), neither reopens nor
  /// truncates the file.
  void start_configured(const std::string& path, bool mark_cycles);
  /// Closes the file being written, as a complete JSON document; nothing if none is open.
  /// Also done when the last engine and Context sharing the timeline are gone.
  void stop();
  /// Hands what was written so far to the file system (an engine that stops does this).
  void flush();

  /// Whether a file is open: callers skip formatting events otherwise. A racing stop() only
  /// makes event() drop what it was given.
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  bool marking_cycles() const { return mark_cycles_.load(std::memory_order_relaxed); }
  int rank() const { return rank_; }
  static std::string path_for_rank(const std::string& path, int rank);
  /// The file being written; empty when none is.
  std::string file_name() const;

  /// A process row for a child engine's events, named `name` (metadata written now when a file
  /// is open, and at the top of every file started while the row exists); returns its pid.
  int add_process(const std::string& name);
  /// The row's engine is gone: files started from now on leave it out.
  void remove_process(int pid);

  /// One complete ("X") event on process row `pid`; `args` is a JSON object body without
  /// braces (may be empty).
  void event(int pid, Row row, const std::string& name, Clock::time_point start,
             Clock::time_point end, const std::string& args = {});
  /// One instant ("i") event, as the cycle marks are.
  void instant(int pid, Row row, const std::string& name, Clock::time_point at);

 private:
  struct Process {
    int pid;
    std::string name;
  };
  void open_locked(const std::string& path, bool mark_cycles);
  void close_locked();
  void write_rows_locked(int pid, const char* separator);
  void write_process_locked(const Process& process);

  const int rank_;
  mutable std::mutex mutex_;
  std::FILE* file_ = nullptr;        // guarded by mutex_; flock()ed while open
  std::string file_name_;            // guarded by mutex_
  Clock::time_point origin_;         // guarded by mutex_
  std::vector<Process> processes_;   // guarded by mutex_: the child engines' rows
  int processes_added_ = 0;          // guarded by mutex_
  bool started_ = false;             // guarded by mutex_: start() has succeeded once
  std::atomic<bool> enabled_{false};
  std::atomic<bool> mark_cycles_{false};
};

/// One engine's way into its rank's Timeline: its process row, held for the engine's lifetime
/// (RAII: the row is added when the track is made and removed when it goes). The engine of
/// a Context (the global set) writes to pid = rank; a child's to a row of its own.
class TimelineTrack {
 public:
  /// `process`: empty for a Context's own engine, else the name of the child engine's row.
  TimelineTrack(std::shared_ptr<Timeline> timeline, const std::string& process);
  ~TimelineTrack();
  TimelineTrack(const TimelineTrack&) = delete;
  TimelineTrack& operator=(const TimelineTrack&) = delete;

  Timeline& timeline() { return *timeline_; }
  bool enabled() const { return timeline_->enabled(); }
  bool marking_cycles() const { return timeline_->marking_cycles(); }
  void event(Timeline::Row row, const std::string& name, Clock::time_point start,
             Clock::time_point end, const std::string& args = {}) {
    timeline_->event(pid_, row, name, start, end, args);
  }
  void instant(Timeline::Row row, const std::string& name, Clock::time_point at) {
    timeline_->instant(pid_, row, name, at);
  }

 private:
  std::shared_ptr<Timeline> timeline_;
  bool global_set_;
  int pid_;
};

/// Escapes a string for a JSON string literal (without quotes).
std::string json_escape(const std::string& text);

}  // namespace ringfuse::engine
