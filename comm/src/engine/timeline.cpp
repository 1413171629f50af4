#include "engine/timeline.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/errors.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::engine {

std::string json_escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string Timeline::path_for_rank(const std::string& path, int rank) {
  const std::string suffix = ".json";
  if (path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return fmt::format("{}.{}.json", path.substr(0, path.size() - suffix.size()), rank);
  }
  return fmt::format("{}.{}.json", path, rank);
}

void Timeline::start(const std::string& path, bool mark_cycles) {
  const auto name = path_for_rank(path, rank_);
  std::lock_guard lock(mutex_);
  close_locked();
  file_ = std::fopen(name.c_str(), "w");
  if (file_ == nullptr) {
    throw core::rank_error(ErrorKind::invalid_config, rank_,
                           "timeline: cannot write '{}'; give a path in a writable directory",
                           name);
  }
  origin_ = Clock::now();
  std::fputs("[\n", file_);
  const char* rows[] = {"", "negotiation", "queue", "fusion memcpy", "collective"};
  for (int row = 1; row <= 4; ++row) {
    std::fprintf(file_,
                 "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                 "\"args\":{\"name\":\"%s\"}}",
                 row == 1 ? "" : ",\n", rank_, row, rows[row]);
  }
  mark_cycles_ = mark_cycles;
  enabled_ = true;
}

void Timeline::stop() {
  std::lock_guard lock(mutex_);
  close_locked();
}

void Timeline::close_locked() {
  enabled_ = false;
  mark_cycles_ = false;
  if (file_ == nullptr) return;
  std::fputs("\n]\n", file_);
  std::fclose(file_);
  file_ = nullptr;
}

void Timeline::event(Row row, const std::string& name, Clock::time_point start,
                     Clock::time_point end, const std::string& args) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  std::lock_guard lock(mutex_);
  if (file_ == nullptr) return;
  const auto ts = duration_cast<microseconds>(start - origin_).count();
  const auto dur = duration_cast<microseconds>(end - start).count();
  std::fprintf(file_,
               ",\n{\"name\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%lld,\"dur\":%lld,"
               "\"args\":{%s}}",
               json_escape(name).c_str(), rank_, static_cast<int>(row),
               static_cast<long long>(ts), static_cast<long long>(dur), args.c_str());
}

void Timeline::instant(Row row, const std::string& name, Clock::time_point at) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  std::lock_guard lock(mutex_);
  if (file_ == nullptr) return;
  const auto ts = duration_cast<microseconds>(at - origin_).count();
  std::fprintf(file_,
               ",\n{\"name\":\"%s\",\"ph\":\"i\",\"s\":\"p\",\"pid\":%d,\"tid\":%d,\"ts\":%lld}",
               json_escape(name).c_str(), rank_, static_cast<int>(row),
               static_cast<long long>(ts));
}

}  // namespace ringfuse::engine
