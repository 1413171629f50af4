// Owner of one POSIX shared-memory segment mapping (shm_open + mmap). The creator unlinks the
// name as soon as every peer has mapped it, so nothing is left in /dev/shm however the job
// ends; the destructor unlinks too if set-up failed before that point. A segment is either
// backed in full at once (the rings) or sized in full but backed on demand (a shared window,
// whose owner reserves pages as it needs them; the peers fault them in on first read).
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace ringfuse::transport::shm {

class Segment {
 public:
  Segment() = default;
  /// Creates `name` (exclusively; a stale segment of the same name, left by a killed job,
  /// is replaced), sizes it to `bytes`, maps it and touches every page, so no collective ever
  /// pays the first-touch page faults. Throws std::system_error.
  static Segment create(const std::string& name, std::size_t bytes);
  /// Maps an existing segment of exactly `bytes` and pre-faults it. Throws std::system_error.
  static Segment open(const std::string& name, std::size_t bytes);
  /// Like create(), but no page is reserved or touched until reserve() asks for it.
  static Segment create_on_demand(const std::string& name, std::size_t bytes);
  /// Maps an existing on-demand segment of exactly `bytes` without touching it.
  static Segment open_on_demand(const std::string& name, std::size_t bytes);

  ~Segment() { reset(); }
  Segment(Segment&& other) noexcept { *this = std::move(other); }
  Segment& operator=(Segment&& other) noexcept {
    if (this != &other) {
      reset();
      base_ = std::exchange(other.base_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
      name_ = std::move(other.name_);
      linked_ = std::exchange(other.linked_, false);
      fd_ = std::exchange(other.fd_, -1);
      reserved_ = std::exchange(other.reserved_, 0);
    }
    return *this;
  }
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  std::byte* data() const { return static_cast<std::byte*>(base_); }
  std::size_t size() const { return bytes_; }
  const std::string& name() const { return name_; }

  /// Removes the name (the mapping stays valid); idempotent.
  void unlink();

  /// An on-demand segment's creator: backs at least the first `bytes` (growing by at least
  /// doubling) with reserved, pre-faulted pages, so a full /dev/shm is an exception here and
  /// never a SIGBUS later. Keeps the contents. Throws std::system_error.
  void reserve(std::size_t bytes);

 private:
  void reset();

  void* base_ = nullptr;
  std::size_t bytes_ = 0;
  std::string name_;
  bool linked_ = false;  // this object created the name and has not unlinked it yet
  int fd_ = -1;          // kept by an on-demand segment's creator, for reserve()
  std::size_t reserved_ = 0;
};

/// A POSIX shm name ("/ringfuse-...") built from `parts`, with characters other than
/// [A-Za-z0-9._-] replaced and long names shortened with a hash, so any job id is safe.
std::string segment_name(const std::string& parts);

/// What the file name (in /dev/shm, without the slash) of every segment of job `job_id`
/// starts with: "ringfuse-<job id, made safe>_"; the world's generation (digits) follows.
/// The launcher removes its job's leftovers by it.
std::string job_segment_prefix(const std::string& job_id);

}  // namespace ringfuse::transport::shm
