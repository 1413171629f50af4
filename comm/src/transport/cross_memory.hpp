// Copies between this process and another one on the same host, through the kernel
// (process_vm_readv / process_vm_writev: one copy, no shared mapping). Allowed where this
// process may ptrace the other (same user, and Yama's ptrace_scope or the container's seccomp
// profile permitting it); the callers find out with a probe and do without otherwise.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace ringfuse::transport::cross_memory {

/// Copies `bytes` at `remote` in process `pid` to `local`: 0, or the errno that stopped it.
int read(pid_t pid, std::uintptr_t remote, void* local, std::size_t bytes);
/// Copies `bytes` from `local` to `remote` in process `pid`: 0, or the errno that stopped it.
int write(pid_t pid, std::uintptr_t remote, const void* local, std::size_t bytes);

}  // namespace ringfuse::transport::cross_memory
