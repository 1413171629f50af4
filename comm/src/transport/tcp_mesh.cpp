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

#include "core/errors.hpp"
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
// How far the sends of an exchange that also receives may run ahead of its receives, in
// 256 KiB pieces per connection: at N = 3, 64 MiB (perf/RESULTS.md, issue 17) the ranks' CPU
// time per all-reduce was 4-11 % lower with 1 piece than with no limit in send_recv_reduce in
// each of four alternating comparisons (4 pieces: in between), and about another tenth lower
// with the window in send_recv too, in six of seven.
constexpr std::size_t kWindowPieces = 1;
// A stripe smaller than this costs more in system calls than a second flow gains.
constexpr std::size_t kMinStripeBytes = std::size_t{256} << 10;
// Stripe boundaries fall on multiples of this: a multiple of every element size.
constexpr std::size_t kStripeAlignment = std::size_t{4} << 10;

/// One direction of one connection within an exchange: bytes [at, end) of the message remain.
struct Lane {
  int fd = -1;
  std::size_t at = 0;
  std::size_t end = 0;
  bool open() const { return at < end; }
};

}  // namespace

StripeLayout::StripeLayout(std::size_t bytes_, int streams) : bytes(bytes_) {
  const std::size_t wanted = static_cast<std::size_t>(std::clamp(streams, 1, kMaxStreamsPerPeer));
  count = bytes < 2 * kMinStripeBytes ? 1 : std::min(wanted, bytes / kMinStripeBytes);
  const std::size_t share = (bytes + count - 1) / count;
  stride = count == 1 ? bytes
                      : (share + kStripeAlignment - 1) / kStripeAlignment * kStripeAlignment;
}

TcpMesh::TcpMesh(int rank, int size, rendezvous::Store& store, MeshOptions options)
    : rank_(rank),
      size_(size),
      options_(std::move(options)),
      world_(store, options_.key_prefix),
      reports_(store, options_.report_prefix.empty() ? options_.key_prefix
                                                      : options_.report_prefix),
      abort_state_(options_.abort_state ? options_.abort_state
                                        : std::make_shared<AbortState>()) {
  if (options_.streams < 1 || options_.streams > kMaxStreamsPerPeer) {
    throw core::rank_error(ErrorKind::invalid_argument, options_.global_ranks(rank_),
                           "the TCP mesh: {} connections per peer asked for; "
                           "RINGFUSE_SOCKETS_PER_PEER must be in 1..{}",
                           options_.streams, kMaxStreamsPerPeer);
  }
  if (size_ <= 1) {
    links_.emplace_back(static_cast<std::size_t>(std::max(size_, 0)));
    waiter_.emplace(1, options_.peer_wait);
    return;
  }
  const auto deadline = Clock::now() + options_.connect_timeout;
  for (int stream = 0; stream < options_.streams; ++stream) {
    // Connection 0 keeps the key a mesh of one connection always used.
    const std::string key = stream == 0 ? "mesh/addr" : fmt::format("mesh/addr-{}", stream);
    const std::string purpose =
        options_.streams == 1
            ? "the TCP mesh"
            : fmt::format("the TCP mesh (connection {} of {})", stream + 1, options_.streams);
    links_.push_back(connect_full_mesh(rank_, size_, world_,
                                       full_mesh_options(options_, key, purpose), deadline));
  }
  peer_addresses_.resize(static_cast<std::size_t>(size_));
  local_.assign(static_cast<std::size_t>(size_), false);
  int local_ranks = 1;
  for (int peer = 0; peer < size_; ++peer) {
    const int fd = links_[0][static_cast<std::size_t>(peer)].fd();
    sockaddr_in own{};
    sockaddr_in theirs{};
    socklen_t own_length = sizeof(own);
    socklen_t their_length = sizeof(theirs);
    if (fd < 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&own), &own_length) != 0 ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&theirs), &their_length) != 0 ||
        own.sin_family != AF_INET) {
      continue;
    }
    if (own.sin_addr.s_addr == theirs.sin_addr.s_addr) {
      local_[static_cast<std::size_t>(peer)] = true;
      ++local_ranks;
      continue;
    }
    char address[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &theirs.sin_addr, address, sizeof(address));
    peer_addresses_[static_cast<std::size_t>(peer)] = address;
  }
  waiter_.emplace(local_ranks, options_.peer_wait);
  std::vector<std::string> hosts;
  for (int peer = 0; peer < size_; ++peer) hosts.push_back(options_.global_ranks.host(peer));
  name_hosts(hosts);
  spdlog::debug("rank {}: connected to {} peers, {} connection(s) each", rank_, size_ - 1,
                options_.streams);
}

