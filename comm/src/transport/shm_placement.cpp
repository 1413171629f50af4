#include "transport/shm_placement.hpp"

#include <sched.h>

#include <spdlog/spdlog.h>

namespace ringfuse::transport::shm {

std::int32_t cpu_tag_of_this_thread() {
  const int cpu = ::sched_getcpu();
  return cpu < 0 ? 0 : cpu + 1;
}

bool move_this_thread_off(std::int32_t tag) {
  const int cpu = tag - 1;
  if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return false;
  if (!CPU_ISSET(cpu, &allowed) || CPU_COUNT(&allowed) < 2) return false;
  cpu_set_t elsewhere = allowed;
  CPU_CLR(cpu, &elsewhere);
  // The kernel migrates a thread whose mask no longer holds its CPU before the call returns;
  // widening the mask again does not move it back.
  if (::sched_setaffinity(0, sizeof(elsewhere), &elsewhere) != 0) return false;
  if (::sched_setaffinity(0, sizeof(allowed), &allowed) != 0) {
    spdlog::warn("ringfuse: could not restore this thread's CPU affinity after moving it off "
                 "CPU {} (its peer's): it stays off that CPU",
                 cpu);
  }
  return true;
}

}  // namespace ringfuse::transport::shm
