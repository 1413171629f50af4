#include "signal_pipe.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

// The one piece of global state: a signal handler can reach nothing else.
volatile sig_atomic_t g_signal_write_fd = -1;

extern "C" void on_signal(int signal) {
  const int saved_errno = errno;
  const unsigned char byte = static_cast<unsigned char>(signal);
  // Non-blocking: if the pipe is full the loop is already due to wake up, so dropping is fine.
  [[maybe_unused]] const auto ignored = ::write(g_signal_write_fd, &byte, 1);
  errno = saved_errno;
}

}  // namespace

SignalPipe::SignalPipe() {
  if (g_signal_write_fd != -1) {
    throw Error(ErrorKind::invalid_argument, "only one SignalPipe may exist at a time");
  }
  Pipe pipe = make_pipe("signal handling");
  set_nonblocking(pipe.read_end.get());
  set_nonblocking(pipe.write_end.get());
  read_end_ = std::move(pipe.read_end);
  write_end_ = std::move(pipe.write_end);
  g_signal_write_fd = write_end_.get();

  auto install = [this](int signal, void (*handler)(int)) {
    struct sigaction action {};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    // SA_RESTART keeps blocking calls elsewhere (the store thread, our writes) from seeing
    // EINTR; poll() is interrupted regardless, which is what wakes the loop.
    action.sa_flags = SA_RESTART | (signal == SIGCHLD ? SA_NOCLDSTOP : 0);
    Saved saved{signal, {}};
    if (::sigaction(signal, &action, &saved.action) != 0) {
      throw Error(ErrorKind::system, std::string("cannot install a handler for signal ") +
                                         std::to_string(signal) + ": " + std::strerror(errno));
    }
    saved_.push_back(saved);
  };
  try {
    for (const int signal : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) install(signal, on_signal);
    install(SIGPIPE, SIG_IGN);
  } catch (...) {
    for (const auto& s : saved_) ::sigaction(s.signal, &s.action, nullptr);
    g_signal_write_fd = -1;
    throw;
  }
}

SignalPipe::~SignalPipe() {
  for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
    ::sigaction(it->signal, &it->action, nullptr);
  }
  g_signal_write_fd = -1;
}

std::vector<int> SignalPipe::drain() {
  std::vector<int> signals;
  unsigned char buffer[64];
  ssize_t n;
  while ((n = ::read(read_end_.get(), buffer, sizeof buffer)) > 0 ||
         (n < 0 && errno == EINTR)) {
    for (ssize_t i = 0; i < n; ++i) signals.push_back(buffer[i]);
  }
  return signals;
}

}  // namespace ringfuse::launcher
