#include "output_relay.hpp"

#include <time.h>

#include <cerrno>
#include <chrono>
#include <cstdio>

namespace ringfuse::launcher {

std::string iso8601_utc_now() {
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[40];
  const auto n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%03dZ", static_cast<int>(ms));
  return text;
}

OutputRelay::OutputRelay(int rank, UniqueFd source, int destination, bool timestamps)
    : prefix_(std::string("[").append(std::to_string(rank)).append("] ")),
      source_(std::move(source)),
      destination_(destination),
      timestamps_(timestamps),
      splitter_([this](std::string_view line) { write_line(line); }) {}

void OutputRelay::read_available() {
  char buffer[64 * 1024];
  // One read per wake-up keeps one chatty rank from starving the others in the poll loop.
  const ssize_t n = ::read(source_.get(), buffer, sizeof buffer);
  if (n > 0) {
    splitter_.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
    // Like a shell pipeline: once nobody reads our output, the rank's next write fails
    // (SIGPIPE) instead of it running on forever with its output discarded.
    if (destination_broken_) source_.reset();
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  close();
}

void OutputRelay::close() {
  if (!source_.valid()) return;
  splitter_.finish();
  source_.reset();
}

void OutputRelay::write_line(std::string_view line) {
  if (destination_broken_) return;
  line_.assign(prefix_);
  if (timestamps_) {
    line_.append(iso8601_utc_now());
    line_.push_back(' ');
  }
  line_.append(line);
  line_.push_back('\n');
  // If our own reader went away (`ringfuse-run ... | head`), we must not die of SIGPIPE and
  // orphan the ranks; read_available() passes the broken pipe on to the rank instead.
  destination_broken_ = !write_all(destination_, line_.data(), line_.size());
}

}  // namespace ringfuse::launcher
