// --bind-to core: each local rank starts bound to one CPU of the launcher's own affinity mask,
// as mpirun --bind-to core does. A child inherits the affinity of the thread that creates it,
// so the spawning thread binds itself to the rank's CPU for the spawn and then restores its
// mask: the rank is bound from its first instruction, with no window where its threads run
// elsewhere.
#pragma once

#include <sched.h>

#include <vector>

namespace ringfuse::launcher {

/// The CPUs this process may run on, in increasing order.
std::vector<int> allowed_cpus();

/// While alive, the calling thread may run only on `cpu`.
class ScopedThreadBinding {
 public:
  explicit ScopedThreadBinding(int cpu);
  ~ScopedThreadBinding();
  ScopedThreadBinding(const ScopedThreadBinding&) = delete;
  ScopedThreadBinding& operator=(const ScopedThreadBinding&) = delete;

 private:
  cpu_set_t saved_;
};

}  // namespace ringfuse::launcher
