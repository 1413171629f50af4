#include "engine/timeline.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

namespace {

// Timelines of one rank that may write side by side under one name (NAME.<rank>.<k>.json):
// more means a path shared by mistake, not Contexts of one process.
constexpr int kMostSharers = 16;

std::string numbered(const std::string& file, int k) {
  // file ends in ".json" (path_for_rank's).
  return fmt::format("{}.{}.json", file.substr(0, file.size() - 5), k);
}

// Opens `file` for writing, unless another open file description holds its lock: then null
// and the file untouched (not truncated). Where the file system has no flock, opens it anyway.
std::FILE* open_unless_locked(const std::string& file, int rank) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw core::rank_error(ErrorKind::invalid_config, rank,
                           "timeline: cannot write '{}' ({}); give a path in a writable "
                           "directory",
                           file, std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    ::close(fd);
    return nullptr;
  }
  if (::ftruncate(fd, 0) != 0) {
    const int error = errno;
    ::close(fd);
    throw core::rank_error(ErrorKind::invalid_config, rank, "timeline: cannot truncate '{}' ({})",
                           file, std::strerror(error));
  }
  std::FILE* stream = ::fdopen(fd, "w");
  if (stream == nullptr) {
    const int error = errno;
    ::close(fd);
    throw core::rank_error(ErrorKind::invalid_config, rank, "timeline: cannot write '{}' ({})",
                           file, std::strerror(error));
  }
  return stream;
}

}  // namespace

std::string Timeline::file_name() const {
  std::lock_guard lock(mutex_);
  return file_ != nullptr ? file_name_ : std::string{};
}

void Timeline::start(const std::string& path, bool mark_cycles) {
  std::lock_guard lock(mutex_);
  open_locked(path, mark_cycles);
}

void Timeline::start_configured(const std::string& path, bool mark_cycles) {
  std::lock_guard lock(mutex_);
  if (!started_) open_locked(path, mark_cycles);
}

void Timeline::open_locked(const std::string& path, bool mark_cycles) {
  const auto wanted = path_for_rank(path, rank_);
  close_locked();
  std::string name = wanted;
  for (int k = 2; (file_ = open_unless_locked(name, rank_)) == nullptr; ++k) {
    if (k > kMostSharers) {
      throw core::rank_error(ErrorKind::invalid_config, rank_,
                             "timeline: '{}' and {} numbered files beside it are being written "
                             "by other timelines; give this rank's engines a path of their own",
                             wanted, kMostSharers - 1);
    }
    name = numbered(wanted, k);
  }
  if (name != wanted) {
    spdlog::warn("rank {}: timeline '{}' is being written by another Context's engine (of this "
                 "process, e.g. ringfuse.torch's beside torch.distributed's, or of another "
                 "process given the same path); this one writes '{}'",
                 rank_, wanted, name);
  }
  file_name_ = name;
  started_ = true;
  origin_ = Clock::now();
  std::fputs("[\n", file_);
  write_rows_locked(rank_, "");
  for (const auto& process : processes_) write_process_locked(process);
  mark_cycles_ = mark_cycles;
  enabled_ = true;
}

void Timeline::stop() {
  std::lock_guard lock(mutex_);
  close_locked();
}

void Timeline::flush() {
  std::lock_guard lock(mutex_);
  if (file_ != nullptr) std::fflush(file_);
}

void Timeline::close_locked() {
  enabled_ = false;
  mark_cycles_ = false;
  if (file_ == nullptr) return;
  std::fputs("\n]\n", file_);
  std::fclose(file_);
  file_ = nullptr;
}

void Timeline::write_rows_locked(int pid, const char* separator) {
  const char* rows[] = {"", "negotiation", "queue", "fusion memcpy", "collective"};
  for (int row = 1; row <= 4; ++row) {
    std::fprintf(file_,
                 "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                 "\"args\":{\"name\":\"%s\"}}",
                 row == 1 ? separator : ",\n", pid, row, rows[row]);
  }
}

void Timeline::write_process_locked(const Process& process) {
  std::fprintf(file_, ",\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,"
                      "\"args\":{\"name\":\"%s\"}}",
               process.pid, json_escape(process.name).c_str());
  write_rows_locked(process.pid, ",\n");
}

int Timeline::add_process(const std::string& name) {
  std::lock_guard lock(mutex_);
  const Process process{++processes_added_ * kChildPidStride + rank_, name};
  processes_.push_back(process);
  if (file_ != nullptr) write_process_locked(process);
  return process.pid;
}

void Timeline::remove_process(int pid) {
  std::lock_guard lock(mutex_);
  std::erase_if(processes_, [pid](const Process& process) { return process.pid == pid; });
}

void Timeline::event(int pid, Row row, const std::string& name, Clock::time_point start,
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
               json_escape(name).c_str(), pid, static_cast<int>(row),
               static_cast<long long>(ts), static_cast<long long>(dur), args.c_str());
}

void Timeline::instant(int pid, Row row, const std::string& name, Clock::time_point at) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  std::lock_guard lock(mutex_);
  if (file_ == nullptr) return;
  const auto ts = duration_cast<microseconds>(at - origin_).count();
  std::fprintf(file_,
               ",\n{\"name\":\"%s\",\"ph\":\"i\",\"s\":\"p\",\"pid\":%d,\"tid\":%d,\"ts\":%lld}",
               json_escape(name).c_str(), pid, static_cast<int>(row),
               static_cast<long long>(ts));
}

TimelineTrack::TimelineTrack(std::shared_ptr<Timeline> timeline, const std::string& process)
    : timeline_(std::move(timeline)),
      global_set_(process.empty()),
      pid_(global_set_ ? timeline_->rank() : timeline_->add_process(process)) {}

TimelineTrack::~TimelineTrack() {
  if (!global_set_) timeline_->remove_process(pid_);
}

}  // namespace ringfuse::engine
