#include "line_splitter.hpp"

#include <utility>

namespace ringfuse::launcher {

LineSplitter::LineSplitter(LineHandler handler, std::size_t max_line)
    : handler_(std::move(handler)), max_line_(max_line == 0 ? 1 : max_line) {}

void LineSplitter::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    const auto newline = bytes.find('\n');
    if (newline == std::string_view::npos) {
      pending_.append(bytes);
      break;
    }
    if (pending_.empty()) {
      handler_(bytes.substr(0, newline));  // common case: no copy
    } else {
      pending_.append(bytes.substr(0, newline));
      handler_(pending_);
      pending_.clear();
    }
    bytes.remove_prefix(newline + 1);
  }
  while (pending_.size() >= max_line_) {
    handler_(std::string_view(pending_).substr(0, max_line_));
    pending_.erase(0, max_line_);
  }
}

void LineSplitter::finish() {
  if (!pending_.empty()) {
    handler_(pending_);
    pending_.clear();
  }
}

}  // namespace ringfuse::launcher
