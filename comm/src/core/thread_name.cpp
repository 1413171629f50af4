#include "core/thread_name.hpp"

#include <pthread.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace ringfuse::core {

void name_this_thread(const char* name) {
  constexpr std::size_t kLinuxNameChars = 15;  // pthread_setname_np fails with ERANGE past it
  const std::string kept(name, std::min(std::strlen(name), kLinuxNameChars));
  (void)::pthread_setname_np(::pthread_self(), kept.c_str());
}

}  // namespace ringfuse::core
