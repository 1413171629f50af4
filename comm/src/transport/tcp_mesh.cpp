#include "transport/tcp_mesh.hpp"

#include "transport/failure_report.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

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
// what the kernel just wrote there. With several connections, a piece (tcp_pieces.hpp).
constexpr std::size_t kReducePieceBytes = kPieceBytes;
// How far the sends of an exchange that also receives may run ahead of its receives, in
// 256 KiB pieces per connection: at N = 3, 64 MiB (perf/RESULTS.md, issue 17) the ranks' CPU
// time per all-reduce was 4-11 % lower with 1 piece than with no limit in send_recv_reduce in
// each of four alternating comparisons (4 pieces: in between), and about another tenth lower
// with the window in send_recv too, in six of seven.
constexpr std::size_t kWindowPieces = 1;
// With several connections, a connection "has room" for another piece while less than this
// is queued in it unsent (TCP_NOTSENT_LOWAT: poll() reports it writable, and the kernel takes
// little more): without it the kernel takes megabytes into a slow connection's buffer, which
// then holds back the end of the step as a fixed stripe did.
constexpr int kUnsentLowWater = 128 << 10;
// ... and an idle connection takes a new piece only while less than this of what it was
// given has not been acknowledged yet (SIOCOUTQ: unsent, in a queue below TCP, or in flight).
// Without it, a shaped link's queues (TCP small queues lets a flow put a megabyte into the
// qdisc) took the whole window into the first connections, and the others stood idle.
constexpr int kUnackedLowWater = 64 << 10;
// How often a sender whose idle connections all still hold too much looks again: no event
// says that a queue has drained.
constexpr auto kQueueRecheck = std::chrono::milliseconds(1);

// Bytes given to the socket and not acknowledged yet (0 when unknown).
int unacknowledged(int fd) {
  int bytes = 0;
  return ::ioctl(fd, SIOCOUTQ, &bytes) == 0 ? bytes : 0;
}

