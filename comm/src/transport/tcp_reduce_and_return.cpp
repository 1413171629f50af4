// TcpMesh::reduce_and_return: the innermost halving-doubling step (all of an all-reduce at
// N = 2) as one exchange on one connection, in the order return_schedule.hpp fixes.
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <span>

#include <fmt/format.h>

#include "core/errors.hpp"
#include "reduce/reduce.hpp"
#include "transport/failure_report.hpp"
#include "transport/tcp_mesh.hpp"
#include "transport/return_schedule.hpp"

namespace ringfuse::transport {
namespace {

using Clock = std::chrono::steady_clock;

// Unreduced pieces sent before the first reduced one. One keeps the fewest bytes in flight,
// so what the kernel copies into a socket is copied out on the other side while it is still
// in cache: measured here at 64 MiB, N = 2, both ranks' CPU time per all-reduce fell from
// about 80 ms (two passes) to 70 ms with 4 and 46-54 ms with 1 (8: 70 ms, 16: 83-90 ms).
constexpr std::size_t kLookahead = 1;
// One sendmsg() gathers at most this many ready pieces, and this many bytes.
constexpr std::size_t kMaxGather = 32;
constexpr std::size_t kMaxIoBytes = std::size_t{4} << 20;

}  // namespace

void TcpMesh::reduce_and_return(int peer, std::byte* give, std::size_t give_count, std::byte* keep,
                                std::size_t keep_count, DataType type, ReduceOp op,
                                const Staging& staging, const Finish& finish) {
  if (options_.streams > 1 || peer == kNoPeer) {
    // Pieces go to whichever connection has room; the interleaved stream needs one connection.
    Transport::reduce_and_return(peer, give, give_count, keep, keep_count, type, op, staging,
                                 finish);
    return;
  }
  check_exchange(rank_, size_, options_.global_ranks, operation_, aborted_, peer, peer);
  const std::size_t element_bytes = element_size(type);
  const std::size_t piece_bytes =
      return_piece_bytes((give_count + keep_count) * element_bytes);
  const auto outgoing = return_schedule(give_count * element_bytes, keep_count * element_bytes,
                                        piece_bytes, kLookahead);
  // The peer's schedule: its `give` is our `keep`.
  const auto incoming = return_schedule(keep_count * element_bytes, give_count * element_bytes,
                                        piece_bytes, kLookahead);
  std::byte* const landing = keep_count > 0 ? staging(piece_bytes) : nullptr;
  const int fd = links_[0][static_cast<std::size_t>(peer)].fd();

  std::size_t send_index = 0;  // outgoing segment in progress, and its bytes already sent
  std::size_t sent = 0;
  std::size_t recv_index = 0;  // incoming segment in progress, and its bytes already received
  std::size_t received = 0;
  std::size_t held = 0;      // bytes in `landing` not reduced yet (less than one element)
  std::size_t reduced = 0;   // bytes of the incoming segment reduced into `keep`
  std::size_t finished = 0;  // pieces of `keep` reduced and finished: these may go back
  const auto ready = [&](const ReturnSegment& segment) {
    return segment.kind == ReturnSegment::give || segment.index < finished;
  };
  auto deadline = Clock::now() + options_.op_timeout;

  while (send_index < outgoing.size() || recv_index < incoming.size()) {
    bool progressed = false;
    const bool can_send = send_index < outgoing.size() && ready(outgoing[send_index]);
    if (can_send) {
      std::array<iovec, kMaxGather> gather{};
      std::size_t pieces = 0;
      std::size_t total = 0;
      for (std::size_t i = send_index;
           i < outgoing.size() && pieces < kMaxGather && total < kMaxIoBytes && ready(outgoing[i]);
           ++i) {
        const ReturnSegment& segment = outgoing[i];
        const std::size_t skip = i == send_index ? sent : 0;
        std::byte* from =
            (segment.kind == ReturnSegment::give ? give : keep) + segment.offset + skip;
        gather[pieces++] = iovec{from, segment.bytes - skip};
        total += segment.bytes - skip;
      }
      msghdr message{};
      message.msg_iov = gather.data();
      message.msg_iovlen = pieces;
      const ssize_t n = ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        for (auto left = static_cast<std::size_t>(n); left > 0;) {
          const std::size_t rest = outgoing[send_index].bytes - sent;
          if (left < rest) {
            sent += left;
            break;
          }
          left -= rest;
          ++send_index;
          sent = 0;
        }
        progressed = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(peer, fmt::format("sending to it failed: {}", std::strerror(errno)),
             errno == EPIPE || errno == ECONNRESET);
      }
    }
    if (recv_index < incoming.size()) {
      const ReturnSegment& segment = incoming[recv_index];
      // The peer's unreduced piece of our `keep` lands in cache and is reduced from there;
      // its finished piece of our `give` goes straight into place.
      const bool to_reduce = segment.kind == ReturnSegment::give;
      const ssize_t n =
          to_reduce ? ::recv(fd, landing + held,
                             std::min(piece_bytes - held, segment.bytes - received), MSG_DONTWAIT)
                    : ::recv(fd, give + segment.offset + received,
                             std::min(segment.bytes - received, kMaxIoBytes), MSG_DONTWAIT);
      if (n > 0) {
        received += static_cast<std::size_t>(n);
        progressed = true;
        if (to_reduce) {
          held += static_cast<std::size_t>(n);
          const std::size_t whole = held / element_bytes;
          if (whole > 0) {
            reduce::reduce_into(keep + segment.offset + reduced, landing, whole, type, op);
            reduced += whole * element_bytes;
            held -= whole * element_bytes;
            if (held > 0) std::memmove(landing, landing + whole * element_bytes, held);
          }
        }
        if (received == segment.bytes) {
          if (to_reduce) {
            if (finish) finish(keep + segment.offset, segment.bytes / element_bytes);
            ++finished;
          }
          ++recv_index;
          received = 0;
          reduced = 0;
        }
      } else if (n == 0) {
        fail(peer, "the connection was closed by the peer", true);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fail(peer, fmt::format("receiving from it failed: {}", std::strerror(errno)),
             errno == ECONNRESET);
      }
    }
    if (progressed) {
      deadline = Clock::now() + options_.op_timeout;
      continue;
    }
    // A reduced piece that is not ready waits for a receive, so there is always something
    // to wait for here.
    pollfd wait{
        fd,
        static_cast<short>((can_send ? POLLOUT : 0) | (recv_index < incoming.size() ? POLLIN : 0)),
        0};
    wait_for(std::span<pollfd>(&wait, 1), peer, deadline);
  }
}

}  // namespace ringfuse::transport
