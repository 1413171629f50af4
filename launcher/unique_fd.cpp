#include "unique_fd.hpp"

#include <fcntl.h>
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {

Pipe make_pipe(const char* what) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw Error(ErrorKind::system,
                std::string("cannot create a pipe for ") + what + ": " + std::strerror(errno));
  }
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    throw Error(ErrorKind::system,
                std::string("cannot make a pipe non-blocking: ") + std::strerror(errno));
  }
}

bool write_all(int fd, const char* data, std::size_t size) noexcept {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        // A descriptor handed to us non-blocking (Node.js-based runners make their pipes so;
        // O_NONBLOCK belongs to the pipe, not to us) with its reader behind: wait as a
        // blocking write would, instead of calling the output lost.
        pollfd writable{fd, POLLOUT, 0};
        if (::poll(&writable, 1, -1) < 0 && errno != EINTR) return false;
        if ((writable.revents & (POLLERR | POLLNVAL)) != 0) return false;
        continue;
      }
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace ringfuse::launcher
