#include "orphan_guard.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

// Records on the pipe: a positive id is a group to watch, a negative one a group to forget,
// 0 the goodbye.
constexpr pid_t kGoodbye = 0;
// Groups the guard can hold at once: far beyond the ranks (and rsh agents) of one launcher.
constexpr std::size_t kMaxGroups = 1 << 14;
constexpr std::chrono::milliseconds kGuardExitLimit{2000};

// Everything below runs in the forked guard of a multithreaded launcher: only
// async-signal-safe calls (read, kill, poll, sigaction, close_range, _exit), no allocation.

bool alive(const pid_t* watched, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    if (watched[i] > 0 && ::kill(-watched[i], 0) == 0) return true;
  }
  return false;
}

[[noreturn]] void guard(int from_launcher, std::chrono::milliseconds grace) {
  // Signals meant for the launcher's process group (Ctrl-C, a job's SIGTERM) are the
  // launcher's to forward; the guard only acts when the launcher is gone.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  for (const int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2}) {
    ::sigaction(signal, &ignore, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Nothing else the launcher had open (its store, its ranks' pipes) is kept alive by us.
  if (from_launcher != 3) {
    ::dup2(from_launcher, 3);
    from_launcher = 3;
  }
  ::close_range(4, ~0U, 0);
  ::prctl(PR_SET_NAME, "ringfuse-guard");  // what ps and top show beside the launcher

  std::array<pid_t, kMaxGroups> groups{};  // 64 KiB of the guard's own stack
  std::size_t count = 0;
  for (;;) {
    pid_t record = 0;
    std::size_t got = 0;
    while (got < sizeof(record)) {
      const ssize_t n = ::read(from_launcher, reinterpret_cast<char*>(&record) + got,
                               sizeof(record) - got);
      if (n > 0) {
        got += static_cast<std::size_t>(n);
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    if (got < sizeof(record)) break;  // the launcher is gone without a goodbye
    if (record == kGoodbye) ::_exit(0);
    if (record > 0) {
      if (count < kMaxGroups) groups[count++] = record;
    } else {
      for (std::size_t i = 0; i < count; ++i) {
        if (groups[i] == -record) groups[i] = groups[--count];
      }
    }
  }
  for (std::size_t i = 0; i < count; ++i) ::kill(-groups[i], SIGTERM);
  for (auto left = grace; left.count() > 0 && alive(groups.data(), count);
       left -= std::chrono::milliseconds(50)) {
    ::poll(nullptr, 0, 50);
  }
  for (std::size_t i = 0; i < count; ++i) ::kill(-groups[i], SIGKILL);
  ::_exit(0);
}

}  // namespace

OrphanGuard::OrphanGuard(std::chrono::milliseconds grace) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw Error(ErrorKind::system,
                std::string("cannot make the pipe to the guard that stops orphaned ranks: ") +
                    std::strerror(errno));
  }
  UniqueFd read_end(fds[0]);
  to_guard_ = UniqueFd(fds[1]);
  pid_ = ::fork();
  if (pid_ < 0) {
    throw Error(ErrorKind::system,
                std::string("cannot start the guard that stops orphaned ranks: ") +
                    std::strerror(errno));
  }
  if (pid_ == 0) {
    ::close(fds[1]);
    guard(fds[0], grace);
  }
  // A guard that is stuck must never stall the launcher: records are dropped instead.
  ::fcntl(to_guard_.get(), F_SETFL, O_NONBLOCK);
}

OrphanGuard::~OrphanGuard() {
  tell(kGoodbye);
  to_guard_.reset();
  const auto until = std::chrono::steady_clock::now() + kGuardExitLimit;
  while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      return;
    }
    ::poll(nullptr, 0, 5);
  }
}

void OrphanGuard::watch(pid_t group) noexcept {
  if (group > 0) tell(group);
}

void OrphanGuard::forget(pid_t group) noexcept {
  if (group > 0) tell(-group);
}

void OrphanGuard::tell(pid_t record) noexcept {
  // Four bytes are written whole on a pipe (PIPE_BUF); a guard that died leaves EPIPE.
  while (::write(to_guard_.get(), &record, sizeof(record)) < 0 && errno == EINTR) {
  }
}

}  // namespace ringfuse::launcher
