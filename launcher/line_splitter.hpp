// Cuts a byte stream into lines. Ranks write in arbitrary chunks; the launcher must only ever
// print whole lines so that output from different ranks never interleaves mid-line.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace ringfuse::launcher {

class LineSplitter {
 public:
  /// Receives each line without its '\n'.
  using LineHandler = std::function<void(std::string_view line)>;

  /// A line longer than `max_line` is passed on in `max_line`-sized pieces, so a rank that
  /// never writes a newline cannot make the launcher's memory grow without bound.
  explicit LineSplitter(LineHandler handler, std::size_t max_line = 64 * 1024);

  void feed(std::string_view bytes);
  /// Passes on a final partial line, if any (the stream has ended).
  void finish();

 private:
  LineHandler handler_;
  std::size_t max_line_;
  std::string pending_;
};

}  // namespace ringfuse::launcher
