#include "cpu_binding.hpp"

#include <pthread.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) {
    throw Error(ErrorKind::system, std::string("--bind-to core: cannot read this process's CPU "
                                               "affinity (sched_getaffinity): ") +
                                       std::strerror(errno));
  }
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

ScopedThreadBinding::ScopedThreadBinding(int cpu) {
  if (const int rc = ::pthread_getaffinity_np(::pthread_self(), sizeof(saved_), &saved_); rc != 0) {
    throw Error(ErrorKind::system,
                std::string("--bind-to core: pthread_getaffinity_np: ") + std::strerror(rc));
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (const int rc = ::pthread_setaffinity_np(::pthread_self(), sizeof(one), &one); rc != 0) {
    throw Error(ErrorKind::system, "--bind-to core: cannot bind to CPU " + std::to_string(cpu) +
                                       ": " + std::strerror(rc));
  }
}

ScopedThreadBinding::~ScopedThreadBinding() {
  ::pthread_setaffinity_np(::pthread_self(), sizeof(saved_), &saved_);
}

}  // namespace ringfuse::launcher
