#include "context/launcher_watch.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/thread_name.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse {
namespace {

// A rank that lost its launcher first gets time to finish what it is saying (a failure it
// reports when the launcher stopped because of it), then the launcher's own grace period
// between SIGTERM and SIGKILL.
constexpr std::chrono::milliseconds kBeforeTerm{2000};
constexpr std::chrono::milliseconds kBeforeKill{5000};

}  // namespace

LauncherWatch::LauncherWatch(const std::string& host, std::uint16_t port,
                             const std::string& secret, std::chrono::milliseconds connect_timeout,
                             int rank)
    : client_(std::make_unique<rendezvous::TcpStoreClient>(host, port, connect_timeout, secret)),
      address_(fmt::format("{}:{}", host, port)),
      rank_(rank) {
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) {
    throw Error(ErrorKind::system,
                fmt::format("rank {}: cannot watch the launcher (eventfd: {})", rank_,
                            std::strerror(errno)));
  }
  thread_ = std::thread([this] {
    core::name_this_thread("rf-launch-watch");
    watch();
  });
}

LauncherWatch::~LauncherWatch() {
  const std::uint64_t one = 1;
  (void)::write(stop_fd_, &one, sizeof(one));
  thread_.join();
  ::close(stop_fd_);
}

bool LauncherWatch::stopped_within(std::chrono::milliseconds time) const {
  pollfd stop{stop_fd_, POLLIN, 0};
  int n = 0;
  while ((n = ::poll(&stop, 1, static_cast<int>(time.count()))) < 0 && errno == EINTR) {
  }
  return n > 0;
}

void LauncherWatch::watch() {
  // Only the launcher's end closes this connection: nothing is ever sent on it.
  std::array<pollfd, 2> fds{pollfd{stop_fd_, POLLIN, 0},
                            pollfd{client_->connection_handle(), POLLRDHUP, 0}};
  while (true) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::warn("rank {}: stopped watching ringfuse-run (poll: {})", rank_,
                   std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) return;
    if (fds[1].revents != 0) break;
  }
  spdlog::error(
      "rank {}: ringfuse-run (its rendezvous store at {}) has gone away while this rank runs: "
      "it was stopped or killed, and the rsh agent that started this rank did not pass that on "
      "(ssh without -tt does not). Stopping this rank as ringfuse-run would have: SIGTERM in "
      "{} s, SIGKILL {} s later",
      rank_, address_, kBeforeTerm.count() / 1000.0, kBeforeKill.count() / 1000.0);
  if (stopped_within(kBeforeTerm)) return;
  ::kill(::getpid(), SIGTERM);
  if (stopped_within(kBeforeKill)) return;
  ::kill(::getpid(), SIGKILL);
}

}  // namespace ringfuse
