// A rank's live progress, shared with its launcher through a small memory-mapped file whose
// path the launcher passes in RINGFUSE_PROGRESS_FILE (ringfuse-run --health-port). The rank
// adds to it with relaxed atomics on its collective paths, so publishing costs no system call;
// the launcher reads it when /metrics is scraped. The layout is fixed (magic + version), so a
// launcher and a library from different builds notice that they do not agree.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ringfuse::core {

/// One reading of a rank's record.
struct ProgressSnapshot {
  std::uint64_t step = 0;                 // the training step the program reported last
  std::uint64_t collectives = 0;          // collectives completed (engine-fused ones count once)
  std::uint64_t allreduces = 0;
  std::uint64_t allreduce_bytes = 0;      // payload bytes (what the caller reduced)
  std::uint64_t allreduce_bus_bytes = 0;  // bytes x 2(n-1)/n: nccl-tests' bus bandwidth rule
  std::uint64_t allreduce_nanoseconds = 0;
  std::uint64_t updated_unix_ms = 0;      // when the rank last changed the record (0: never)
  bool attached = false;                  // the rank mapped the record (it started the library)

  /// Mean bus bandwidth of all all-reduces so far, bytes per second (0 before the first).
  double allreduce_busbw() const;
};

class ProgressRecordMapping;

/// The rank's side. Thread-safe: the caller's collectives and the engine thread both add.
class ProgressPublisher {
 public:
  /// Maps the record the launcher created at `path`. Throws ringfuse::Error if it cannot.
  explicit ProgressPublisher(const std::string& path);
  ~ProgressPublisher();
  ProgressPublisher(const ProgressPublisher&) = delete;
  ProgressPublisher& operator=(const ProgressPublisher&) = delete;

  /// The record at `path` (Options::progress_file, from RINGFUSE_PROGRESS_FILE); null when
  /// `path` is empty or cannot be mapped (then logged: metrics must never stop a job).
  static std::unique_ptr<ProgressPublisher> open_if_set(const std::string& path, int rank);

  void step(std::uint64_t step);
  void collective();
  void allreduce(std::size_t bytes, int world_size, std::chrono::nanoseconds took);

 private:
  std::unique_ptr<ProgressRecordMapping> mapping_;
};

/// The launcher's side: creates the record for one rank (before the rank starts) and reads it.
class ProgressReader {
 public:
  /// Creates (or truncates) `path` and maps it. Throws ringfuse::Error if it cannot.
  explicit ProgressReader(const std::string& path);
  ~ProgressReader();
  ProgressReader(const ProgressReader&) = delete;
  ProgressReader& operator=(const ProgressReader&) = delete;

  const std::string& path() const { return path_; }
  ProgressSnapshot read() const;

 private:
  std::string path_;
  std::unique_ptr<ProgressRecordMapping> mapping_;
};

}  // namespace ringfuse::core
