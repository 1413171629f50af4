// Fault injection for the set-up tests, preloaded into a rank (LD_PRELOAD): at the rank's
// first shm_open it does what RINGFUSE_TEST_AT_SHM_OPEN says, then carries on. Across hosts
// the first shared memory a rank opens is its hierarchy's host group (the world's flat
// transport is TCP there), so this is a precise moment inside the hierarchy's set-up, after
// the flat mesh is up:
//   kill  the rank dies there (SIGKILL to itself), as a crash would;
//   stop  the rank stops itself (SIGSTOP) until the test continues it (SIGCONT), so the test
//         can change the network at that moment.
// With RINGFUSE_TEST_AT_SHM_OPEN_NAME it acts at the first shm_open of a name containing that
// text instead (a later step of the set-up: "shm-group" is a host group's rings when only
// some of its pairs share memory).
#include <dlfcn.h>
#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

extern "C" int shm_open(const char* name, int flags, mode_t mode) {
  static std::atomic<bool> acted{false};
  const char* only = std::getenv("RINGFUSE_TEST_AT_SHM_OPEN_NAME");
  const bool chosen = only == nullptr || std::strstr(name, only) != nullptr;
  if (chosen && !acted.exchange(true)) {
    const char* what = std::getenv("RINGFUSE_TEST_AT_SHM_OPEN");
    if (what != nullptr && std::strcmp(what, "kill") == 0) ::raise(SIGKILL);
    if (what != nullptr && std::strcmp(what, "stop") == 0) ::raise(SIGSTOP);
  }
  using ShmOpen = int (*)(const char*, int, mode_t);
  static const auto real = reinterpret_cast<ShmOpen>(::dlsym(RTLD_NEXT, "shm_open"));
  return real(name, flags, mode);
}
