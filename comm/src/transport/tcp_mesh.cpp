#include "transport/tcp_mesh.hpp"

#include "transport/failure_report.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <span>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "rendezvous/prefix_store.hpp"
#include "transport/full_mesh.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxIoBytes = std::size_t{4} << 20;
constexpr std::size_t kProgressGranularity = std::size_t{256} << 10;
// What send_recv_reduce receives before it reduces: well inside L2, so the reduction reads
// what the kernel just wrote there.
constexpr std::size_t kReducePieceBytes = std::size_t{256} << 10;

}  // namespace

TcpMesh::TcpMesh(int rank, int size, rendezvous::Store& store, MeshOptions options)
    : rank_(rank),
      size_(size),
      options_(std::move(options)),
      world_(store, options_.key_prefix),
      reports_(store, options_.report_prefix.empty() ? options_.key_prefix
                                                      : options_.report_prefix),
      abort_state_(options_.abort_state ? options_.abort_state
                                        : std::make_shared<AbortState>()) {
  if (size_ <= 1) {
    peers_.resize(static_cast<std::size_t>(std::max(size_, 0)));
    return;
  }
  peers_ = connect_full_mesh(rank_, size_, world_,
                             full_mesh_options(options_, "mesh/addr", "the TCP mesh"),
                             Clock::now() + options_.connect_timeout);
  elsewhere_.resize(peers_.size());
  for (int peer = 0; peer < size_; ++peer) {
    const int fd = peers_[static_cast<std::size_t>(peer)].fd();
    sockaddr_in own{};
    sockaddr_in theirs{};
    socklen_t own_length = sizeof(own);
    socklen_t their_length = sizeof(theirs);
    if (fd < 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&own), &own_length) != 0 ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&theirs), &their_length) != 0 ||
        own.sin_family != AF_INET || own.sin_addr.s_addr == theirs.sin_addr.s_addr) {
      continue;
    }
    char address[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &theirs.sin_addr, address, sizeof(address));
    elsewhere_[static_cast<std::size_t>(peer)] =
        fmt::format(" (rank {} is at {})", options_.global_ranks(peer), address);
  }
  spdlog::debug("rank {}: connected to {} peers", rank_, size_ - 1);
}

TcpMesh::~TcpMesh() {
  // Only a healthy mesh of a healthy rank says goodbye: after a failure or a timeout the
  // store may be as unreachable as the peer, and a destructor must not wait for it; and a
  // rank that failed on another channel is not leaving in order.
  if (size_ <= 1 || aborted_ || stalled_ || abort_state_->reason()) return;
  try {
    record_orderly_close(reports_, options_.global_ranks(rank_));
  } catch (const std::exception& e) {
    spdlog::debug("rank {}: could not record an orderly close: {}", rank_, e.what());
  }
}

template <class Place, class Landed>
void TcpMesh::exchange(int send_peer, const std::byte* out, std::size_t send_bytes,
                       int recv_peer, std::size_t recv_bytes, Place&& place, Landed&& landed) {
  check_exchange(rank_, size_, options_.global_ranks, operation_, aborted_, send_peer,
                 recv_peer);
  if (send_peer == kNoPeer) send_bytes = 0;
  if (recv_peer == kNoPeer) recv_bytes = 0;
  const int send_fd = send_bytes > 0 ? peers_[send_peer].fd() : -1;
  const int recv_fd = recv_bytes > 0 ? peers_[recv_peer].fd() : -1;
  std::size_t sent = 0;
  std::size_t received = 0;
  auto deadline = Clock::now() + options_.op_timeout;

  while (sent < send_bytes || received < recv_bytes) {
    bool progressed = false;
    if (sent < send_bytes) {
      const ssize_t n = ::send(send_fd, out + sent, std::min(send_bytes - sent, kMaxIoBytes),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        progressed = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(send_peer, fmt::format("sending to it failed: {}", std::strerror(errno)),
             errno == EPIPE || errno == ECONNRESET);
      }
    }
    if (received < recv_bytes) {
      const std::span<std::byte> into = place(received);
      const ssize_t n = ::recv(recv_fd, into.data(),
                               std::min({into.size(), recv_bytes - received, kMaxIoBytes}),
                               MSG_DONTWAIT);
      if (n > 0) {
        received += static_cast<std::size_t>(n);
        progressed = true;
        landed(static_cast<std::size_t>(n));
      } else if (n == 0) {
        fail(recv_peer, "the connection was closed by the peer", true);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(recv_peer, fmt::format("receiving from it failed: {}", std::strerror(errno)),
             errno == ECONNRESET);
      }
    }
    if (progressed) {
      deadline = Clock::now() + options_.op_timeout;
      continue;
    }
    std::array<pollfd, 2> fds{};
    nfds_t count = 0;
    if (send_fd >= 0 && sent < send_bytes) fds[count++] = pollfd{send_fd, POLLOUT, 0};
    if (recv_fd >= 0 && received < recv_bytes) {
      if (count == 1 && fds[0].fd == recv_fd) {
        fds[0].events |= POLLIN;
      } else {
        fds[count++] = pollfd{recv_fd, POLLIN, 0};
      }
    }
    const int ready = ::poll(fds.data(), count, poll_timeout_ms(deadline));
    if (ready == 0) {
      const int stalled = received < recv_bytes ? recv_peer : send_peer;
      stalled_ = true;
      // Not recorded in the rank's abort state: the engine's control channel uses this
      // timeout as its polling tick, so a stall here is not by itself a failure of the rank.
      throw stalled_peer_error(options_.global_ranks(rank_), operation_,
                               options_.global_ranks(stalled), options_.op_timeout);
    }
  }
}

