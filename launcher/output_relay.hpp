// Relays one rank's stdout or stderr to ours, each line prefixed with "[rank] " (and a UTC
// timestamp when asked), written with one write(2) per line so lines stay whole.
#pragma once

#include <string>

#include "line_splitter.hpp"
#include "unique_fd.hpp"

namespace ringfuse::launcher {

class OutputRelay {
 public:
  /// Reads `source` (non-blocking) and writes to `destination` (not owned).
  OutputRelay(int rank, UniqueFd source, int destination, bool timestamps);
  OutputRelay(OutputRelay&&) = delete;  // the splitter's handler captures `this`
  OutputRelay& operator=(OutputRelay&&) = delete;

  bool open() const noexcept { return source_.valid(); }
  int fd() const noexcept { return source_.get(); }

  /// Reads what is available without blocking. At end of stream or on a read error, prints
  /// the partial last line and closes; also closes once `destination` stops taking output.
  void read_available();
  /// Prints the partial last line and closes, whether or not the stream ended.
  void close();

 private:
  void write_line(std::string_view line);

  std::string prefix_;
  UniqueFd source_;
  int destination_;
  bool timestamps_;
  bool destination_broken_ = false;
  LineSplitter splitter_;
  std::string line_;  // reused buffer for the prefixed line
};

/// "2024-05-01T12:00:00.123Z": the current UTC time, ISO 8601 with milliseconds.
std::string iso8601_utc_now();

}  // namespace ringfuse::launcher