/// One direction of one connection within an exchange: the piece in progress, bytes
/// [at, end) of the message, and the header still to go before it (sends) or still to come
/// (receives).
struct Lane {
  int fd = -1;
  std::size_t at = 0;
  std::size_t end = 0;
  std::array<std::byte, kPieceHeaderBytes> header{};
  std::size_t header_done = kPieceHeaderBytes;  // bytes of `header` sent, or received
  bool ending = false;    // sends: `header` is the end header
  bool finished = false;  // this connection's part of the message is over
  bool in_piece() const { return at < end; }
};

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
  sent_by_connection_.assign(static_cast<std::size_t>(size_), {});
  if (options_.streams > 1) {
    for (auto& connections : links_) {
      for (auto& connection : connections) {
        if (connection.fd() < 0) continue;
        const int low_water = kUnsentLowWater;
        (void)::setsockopt(connection.fd(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &low_water,
                           sizeof(low_water));
      }
    }
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
    spdlog::debug("rank {}: {}: checked before sleeping in {} waits, {} of them ended awake; "
                  "moved off a CPU its peer seemed to share {} times",
                  options_.global_ranks(rank_), options_.key_prefix, waiter_->checked(),
                  waiter_->caught(), waiter_->moved());
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
  const PieceLayout send_layout(send_bytes, options_.streams);
  const PieceLayout recv_layout(recv_bytes, options_.streams);
  // An unframed message is one piece on the first connection, with no header. A framed one
  // starts with every lane idle: pieces go out to lanes as they have room, and each receiving
  // lane starts with a header to read.
  std::array<Lane, kMaxStreamsPerPeer> sends{};
  std::array<Lane, kMaxStreamsPerPeer> recvs{};
  std::size_t sends_open = 0;
  std::size_t recvs_open = 0;
  std::uint64_t* sent_on = nullptr;  // by connection, this peer's counters
  if (send_bytes > 0) {
    for (std::size_t i = 0; i < send_layout.lanes; ++i) {
      sends[i].fd = links_[i][static_cast<std::size_t>(send_peer)].fd();
    }
    if (!send_layout.framed) sends[0].end = send_bytes;
    sends_open = send_layout.lanes;
    sent_on = sent_by_connection_[static_cast<std::size_t>(send_peer)].data();
  }
  if (recv_bytes > 0) {
    for (std::size_t i = 0; i < recv_layout.lanes; ++i) {
      recvs[i].fd = links_[i][static_cast<std::size_t>(recv_peer)].fd();
      recvs[i].header_done = 0;
    }
    if (!recv_layout.framed) recvs[0].end = recv_bytes;
    recvs_open = recv_layout.lanes;
  }
  std::size_t next_piece = 0;  // the first piece not handed to a lane yet
  auto deadline = Clock::now() + options_.op_timeout;
  std::size_t sent = 0;      // bytes of the message sent and received so far, headers aside
  std::size_t received = 0;
  // What may still be sent now: everything, or up to `window` past what has arrived.
  const auto allowance = [&] {
    if (window == 0 || received == recv_bytes) return send_bytes - sent;
    return sent < received + window ? received + window - sent : std::size_t{0};
  };
  // Set when an idle lane could take a piece but still holds too much unacknowledged.
  bool queue_full = false;
  // Whether a lane would send something if its socket had room.
  const auto has_to_send = [&](const Lane& lane) {
    if (lane.finished) return false;
    if (lane.header_done < kPieceHeaderBytes) return true;
    if (lane.in_piece()) return allowance() > 0;
    if (next_piece == send_layout.pieces) return true;  // the end header
    if (allowance() == 0) return false;
    if (unacknowledged(lane.fd) < kUnackedLowWater) return true;
    queue_full = true;
    return false;
  };

  while (sends_open > 0 || recvs_open > 0) {
    bool progressed = false;
    queue_full = false;
    for (std::size_t i = 0; i < send_layout.lanes && sends_open > 0; ++i) {
      Lane& lane = sends[i];
      if (!has_to_send(lane)) continue;
      if (!lane.in_piece() && lane.header_done == kPieceHeaderBytes) {
        // An idle lane of a framed message: it takes the next piece, or ends its part.
        if (next_piece < send_layout.pieces) {
          lane.at = send_layout.begin(next_piece);
          lane.end = lane.at + send_layout.length(next_piece);
          ++next_piece;
          encode_piece_header(lane.at, lane.header.data());
        } else {
          encode_piece_header(kEndOfPieces, lane.header.data());
          lane.ending = true;
        }
        lane.header_done = 0;
      }
      const std::size_t header_left = kPieceHeaderBytes - lane.header_done;
      const std::size_t payload =
          lane.in_piece() ? std::min({lane.end - lane.at, kMaxIoBytes, allowance()}) : 0;
      ssize_t n = 0;
      if (header_left == 0) {
        n = ::send(lane.fd, out + lane.at, payload, MSG_NOSIGNAL | MSG_DONTWAIT);
      } else {
        std::array<iovec, 2> parts{
            iovec{lane.header.data() + lane.header_done, header_left},
            iovec{const_cast<std::byte*>(out + lane.at), payload}};
        msghdr message{};
        message.msg_iov = parts.data();
        message.msg_iovlen = payload > 0 ? 2 : 1;
        n = ::sendmsg(lane.fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      if (n > 0) {
        auto left = static_cast<std::size_t>(n);
        sent_on[i] += left;
        const std::size_t of_header = std::min(left, header_left);
        lane.header_done += of_header;
        left -= of_header;
        lane.at += left;
        sent += left;
        if (lane.header_done == kPieceHeaderBytes && !lane.in_piece() &&
            (lane.ending || !send_layout.framed)) {
          lane.finished = true;
          --sends_open;
        }
        progressed = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(send_peer,
             fmt::format("sending to it failed{}: {}", connection_label(i), std::strerror(errno)),
             errno == EPIPE || errno == ECONNRESET);
      }
    }
    for (std::size_t i = 0; i < recv_layout.lanes && recvs_open > 0; ++i) {
      Lane& lane = recvs[i];
      if (lane.finished) continue;
      ssize_t n = 0;
      if (!lane.in_piece()) {
        // Between two pieces of a framed message: the next header.
        n = ::recv(lane.fd, lane.header.data() + lane.header_done,
                   kPieceHeaderBytes - lane.header_done, MSG_DONTWAIT);
        if (n > 0) {
          progressed = true;
          lane.header_done += static_cast<std::size_t>(n);
          if (lane.header_done < kPieceHeaderBytes) continue;
          lane.header_done = 0;
          const std::uint64_t offset = decode_piece_header(lane.header.data());
          if (offset == kEndOfPieces) {
            lane.finished = true;
            --recvs_open;
            if (recvs_open == 0 && received != recv_bytes) {
              fail(recv_peer,
                   fmt::format("it ended a {}-byte message after {} bytes{}: every rank must "
                               "run with the same RINGFUSE_SOCKETS_PER_PEER",
                               recv_bytes, received, connection_label(i)),
                   false);
            }
          } else if (offset >= recv_bytes || offset % kPieceBytes != 0) {
            fail(recv_peer,
                 fmt::format("it sent a piece at offset {} of a {}-byte message{}: every rank "
                             "must run with the same RINGFUSE_SOCKETS_PER_PEER",
                             offset, recv_bytes, connection_label(i)),
                 false);
          } else {
            lane.at = static_cast<std::size_t>(offset);
            lane.end = lane.at + recv_layout.length(lane.at / kPieceBytes);
          }
          continue;
        }
      } else {
        const std::span<std::byte> into = place(i, lane.at);
        n = ::recv(lane.fd, into.data(), std::min({into.size(), lane.end - lane.at, kMaxIoBytes}),
                   MSG_DONTWAIT);
        if (n > 0) {
          const std::size_t at = lane.at;
          lane.at += static_cast<std::size_t>(n);
          received += static_cast<std::size_t>(n);
          if (!recv_layout.framed && !lane.in_piece()) {
            lane.finished = true;
            --recvs_open;
          }
          progressed = true;
          landed(i, at, static_cast<std::size_t>(n));
          continue;
        }
      }
      if (n == 0) {
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
    for (std::size_t i = 0; i < send_layout.lanes; ++i) {
      if (send_bytes > 0 && has_to_send(sends[i])) fds[count++] = pollfd{sends[i].fd, POLLOUT, 0};
    }
    for (std::size_t i = 0; i < recv_layout.lanes; ++i) {
      if (recv_bytes > 0 && !recvs[i].finished) fds[count++] = pollfd{recvs[i].fd, POLLIN, 0};
    }
    // The peer waited for is the one whose bytes are still to come, or whose socket is full.
    const int awaited = recvs_open > 0 ? recv_peer : send_peer;
    if (queue_full && Clock::now() + kQueueRecheck < deadline) {
      // Nothing wakes us when a queue drains: look again soon, or sooner on an event.
      (void)::poll(fds.data(), count, static_cast<int>(kQueueRecheck.count()));
      continue;
    }
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
  const std::size_t bytes = recv_peer == kNoPeer ? 0 : recv_bytes;
  const PieceLayout layout(bytes, options_.streams);
  // Pieces arrive in any order, over several connections: what the caller may read is the
  // pieces complete from the start on, and what the first incomplete one holds (its bytes
  // arrive in order).
  std::vector<std::size_t> filled;  // by piece: bytes landed
  if (progress && layout.framed) filled.assign(layout.pieces, 0);
  std::size_t complete = 0;  // pieces [0, complete) have fully arrived
  std::size_t arrived = 0;   // unframed: bytes landed
  std::size_t reported = 0;
  // As in send_recv_reduce below: every caller that both sends and receives is a step that
  // all of its ranks run at once (a ring's all-gather, rhd's doubling, all-to-all's pairs, the
  // barrier), so the sends may wait for the receives (exchange() lifts the window when there
  // is nothing to receive).
  exchange(
      send_peer, static_cast<const std::byte*>(send_buf), send_bytes, recv_peer, recv_bytes,
      kWindowPieces * kReducePieceBytes * layout.lanes,
      [&](std::size_t, std::size_t at) {
        return std::span<std::byte>(in + at, recv_bytes - at);
      },
      [&](std::size_t, std::size_t at, std::size_t landed_bytes) {
        if (!progress) return;
        std::size_t prefix = 0;
        if (!layout.framed) {
          arrived += landed_bytes;
          prefix = arrived;
        } else {
          filled[at / kPieceBytes] += landed_bytes;
          while (complete < layout.pieces && filled[complete] == layout.length(complete)) {
            ++complete;
          }
          prefix = complete == layout.pieces ? bytes : layout.begin(complete) + filled[complete];
        }
        if (prefix > reported && (prefix == bytes || prefix - reported >= kProgressGranularity)) {
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
  const PieceLayout layout(recv_bytes, options_.streams);
  const std::size_t piece = std::min(recv_bytes, kReducePieceBytes);
  // One landing piece per connection: each reduces what its connection delivered into the
  // place in `dst` that the piece's header named. Pieces hold whole elements, so a piece
  // ends with nothing held back.
  std::byte* landing = piece > 0 ? staging(piece * layout.lanes) : nullptr;
  auto* out = static_cast<std::byte*>(dst);
  // Bytes in each connection's landing piece (always less than one element between
  // receives), and where in `dst` the first of them reduces into.
  std::array<std::size_t, kMaxStreamsPerPeer> held{};
  std::array<std::size_t, kMaxStreamsPerPeer> next{};
  // Every caller is a reducing step that all of its ranks run at once (a ring's, or a pair's
  // in halving-doubling), so the sends may wait for the receives: with at most one reduce
  // piece per connection ahead, what the kernel copies into a socket is copied out on the
  // other side while it is still in cache, as in the pair step (tcp_reduce_and_return.cpp),
  // instead of megabytes waiting in socket buffers.
  exchange(
      send_peer, static_cast<const std::byte*>(send_buf), send_bytes, recv_peer, recv_bytes,
      kWindowPieces * piece * layout.lanes,
      [&](std::size_t lane, std::size_t) {
        return std::span<std::byte>(landing + lane * piece + held[lane], piece - held[lane]);
      },
      [&](std::size_t lane, std::size_t at, std::size_t bytes) {
        std::byte* const start = landing + lane * piece;
        if (held[lane] == 0) next[lane] = at;
        held[lane] += bytes;
        const std::size_t whole = held[lane] / element_bytes;
        if (whole == 0) return;
        reduce::reduce_into(out + next[lane], start, whole, type, op);
        next[lane] += whole * element_bytes;
        const std::size_t rest = held[lane] - whole * element_bytes;
        if (rest > 0) std::memmove(start, start + whole * element_bytes, rest);
        held[lane] = rest;
      });
}

std::uint64_t TcpMesh::bytes_sent(int peer, int stream) const {
  if (peer < 0 || static_cast<std::size_t>(peer) >= sent_by_connection_.size() || stream < 0 ||
      stream >= options_.streams) {
    return 0;
  }
  return sent_by_connection_[static_cast<std::size_t>(peer)][static_cast<std::size_t>(stream)];
}

int TcpMesh::connection_fd(int peer, int stream) const {
  if (stream < 0 || static_cast<std::size_t>(stream) >= links_.size() || peer < 0 ||
      static_cast<std::size_t>(peer) >= links_[static_cast<std::size_t>(stream)].size()) {
    return -1;
  }
  return links_[static_cast<std::size_t>(stream)][static_cast<std::size_t>(peer)].fd();
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