void TcpMesh::send_recv(int send_peer, const void* send_buf, std::size_t send_bytes,
                        int recv_peer, void* recv_buf, std::size_t recv_bytes,
                        const RecvProgress& progress) {
  auto* in = static_cast<std::byte*>(recv_buf);
  std::size_t received = 0;
  std::size_t reported = 0;
  exchange(
      send_peer, static_cast<const std::byte*>(send_buf), send_bytes, recv_peer, recv_bytes,
      [&](std::size_t at) { return std::span<std::byte>(in + at, recv_bytes - at); },
      [&](std::size_t bytes) {
        received += bytes;
        if (progress && (received == recv_bytes || received - reported >= kProgressGranularity)) {
          progress(received);
          reported = received;
        }
      });
}

void TcpMesh::send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes,
                               int recv_peer, void* dst, std::size_t recv_count, DataType type,
                               ReduceOp op, const Staging& staging) {
  const std::size_t element_bytes = element_size(type);
  const std::size_t recv_bytes = recv_peer == kNoPeer ? 0 : recv_count * element_bytes;
  const std::size_t piece = std::min(recv_bytes, kReducePieceBytes);
  std::byte* landing = piece > 0 ? staging(piece) : nullptr;
  auto* out = static_cast<std::byte*>(dst);
  std::size_t held = 0;  // bytes in `landing`: always less than one element between receives
  exchange(
      send_peer, static_cast<const std::byte*>(send_buf), send_bytes, recv_peer, recv_bytes,
      [&](std::size_t) { return std::span<std::byte>(landing + held, piece - held); },
      [&](std::size_t bytes) {
        held += bytes;
        const std::size_t whole = held / element_bytes;
        if (whole == 0) return;
        reduce::reduce_into(out, landing, whole, type, op);
        out += whole * element_bytes;
        const std::size_t rest = held - whole * element_bytes;
        if (rest > 0) std::memmove(landing, landing + whole * element_bytes, rest);
        held = rest;
      });
}

bool TcpMesh::wait_readable(int peer, std::chrono::microseconds timeout) {
  check_exchange(rank_, size_, options_.global_ranks, operation_, aborted_, kNoPeer, peer);
  pollfd fd{peers_[static_cast<std::size_t>(peer)].fd(), POLLIN, 0};
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  const timespec wait{static_cast<time_t>(seconds.count()),
                      static_cast<long>((timeout - seconds).count() * 1000)};
  const int ready = ::ppoll(&fd, 1, &wait, nullptr);
  if (ready < 0 && errno != EINTR) {
    fail(peer, fmt::format("waiting for it failed: {}", std::strerror(errno)), false);
  }
  // POLLHUP/POLLERR count too: the receive that follows reports how the peer went.
  return ready > 0;
}

void TcpMesh::fail(int peer, std::string what, bool peer_closed) {
  const int global_rank = options_.global_ranks(rank_);
  const int global_peer = options_.global_ranks(peer);
  if (peer >= 0 && static_cast<std::size_t>(peer) < elsewhere_.size()) {
    what += elsewhere_[static_cast<std::size_t>(peer)];
  }
  const std::string message = describe_lost_peer(reports_, global_rank, operation_, global_peer,
                                                 what, peer_closed);
  aborted_ = message;
  abort_state_->record(message);
  peers_.clear();  // closing every connection tells every neighbour at once
  spdlog::error("{}", message);
  throw Error(ErrorKind::peer_failure, message, global_rank, global_peer);
}

}  // namespace ringfuse::transport
