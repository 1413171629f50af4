#include "transport/cross_memory.hpp"

#include <sys/uio.h>

#include <cerrno>

namespace ringfuse::transport::cross_memory {
namespace {

// The kernel may copy less than asked (a page it cannot fault in, a signal): go on from there.
template <class Call>
int copy_all(Call&& call, std::uintptr_t remote, std::byte* local, std::size_t bytes) {
  while (bytes > 0) {
    iovec here{local, bytes};
    iovec there{reinterpret_cast<void*>(remote), bytes};
    const ssize_t copied = call(&here, &there);
    if (copied < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (copied == 0) return EFAULT;
    local += copied;
    remote += static_cast<std::uintptr_t>(copied);
    bytes -= static_cast<std::size_t>(copied);
  }
  return 0;
}

}  // namespace

int read(pid_t pid, std::uintptr_t remote, void* local, std::size_t bytes) {
  return copy_all([pid](iovec* here, iovec* there) {
    return ::process_vm_readv(pid, here, 1, there, 1, 0);
  }, remote, static_cast<std::byte*>(local), bytes);
}

int write(pid_t pid, std::uintptr_t remote, const void* local, std::size_t bytes) {
  // process_vm_writev only reads `local`; its iovec is not const.
  return copy_all([pid](iovec* here, iovec* there) {
    return ::process_vm_writev(pid, here, 1, there, 1, 0);
  }, remote, static_cast<std::byte*>(const_cast<void*>(local)), bytes);
}

}  // namespace ringfuse::transport::cross_memory