void TcpMesh::name_hosts(const std::vector<std::string>& hosts) {
  elsewhere_.assign(static_cast<std::size_t>(size_), std::string{});
  for (int peer = 0; peer < size_ && static_cast<std::size_t>(peer) < peer_addresses_.size();
       ++peer) {
    const auto& address = peer_addresses_[static_cast<std::size_t>(peer)];
    if (address.empty()) continue;
    const std::string host =
        static_cast<std::size_t>(peer) < hosts.size() ? hosts[static_cast<std::size_t>(peer)] : "";
    elsewhere_[static_cast<std::size_t>(peer)] =
        fmt::format(" (rank {} is at {}{})", options_.global_ranks(peer), address,
                    host.empty() ? std::string{} : " on " + host);
  }
}

TcpMesh::~TcpMesh() {
  if (waiter_ && waiter_->checked() > 0) {
    spdlog::debug("rank {}: {}: checked before sleeping in {} waits, {} of them ended awake",
                  options_.global_ranks(rank_), options_.key_prefix, waiter_->checked(),
                  waiter_->caught());
  }
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

std::string TcpMesh::connection_label(std::size_t stream) const {
  if (options_.streams == 1) return {};
  return fmt::format(" (connection {} of {})", stream + 1, options_.streams);
}

template <class Place, class Landed>
void TcpMesh::exchange(int send_peer, const std::byte* out, std::size_t send_bytes,
                       int recv_peer, std::size_t recv_bytes, std::size_t window, Place&& place,
                       Landed&& landed) {
  check_exchange(rank_, size_, options_.global_ranks, operation_, aborted_, send_peer,
                 recv_peer);
  if (send_peer == kNoPeer) send_bytes = 0;
  if (recv_peer == kNoPeer) recv_bytes = 0;
  const StripeLayout send_layout(send_bytes, options_.streams);
  const StripeLayout recv_layout(recv_bytes, options_.streams);
  std::array<Lane, kMaxStreamsPerPeer> sends{};
  std::array<Lane, kMaxStreamsPerPeer> recvs{};
  std::size_t sends_open = 0;
  std::size_t recvs_open = 0;
  for (std::size_t i = 0; send_bytes > 0 && i < send_layout.count; ++i) {
    sends[i] = {links_[i][static_cast<std::size_t>(send_peer)].fd(), send_layout.begin(i),
                send_layout.end(i)};
    sends_open += sends[i].open() ? 1 : 0;
  }
  for (std::size_t i = 0; recv_bytes > 0 && i < recv_layout.count; ++i) {
    recvs[i] = {links_[i][static_cast<std::size_t>(recv_peer)].fd(), recv_layout.begin(i),
                recv_layout.end(i)};
    recvs_open += recvs[i].open() ? 1 : 0;
  }
  auto deadline = Clock::now() + options_.op_timeout;
  std::size_t sent = 0;      // bytes sent and received so far, over all connections
  std::size_t received = 0;
  // What may still be sent now: everything, or up to `window` past what has arrived.
  const auto allowance = [&] {
    if (window == 0 || received == recv_bytes) return send_bytes - sent;
    return sent < received + window ? received + window - sent : std::size_t{0};
  };

  while (sends_open > 0 || recvs_open > 0) {
    bool progressed = false;
    for (std::size_t i = 0; i < send_layout.count && sends_open > 0; ++i) {
      Lane& lane = sends[i];
      const std::size_t may = allowance();
      if (!lane.open() || may == 0) continue;
      const ssize_t n = ::send(lane.fd, out + lane.at,
                               std::min({lane.end - lane.at, kMaxIoBytes, may}),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        lane.at += static_cast<std::size_t>(n);
        sent += static_cast<std::size_t>(n);
        sends_open -= lane.open() ? 0 : 1;
        progressed = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(send_peer,
             fmt::format("sending to it failed{}: {}", connection_label(i), std::strerror(errno)),
             errno == EPIPE || errno == ECONNRESET);
      }
    }
    for (std::size_t i = 0; i < recv_layout.count && recvs_open > 0; ++i) {
      Lane& lane = recvs[i];
      if (!lane.open()) continue;
      const std::span<std::byte> into = place(i, lane.at);
      const ssize_t n = ::recv(lane.fd, into.data(),
                               std::min({into.size(), lane.end - lane.at, kMaxIoBytes}),
                               MSG_DONTWAIT);
      if (n > 0) {
        lane.at += static_cast<std::size_t>(n);
        received += static_cast<std::size_t>(n);
        recvs_open -= lane.open() ? 0 : 1;
        progressed = true;
        landed(i, static_cast<std::size_t>(n));
      } else if (n == 0) {
        fail(recv_peer, fmt::format("the connection was closed by the peer{}", connection_label(i)),
             true);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(recv_peer,
             fmt::format("receiving from it failed{}: {}", connection_label(i),
                         std::strerror(errno)),
             errno == ECONNRESET);
      }
    }
    if (progressed) {
      deadline = Clock::now() + options_.op_timeout;
      continue;
    }
    // poll() takes a descriptor twice (sending to and receiving from the same peer).
    std::array<pollfd, 2 * kMaxStreamsPerPeer> fds{};
    nfds_t count = 0;
    // A send held back by the window waits for a receive, not for room in its socket.
    for (std::size_t i = 0; i < send_layout.count && allowance() > 0; ++i) {
      if (sends[i].open()) fds[count++] = pollfd{sends[i].fd, POLLOUT, 0};
    }
    for (std::size_t i = 0; i < recv_layout.count; ++i) {
      if (recvs[i].open()) fds[count++] = pollfd{recvs[i].fd, POLLIN, 0};
    }
    // The peer waited for is the one whose bytes are still to come, or whose socket is full.
    const int awaited = recvs_open > 0 ? recv_peer : send_peer;
    wait_for(std::span<pollfd>(fds.data(), count), awaited, deadline);
  }
}

void TcpMesh::wait_for(std::span<pollfd> fds, int peer, PeerWait::Clock::time_point deadline) {
  const bool local = static_cast<std::size_t>(peer) < local_.size() &&
                     local_[static_cast<std::size_t>(peer)];
  if (waiter_->wait(fds, local, deadline) == 0) {
    stalled_ = true;
    // Not recorded in the rank's abort state: the engine's control channel uses this
    // timeout as its polling tick, so a stall here is not by itself a failure of the rank.
    throw stalled_peer_error(options_.global_ranks(rank_), operation_,
                             options_.global_ranks(peer), options_.op_timeout);
  }
}

void TcpMesh::send_recv(int send_peer, const void* send_buf, std::size_t send_bytes,
                        int recv_peer, void* recv_buf, std::size_t recv_bytes,
                        const RecvProgress& progress) {
  auto* in = static_cast<std::byte*>(recv_buf);
  const StripeLayout layout(recv_peer == kNoPeer ? 0 : recv_bytes, options_.streams);
  std::array<std::size_t, kMaxStreamsPerPeer> filled{};  // bytes landed in each stripe
  std::size_t reported = 0;
  // As in send_recv_reduce below: every caller that both sends and receives is a step that
  // all of its ranks run at once (a ring's all-gather, rhd's doubling, all-to-all's pairs, the
  // barrier), so the sends may wait for the receives (exchange() lifts the window when there
  // is nothing to receive).
  exchange(
      send_peer, static_cast<const std::byte*>(send_buf), send_bytes, recv_peer, recv_bytes,
      kWindowPieces * kReducePieceBytes * layout.count,
      [&](std::size_t, std::size_t at) {
        return std::span<std::byte>(in + at, recv_bytes - at);
      },
      [&](std::size_t stripe, std::size_t bytes) {
        filled[stripe] += bytes;
        if (!progress) return;
        // What the caller may read is the prefix that has arrived: the first stripes that are
        // complete, and what the first incomplete one holds.
        std::size_t prefix = 0;
        for (std::size_t i = 0; i < layout.count; ++i) {
          prefix += filled[i];
          if (layout.begin(i) + filled[i] < layout.end(i)) break;
        }
        if (prefix > reported && (prefix == recv_bytes || prefix - reported >= kProgressGranularity)) {
          progress(prefix);
          reported = prefix;
        }
      });
}

void TcpMesh::send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes,
                               int recv_peer, void* dst, std::size_t recv_count, DataType type,
                               ReduceOp op, const Staging& staging) {
  const std::size_t element_bytes = element_size(type);
  const std::size_t recv_bytes = recv_peer == kNoPeer ? 0 : recv_count * element_bytes;
  const StripeLayout layout(recv_bytes, options_.streams);
  const std::size_t piece = std::min(layout.stride, kReducePieceBytes);
  // One landing piece per stripe: each reduces what its connection delivered, in its own part
  // of `dst`.
  std::byte* landing = piece > 0 ? staging(piece * layout.count) : nullptr;
  auto* out = static_cast<std::byte*>(dst);
  // Bytes in each stripe's landing piece (always less than one element between receives),
  // and where in `dst` the stripe's next element reduces into.
  std::array<std::size_t, kMaxStreamsPerPeer> held{};
  std::array<std::size_t, kMaxStreamsPerPeer> next{};
  for (std::size_t i = 0; i < layout.count; ++i) next[i] = layout.begin(i);
  // Every caller is a reducing step that all of its ranks run at once (a ring's, or a pair's
  // in halving-doubling), so the sends may wait for the receives: with at most one reduce
  // piece per connection ahead, what the kernel copies into a socket is copied out on the
  // other side while it is still in cache, as in the pair step (tcp_reduce_and_return.cpp),
  // instead of megabytes waiting in socket buffers.
  exchange(
      send_peer, static_cast<const std::byte*>(send_buf), send_bytes, recv_peer, recv_bytes,
      kWindowPieces * piece * layout.count,
      [&](std::size_t stripe, std::size_t) {
        return std::span<std::byte>(landing + stripe * piece + held[stripe],
                                    piece - held[stripe]);
      },
      [&](std::size_t stripe, std::size_t bytes) {
        std::byte* const start = landing + stripe * piece;
        held[stripe] += bytes;
        const std::size_t whole = held[stripe] / element_bytes;
        if (whole == 0) return;
        reduce::reduce_into(out + next[stripe], start, whole, type, op);
        next[stripe] += whole * element_bytes;
        const std::size_t rest = held[stripe] - whole * element_bytes;
        if (rest > 0) std::memmove(start, start + whole * element_bytes, rest);
        held[stripe] = rest;
      });
}

bool TcpMesh::wait_readable(int peer, std::chrono::microseconds timeout) {
  check_exchange(rank_, size_, options_.global_ranks, operation_, aborted_, kNoPeer, peer);
  pollfd fd{links_[0][static_cast<std::size_t>(peer)].fd(), POLLIN, 0};
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
  links_.clear();  // closing every connection tells every neighbour at once
  spdlog::error("{}", message);
  throw Error(ErrorKind::peer_failure, message, global_rank, global_peer);
}

}  // namespace ringfuse::transport
