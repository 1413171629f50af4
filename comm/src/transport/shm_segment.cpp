#include "transport/shm_segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <system_error>

#include <fmt/format.h>

namespace ringfuse::transport::shm {
namespace {

constexpr std::size_t kPage = 4096;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void* map(int fd, std::size_t bytes, const std::string& name, bool populate = true) {
  // MAP_POPULATE builds the page tables now rather than on the first collective.
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
  if (base == MAP_FAILED) throw_errno(fmt::format("mmap of {} ({} bytes)", name, bytes));
  return base;
}

int open_exclusive(const std::string& name) {
  int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    // Names carry the job id and generation, so this can only be a leftover of a killed
    // job with the same id that died during set-up; it is unusable, so replace it.
    ::shm_unlink(name.c_str());
    fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  }
  if (fd < 0) throw_errno(fmt::format("shm_open({}) to create it", name));
  return fd;
}

void size_to(int fd, std::size_t bytes, const std::string& name) {
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    throw_errno(fmt::format("ftruncate of {} to {} bytes", name, bytes));
  }
}

// Reserving pages turns a full /dev/shm into an error here rather than a SIGBUS in the middle
// of a collective.
void reserve_pages(int fd, std::size_t from, std::size_t to, const std::string& name) {
  if (const int rc = ::posix_fallocate(fd, static_cast<off_t>(from), static_cast<off_t>(to - from));
      rc != 0) {
    errno = rc;
    throw_errno(fmt::format("reserving {} bytes of {} (is /dev/shm large enough?)", to, name));
  }
}

int open_sized(const std::string& name, std::size_t bytes) {
  const int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) throw_errno(fmt::format("shm_open({})", name));
  Fd owner(fd);
  struct stat info {};
  if (::fstat(fd, &info) != 0) throw_errno(fmt::format("fstat of {}", name));
  if (static_cast<std::size_t>(info.st_size) != bytes) {
    throw std::system_error(EINVAL, std::generic_category(),
                            fmt::format("{} has {} bytes, expected {}", name, info.st_size,
                                        bytes));
  }
  return owner.release();
}

}  // namespace

Segment Segment::create(const std::string& name, std::size_t bytes) {
  Fd owner(open_exclusive(name));
  const int fd = owner.get();
  Segment segment;
  segment.name_ = name;
  segment.linked_ = true;  // from here on the destructor unlinks on any failure
  size_to(fd, bytes, name);
  reserve_pages(fd, 0, bytes, name);
  segment.base_ = map(fd, bytes, name);
  segment.bytes_ = bytes;
  // Writing every page maps it writable in this process too and zeroes the ring cursors.
  std::memset(segment.base_, 0, bytes);
  return segment;
}

Segment Segment::open(const std::string& name, std::size_t bytes) {
  Fd owner(open_sized(name, bytes));
  Segment segment;
  segment.name_ = name;
  segment.base_ = map(owner.get(), bytes, name);
  segment.bytes_ = bytes;
  // MAP_POPULATE is advisory; reading one byte per page guarantees the mapping is complete.
  const auto* bytes_view = static_cast<const volatile std::byte*>(segment.base_);
  for (std::size_t at = 0; at < bytes; at += kPage) (void)bytes_view[at];
  return segment;
}

Segment Segment::create_on_demand(const std::string& name, std::size_t bytes) {
  Segment segment;
  segment.fd_ = open_exclusive(name);
  segment.name_ = name;
  segment.linked_ = true;
  size_to(segment.fd_, bytes, name);
  segment.base_ = map(segment.fd_, bytes, name, false);
  segment.bytes_ = bytes;
  return segment;
}

Segment Segment::open_on_demand(const std::string& name, std::size_t bytes) {
  Fd owner(open_sized(name, bytes));
  Segment segment;
  segment.name_ = name;
  segment.base_ = map(owner.get(), bytes, name, false);
  segment.bytes_ = bytes;
  return segment;
}

void Segment::reserve(std::size_t bytes) {
  if (bytes <= reserved_ || fd_ < 0) return;
  constexpr std::size_t kSmallest = std::size_t{1} << 20;
  const std::size_t grown = std::min(
      bytes_, (std::max({bytes, 2 * reserved_, kSmallest}) + kPage - 1) / kPage * kPage);
  reserve_pages(fd_, reserved_, grown, name_);
  // The first write to each page maps it in this process, once, here rather than in a
  // collective; the pages are new, so writing a zero changes nothing.
  auto* pages = static_cast<volatile std::byte*>(base_);
  for (std::size_t at = reserved_; at < grown; at += kPage) pages[at] = std::byte{0};
  reserved_ = grown;
}

void Segment::unlink() {
  if (linked_) {
    ::shm_unlink(name_.c_str());
    linked_ = false;
  }
}

void Segment::reset() {
  unlink();
  if (base_ != nullptr) ::munmap(base_, bytes_);
  if (fd_ >= 0) ::close(fd_);
  base_ = nullptr;
  bytes_ = 0;
  fd_ = -1;
  reserved_ = 0;
}

namespace {

void append_safe(std::string& name, std::string_view parts) {
  for (const char c : parts) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
    name += safe ? c : '_';
  }
}

}  // namespace

std::string job_segment_prefix(const std::string& job_id) {
  std::string prefix = "ringfuse-";
  append_safe(prefix, job_id);
  return prefix + '_';
}

std::string segment_name(const std::string& parts) {
  std::string name = "/ringfuse-";
  append_safe(name, parts);
  constexpr std::size_t kMaxName = 200;  // NAME_MAX is 255; leave room for nothing surprising
  if (name.size() > kMaxName) {
    name = fmt::format("{}-{:016x}", name.substr(0, kMaxName - 17), std::hash<std::string>{}(parts));
  }
  return name;
}

}  // namespace ringfuse::transport::shm
