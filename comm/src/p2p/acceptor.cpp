#include "p2p/acceptor.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <system_error>

#include <spdlog/spdlog.h>

#include "core/thread_name.hpp"

namespace ringfuse::p2p {
namespace {

constexpr auto kHandshakeLimit = std::chrono::seconds(5);  // per accepted connection

transport::Socket make_eventfd() {
  transport::Socket fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd.valid()) throw std::system_error(errno, std::generic_category(), "eventfd()");
  return fd;
}

void signal(const transport::Socket& fd) {
  const std::uint64_t one = 1;
  (void)!::write(fd.fd(), &one, sizeof(one));
}

}  // namespace

Acceptor::Acceptor(const std::string& host, Identity self, std::chrono::milliseconds user_timeout)
    : self_(std::move(self)), user_timeout_(user_timeout), wake_(make_eventfd()),
      stop_(make_eventfd()), seen_(static_cast<std::size_t>(self_.size), false) {
  auto [listener, port] = transport::listen_on(host, self_.size + 8);
  listener_ = std::move(listener);
  port_ = port;
  thread_ = std::thread([this] {
    core::name_this_thread("rf-p2p-accept");
    run();
  });
}

Acceptor::~Acceptor() {
  signal(stop_);
  if (thread_.joinable()) thread_.join();
}

std::vector<Acceptor::Accepted> Acceptor::take() {
  std::uint64_t count = 0;
  (void)!::read(wake_.fd(), &count, sizeof(count));
  std::lock_guard lock(mutex_);
  return std::exchange(ready_, {});
}

void Acceptor::run() {
  while (true) {
    pollfd fds[2] = {{listener_.fd(), POLLIN, 0}, {stop_.fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
      spdlog::error("rank {}: {}: poll() on the listener failed; no further peer can connect",
                    self_.global_ranks(self_.rank), self_.purpose);
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    transport::Socket socket(
        ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!socket.valid()) continue;
    transport::configure_data_socket(socket.fd(), user_timeout_);
    const auto deadline = std::chrono::steady_clock::now() + kHandshakeLimit;
    const int peer = authenticate_connector(socket, self_, deadline);
    if (peer < 0) continue;
    std::unique_ptr<ShmPipe> pipe;
    try {
      pipe = accept_pipe(socket, deadline);
    } catch (const std::exception& e) {
      spdlog::warn("rank {}: {}: refused rank {}'s connection: {}", self_.global_ranks(self_.rank),
                   self_.purpose, self_.global_ranks(peer), e.what());
      continue;
    }
    if (seen_[peer]) {
      spdlog::warn("rank {}: {}: refused a second connection from rank {}",
                   self_.global_ranks(self_.rank), self_.purpose, self_.global_ranks(peer));
      continue;
    }
    seen_[peer] = true;
    {
      std::lock_guard lock(mutex_);
      ready_.push_back(Accepted{peer, std::move(socket), std::move(pipe)});
    }
    signal(wake_);
  }
}

}  // namespace ringfuse::p2p
