// LD_PRELOAD shim for the set-up leak tests (issue #22.2): makes one rank die at its first
// shm_open, i.e. after its peers created their segments and before anyone mapped them.
//   RINGFUSE_TEST_SHM_EXIT_RANK=R    the rank (RINGFUSE_RANK) that exits, with status 7,
//   RINGFUSE_TEST_SHM_EXIT_DELAY_MS  after this long (so the peers are waiting in the store),
//   RINGFUSE_TEST_IGNORE_SIGTERM=1   every other rank ignores SIGTERM (a program with its own
//                                    handling), so only SIGKILL ends it.
// Processes without RINGFUSE_RANK (the launcher) are left alone.
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace {

bool is_victim() {
  const char* rank = std::getenv("RINGFUSE_RANK");
  const char* victim = std::getenv("RINGFUSE_TEST_SHM_EXIT_RANK");
  return rank != nullptr && victim != nullptr && std::strcmp(rank, victim) == 0;
}

__attribute__((constructor)) void ignore_sigterm_if_asked() {
  const char* ignore = std::getenv("RINGFUSE_TEST_IGNORE_SIGTERM");
  if (std::getenv("RINGFUSE_RANK") != nullptr && !is_victim() && ignore != nullptr &&
      std::strcmp(ignore, "1") == 0) {
    ::signal(SIGTERM, SIG_IGN);
  }
}

}  // namespace

extern "C" int shm_open(const char* name, int oflag, mode_t mode) {
  if (is_victim()) {
    if (const char* delay = std::getenv("RINGFUSE_TEST_SHM_EXIT_DELAY_MS")) {
      ::usleep(static_cast<useconds_t>(std::atoi(delay)) * 1000);
    }
    ::_exit(7);
  }
  using ShmOpen = int (*)(const char*, int, mode_t);
  static const auto real = reinterpret_cast<ShmOpen>(::dlsym(RTLD_NEXT, "shm_open"));
  return real(name, oflag, mode);
}
