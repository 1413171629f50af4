// Owning wrapper for a POSIX file descriptor: the launcher juggles two pipes per rank plus a
// signal pipe, and every error path must close them or children never see EOF.
#pragma once

#include <unistd.h>

#include <utility>

namespace ringfuse::launcher {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  void reset() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

/// Both ends of a pipe(2), close-on-exec so that no child inherits another rank's pipe.
struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

/// Creates a close-on-exec pipe; throws ringfuse::Error(system) naming `what` on failure.
Pipe make_pipe(const char* what);

/// Sets O_NONBLOCK on `fd`; throws ringfuse::Error(system) on failure.
void set_nonblocking(int fd);

/// Writes all of `data`, retrying on EINTR and short writes, and waiting like a blocking write
/// where `fd` is non-blocking and full. Returns false if the descriptor refuses (EPIPE when our
/// reader went away, ...): output loss must not stop supervision.
bool write_all(int fd, const char* data, std::size_t size) noexcept;

}  // namespace ringfuse::launcher
