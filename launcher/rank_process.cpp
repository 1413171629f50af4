#include "rank_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "cpu_binding.hpp"

namespace ringfuse::launcher {
namespace {

// posix_spawn's attribute and file-action objects need destroying on every path.
class SpawnAttributes {
 public:
  SpawnAttributes() {
    check(::posix_spawnattr_init(&attr_), "posix_spawnattr_init");
  }
  ~SpawnAttributes() { ::posix_spawnattr_destroy(&attr_); }
  SpawnAttributes(const SpawnAttributes&) = delete;
  SpawnAttributes& operator=(const SpawnAttributes&) = delete;
  posix_spawnattr_t* get() { return &attr_; }

  static void check(int rc, const char* what) {
    if (rc != 0) {
      throw Error(ErrorKind::system, std::string(what) + " failed: " + std::strerror(rc));
    }
  }

 private:
  posix_spawnattr_t attr_;
};

class SpawnFileActions {
 public:
  SpawnFileActions() {
    SpawnAttributes::check(::posix_spawn_file_actions_init(&actions_),
                           "posix_spawn_file_actions_init");
  }
  ~SpawnFileActions() { ::posix_spawn_file_actions_destroy(&actions_); }
  SpawnFileActions(const SpawnFileActions&) = delete;
  SpawnFileActions& operator=(const SpawnFileActions&) = delete;
  posix_spawn_file_actions_t* get() { return &actions_; }

 private:
  posix_spawn_file_actions_t actions_;
};

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (const auto& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

RankProcess::Spawned RankProcess::spawn(int rank, std::string host,
                                        const std::vector<std::string>& command,
                                        const std::vector<std::string>& environment,
                                        std::optional<int> cpu) {
  if (command.empty()) {
    throw Error(ErrorKind::invalid_argument, "no program given to run");
  }
  Pipe out = make_pipe("a rank's stdout");
  Pipe err = make_pipe("a rank's stderr");
  set_nonblocking(out.read_end.get());
  set_nonblocking(err.read_end.get());

  SpawnFileActions actions;
  SpawnAttributes::check(
      ::posix_spawn_file_actions_addopen(actions.get(), STDIN_FILENO, "/dev/null", O_RDONLY, 0),
      "posix_spawn_file_actions_addopen");
  SpawnAttributes::check(
      ::posix_spawn_file_actions_adddup2(actions.get(), out.write_end.get(), STDOUT_FILENO),
      "posix_spawn_file_actions_adddup2");
  SpawnAttributes::check(
      ::posix_spawn_file_actions_adddup2(actions.get(), err.write_end.get(), STDERR_FILENO),
      "posix_spawn_file_actions_adddup2");
  // Descriptors the launcher holds without CLOEXEC (the store's listening socket, anything
  // our own parent leaked) would otherwise keep ports and pipes open for the job's lifetime.
  SpawnAttributes::check(::posix_spawn_file_actions_addclosefrom_np(actions.get(), 3),
                         "posix_spawn_file_actions_addclosefrom_np");

  SpawnAttributes attr;
  sigset_t empty_mask;
  sigemptyset(&empty_mask);
  // SIGPIPE is ignored in the launcher, and an ignored disposition survives exec.
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  SpawnAttributes::check(::posix_spawnattr_setpgroup(attr.get(), 0), "posix_spawnattr_setpgroup");
  SpawnAttributes::check(::posix_spawnattr_setsigmask(attr.get(), &empty_mask),
                         "posix_spawnattr_setsigmask");
  SpawnAttributes::check(::posix_spawnattr_setsigdefault(attr.get(), &defaults),
                         "posix_spawnattr_setsigdefault");
  SpawnAttributes::check(
      ::posix_spawnattr_setflags(attr.get(), POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                 POSIX_SPAWN_SETSIGDEF),
      "posix_spawnattr_setflags");

  auto argv = c_strings(command);
  auto envp = c_strings(environment);
  pid_t pid = -1;
  // glibc's posix_spawnp reports exec failures (ENOENT, EACCES, ...) here, synchronously.
  std::optional<ScopedThreadBinding> binding;
  if (cpu) binding.emplace(*cpu);
  const int rc = ::posix_spawnp(&pid, argv[0], actions.get(), attr.get(), argv.data(), envp.data());
  binding.reset();
  if (rc != 0) {
    const bool searched = command[0].find('/') == std::string::npos;
    throw ProgramNotExecutable(
        ErrorKind::system, "cannot execute '" + command[0] + "' for rank " + std::to_string(rank) +
                               ": " + std::strerror(rc) + (searched ? " (searched PATH)" : ""));
  }
  // The write ends close here (end of scope), so EOF arrives once the rank's tree exits.
  return Spawned{RankProcess(rank, std::move(host), pid), std::move(out.read_end),
                 std::move(err.read_end)};
}

RankProcess::RankProcess(RankProcess&& other) noexcept
    : rank_(other.rank_),
      host_(std::move(other.host_)),
      pid_(std::exchange(other.pid_, -1)),
      status_(std::move(other.status_)) {}

RankProcess::~RankProcess() {
  if (pid_ <= 0 || status_) return;
  ::killpg(pid_, SIGKILL);
  int wait_status = 0;
  while (::waitpid(pid_, &wait_status, 0) < 0 && errno == EINTR) {
  }
}

void RankProcess::signal_group(int signal) const noexcept {
  // Only while unreaped: the zombie keeps the pid, so the group id cannot name a stranger.
  if (pid_ > 0 && !status_) ::killpg(pid_, signal);
}

const std::optional<ExitStatus>& RankProcess::poll_exit() {
  if (pid_ <= 0 || status_) return status_;
  siginfo_t info{};
  // WNOWAIT leaves the zombie in place, so the process group id stays ours while we kill
  // whatever the rank left running (a shell's background jobs holding our pipes open).
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
      info.si_pid == 0) {
    return status_;
  }
  ::killpg(pid_, SIGKILL);
  status_ = ExitStatus::from_child_info(info);
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  return status_;
}

}  // namespace ringfuse::launcher
