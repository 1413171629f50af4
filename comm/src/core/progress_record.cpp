#include "core/progress_record.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "ringfuse/error.hpp"

namespace ringfuse::core {
namespace {

// "RFPROG" + layout version 1, stored by the rank once it has mapped the record.
constexpr std::uint64_t kMagic = 0x5246'5052'4f47'0001ULL;

struct Record {
  std::atomic<std::uint64_t> magic;
  std::atomic<std::uint64_t> step;
  std::atomic<std::uint64_t> collectives;
  std::atomic<std::uint64_t> allreduces;
  std::atomic<std::uint64_t> allreduce_bytes;
  std::atomic<std::uint64_t> allreduce_bus_bytes;
  std::atomic<std::uint64_t> allreduce_nanoseconds;
  std::atomic<std::uint64_t> updated_unix_ms;
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the record is shared between processes: its atomics must be lock-free");

std::uint64_t unix_ms_now() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw Error(ErrorKind::system,
              "progress record " + path + ": " + what + ": " + std::strerror(errno));
}

}  // namespace

// The file descriptor and mapping of one record; unmapped and closed on destruction.
class ProgressRecordMapping {
 public:
  ProgressRecordMapping(const std::string& path, bool create) {
    fd_ = ::open(path.c_str(), create ? O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC : O_RDWR | O_CLOEXEC,
                 0600);
    if (fd_ < 0) fail(create ? "cannot create it" : "cannot open it", path);
    if (create && ::ftruncate(fd_, sizeof(Record)) != 0) {
      ::close(fd_);
      fail("cannot size it", path);
    }
    struct stat info {};
    if (::fstat(fd_, &info) != 0 || info.st_size < static_cast<off_t>(sizeof(Record))) {
      ::close(fd_);
      errno = EINVAL;
      fail("it is not a progress record (too small)", path);
    }
    void* address = ::mmap(nullptr, sizeof(Record), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (address == MAP_FAILED) {
      ::close(fd_);
      fail("cannot map it", path);
    }
    // A fresh file reads as zeros, which is every atomic's initial value.
    record_ = static_cast<Record*>(address);
  }
  ~ProgressRecordMapping() {
    ::munmap(record_, sizeof(Record));
    ::close(fd_);
  }
  ProgressRecordMapping(const ProgressRecordMapping&) = delete;
  ProgressRecordMapping& operator=(const ProgressRecordMapping&) = delete;

  Record& record() const { return *record_; }

 private:
  int fd_ = -1;
  Record* record_ = nullptr;
};

double ProgressSnapshot::allreduce_busbw() const {
  if (allreduce_nanoseconds == 0) return 0.0;
  return static_cast<double>(allreduce_bus_bytes) * 1e9 /
         static_cast<double>(allreduce_nanoseconds);
}

ProgressPublisher::ProgressPublisher(const std::string& path)
    : mapping_(std::make_unique<ProgressRecordMapping>(path, false)) {
  auto& record = mapping_->record();
  record.updated_unix_ms.store(unix_ms_now(), std::memory_order_relaxed);
  record.magic.store(kMagic, std::memory_order_release);
}

ProgressPublisher::~ProgressPublisher() = default;

std::unique_ptr<ProgressPublisher> ProgressPublisher::open_if_set(const std::string& path,
                                                                  int rank) {
  if (path.empty()) return nullptr;
  try {
    return std::make_unique<ProgressPublisher>(path);
  } catch (const Error& error) {
    spdlog::warn("rank {}: RINGFUSE_PROGRESS_FILE ignored, the launcher's /metrics will not "
                 "show this rank's progress: {}",
                 rank, error.what());
    return nullptr;
  }
}

void ProgressPublisher::step(std::uint64_t step) {
  auto& record = mapping_->record();
  record.step.store(step, std::memory_order_relaxed);
  record.updated_unix_ms.store(unix_ms_now(), std::memory_order_relaxed);
}

void ProgressPublisher::collective() {
  auto& record = mapping_->record();
  record.collectives.fetch_add(1, std::memory_order_relaxed);
  record.updated_unix_ms.store(unix_ms_now(), std::memory_order_relaxed);
}

void ProgressPublisher::allreduce(std::size_t bytes, int world_size,
                                  std::chrono::nanoseconds took) {
  auto& record = mapping_->record();
  const auto n = static_cast<std::uint64_t>(world_size);
  record.allreduces.fetch_add(1, std::memory_order_relaxed);
  record.allreduce_bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (n > 1) record.allreduce_bus_bytes.fetch_add(bytes * 2 * (n - 1) / n, std::memory_order_relaxed);
  record.allreduce_nanoseconds.fetch_add(static_cast<std::uint64_t>(took.count()),
                                         std::memory_order_relaxed);
  collective();
}

ProgressReader::ProgressReader(const std::string& path)
    : path_(path), mapping_(std::make_unique<ProgressRecordMapping>(path, true)) {}

ProgressReader::~ProgressReader() = default;

ProgressSnapshot ProgressReader::read() const {
  const auto& record = mapping_->record();
  ProgressSnapshot snapshot;
  snapshot.attached = record.magic.load(std::memory_order_acquire) == kMagic;
  if (!snapshot.attached) return snapshot;
  snapshot.step = record.step.load(std::memory_order_relaxed);
  snapshot.collectives = record.collectives.load(std::memory_order_relaxed);
  snapshot.allreduces = record.allreduces.load(std::memory_order_relaxed);
  snapshot.allreduce_bytes = record.allreduce_bytes.load(std::memory_order_relaxed);
  snapshot.allreduce_bus_bytes = record.allreduce_bus_bytes.load(std::memory_order_relaxed);
  snapshot.allreduce_nanoseconds = record.allreduce_nanoseconds.load(std::memory_order_relaxed);
  snapshot.updated_unix_ms = record.updated_unix_ms.load(std::memory_order_relaxed);
  return snapshot;
}

}  // namespace ringfuse::core
