#include "subprocess.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace ringfuse::testing {

using Clock = std::chrono::steady_clock;

int timeout_scale() { return RINGFUSE_TEST_TIMEOUT_SCALE; }

Process::Process(const std::vector<std::string>& argv,
                 const std::map<std::string, std::string>& env)
    : started_(Clock::now()) {
  char path_template[] = "/tmp/ringfuse-test-output-XXXXXX";
  const int output_fd = ::mkstemp(path_template);
  if (output_fd < 0) throw std::runtime_error("mkstemp failed");
  output_path_ = path_template;
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::setpgid(0, 0);  // its own group, so a timeout kills the whole tree
    ::dup2(output_fd, STDOUT_FILENO);
    ::dup2(output_fd, STDERR_FILENO);
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  ::setpgid(pid_, pid_);
  ::close(output_fd);
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (!output_path_.empty()) ::unlink(output_path_.c_str());
}

std::string Process::output() const {
  std::ifstream in(output_path_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

ProcessResult Process::wait(std::chrono::milliseconds timeout) {
  ProcessResult result;
  const auto deadline = Clock::now() + timeout * timeout_scale();
  int status = 0;
  while (true) {
    const int rc = ::waitpid(pid_, &status, WNOHANG);
    if (rc == pid_) break;
    if (Clock::now() >= deadline) {
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      result.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  reaped_ = true;
  ::kill(-pid_, SIGKILL);  // leftovers in its group (ranks of a launcher that was killed)
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.output = output();
  return result;
}

ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env,
                          std::chrono::milliseconds timeout) {
  Process process(argv, env);
  return process.wait(timeout);
}

}  // namespace ringfuse::testing
