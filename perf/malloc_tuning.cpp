#include "malloc_tuning.hpp"

#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace ringfuse::perf {
namespace {
constexpr const char* kMmapMax = "MALLOC_MMAP_MAX_";
constexpr const char* kTrimThreshold = "MALLOC_TRIM_THRESHOLD_";
constexpr const char* kTunedMmapMax = "0";
constexpr const char* kTunedTrimThreshold = "4294967296";
}  // namespace

bool malloc_env_tuned() {
  const char* mmap_max = std::getenv(kMmapMax);
  const char* trim = std::getenv(kTrimThreshold);
  return mmap_max != nullptr && trim != nullptr && std::string_view(mmap_max) == kTunedMmapMax;
}

std::string describe_malloc_env() {
  const char* mmap_max = std::getenv(kMmapMax);
  const char* trim = std::getenv(kTrimThreshold);
  if (mmap_max == nullptr && trim == nullptr) return "glibc defaults (no MALLOC_* variables)";
  return fmt::format("{}={} {}={}", kMmapMax, mmap_max ? mmap_max : "(unset)", kTrimThreshold,
                     trim ? trim : "(unset)");
}

std::string reexec_with_tuned_env(char** argv) {
  ::setenv(kMmapMax, kTunedMmapMax, 1);
  ::setenv(kTrimThreshold, kTunedTrimThreshold, 1);
  // /proc/self/exe rather than argv[0]: the launcher may have found us through PATH.
  ::execv("/proc/self/exe", argv);
  return fmt::format("cannot re-execute /proc/self/exe: {}", std::strerror(errno));
}

bool apply_tuned_mallopt() {
  return ::mallopt(M_MMAP_MAX, 0) == 1 && ::mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
}

}  // namespace ringfuse::perf
