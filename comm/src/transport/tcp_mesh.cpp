#include "transport/tcp_mesh.hpp"

#include "transport/failure_report.hpp"

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

#include "rendezvous/auth.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kHelloMagic = 0x52465345;  // "RFSE"
constexpr std::uint32_t kProtocolVersion = 1;
constexpr std::size_t kMaxIoBytes = std::size_t{4} << 20;
constexpr std::size_t kProgressGranularity = std::size_t{256} << 10;
// What send_recv_reduce receives before it reduces: well inside L2, so the reduction reads
// what the kernel just wrote there.
constexpr std::size_t kReducePieceBytes = std::size_t{256} << 10;

std::uint32_t fnv1a(std::string_view text) {
  std::uint32_t hash = 2166136261u;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 16777619u;
  }
  return hash;
}

struct Hello {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint32_t rank;
  std::uint32_t job_hash;
  std::array<char, rendezvous::auth::kNonceBytes> nonce;
};

using Proof = std::array<char, rendezvous::auth::kProofBytes>;

std::string_view view(const std::array<char, rendezvous::auth::kNonceBytes>& nonce) {
  return {nonce.data(), nonce.size()};
}

/// Each side's proof binds both nonces and both ranks, so it is good for this one connection.
Proof mesh_proof(const std::string& secret, std::string_view side, const Hello& from,
                 const Hello& to) {
  const auto digest = rendezvous::auth::proof(
      secret, fmt::format("mesh-{}-{}-{}", side, from.rank, to.rank), view(from.nonce),
      view(to.nonce));
  Proof proof{};
  std::copy(digest.begin(), digest.end(), proof.begin());
  return proof;
}

Hello make_hello(int rank, const std::string& job_id) {
  Hello hello{kHelloMagic, kProtocolVersion, static_cast<std::uint32_t>(rank), fnv1a(job_id), {}};
  const auto nonce = rendezvous::auth::random_nonce();
  std::copy(nonce.begin(), nonce.end(), hello.nonce.begin());
  return hello;
}



std::string address_key(const std::string& prefix, int rank) {
  return fmt::format("{}mesh/addr/{}", prefix, rank);
}

std::pair<std::string, std::uint16_t> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  return {address.substr(0, colon),
          static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))};
}

}  // namespace

TcpMesh::TcpMesh(int rank, int size, rendezvous::Store& store, MeshOptions options)
    : rank_(rank), size_(size), store_(store), options_(std::move(options)), peers_(size) {
  if (size_ <= 1) return;
  const auto deadline = Clock::now() + options_.connect_timeout;
  auto [listener, port] = listen_on(options_.advertise_host, size_ + 8);
  store_.set(address_key(options_.key_prefix, rank_), fmt::format("{}:{}", options_.advertise_host, port));

  std::vector<std::string> keys;
  for (int peer = 0; peer < rank_; ++peer) keys.push_back(address_key(options_.key_prefix, peer));
  std::vector<std::string> addresses;
  if (!keys.empty()) {
    store_.wait(keys, options_.connect_timeout);
    for (const auto& key : keys) addresses.push_back(store_.get(key, options_.connect_timeout));
  }
  connect_to_lower_ranks(addresses, deadline);
  accept_from_higher_ranks(listener, deadline);
  spdlog::debug("rank {}: connected to {} peers", rank_, size_ - 1);
}

TcpMesh::~TcpMesh() {
  // Only a healthy mesh says goodbye: after a failure or a timeout the store may be as
  // unreachable as the peer, and a destructor must not wait for it.
  if (size_ <= 1 || aborted_ || stalled_) return;
  try {
    record_orderly_close(store_, options_.key_prefix, rank_);
  } catch (const std::exception& e) {
    spdlog::debug("rank {}: could not record an orderly close: {}", rank_, e.what());
  }
}

void TcpMesh::connect_to_lower_ranks(const std::vector<std::string>& addresses,
                                     Clock::time_point deadline) {
  for (int peer = 0; peer < rank_; ++peer) {
    const Hello hello = make_hello(rank_, options_.job_id);
    const auto& address = addresses[peer];
    const auto [host, port] = split_address(address);
    Socket socket;
    Hello reply{};
    Proof acceptor_proof{};
    try {
      socket = connect_with_retry(host, port, deadline);
      configure_data_socket(socket.fd(), options_.user_timeout);
      if (!write_all(socket.fd(), &hello, sizeof(hello), deadline) ||
          !read_all(socket.fd(), &reply, sizeof(reply), deadline) ||
          !read_all(socket.fd(), acceptor_proof.data(), acceptor_proof.size(), deadline)) {
        throw Error(ErrorKind::timeout,
                    fmt::format("rank {}: timed out connecting to rank {} at {}", rank_, peer,
                                address),
                    rank_, peer);
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorKind::peer_failure,
                  fmt::format("rank {}: cannot connect to rank {} at {}: {}", rank_, peer,
                              address, e.what()),
                  rank_, peer);
    }
    if (reply.magic != kHelloMagic || reply.rank != static_cast<std::uint32_t>(peer) ||
        reply.job_hash != hello.job_hash) {
      throw Error(ErrorKind::protocol,
                  fmt::format("rank {}: {} answered as rank {} of another job or protocol; "
                              "check that RINGFUSE_JOB_ID and RINGFUSE_STORE_ADDR are the same "
                              "for every rank",
                              rank_, address, reply.rank),
                  rank_, peer);
    }
    const Proof expected = mesh_proof(options_.secret, "acceptor", reply, hello);
    if (!rendezvous::auth::proofs_equal({acceptor_proof.data(), acceptor_proof.size()},
                                        {expected.data(), expected.size()})) {
      throw Error(ErrorKind::peer_failure,
                  fmt::format("rank {}: rank {} at {} could not prove this job's secret; "
                              "RINGFUSE_JOB_SECRET must be the same for every rank",
                              rank_, peer, address),
                  rank_, peer);
    }
    const Proof own_proof = mesh_proof(options_.secret, "connector", hello, reply);
    if (!write_all(socket.fd(), own_proof.data(), own_proof.size(), deadline)) {
      throw Error(ErrorKind::timeout,
                  fmt::format("rank {}: timed out authenticating to rank {} at {}", rank_, peer,
                              address),
                  rank_, peer);
    }
    peers_[peer] = Peer{std::move(socket), address};
  }
}

void TcpMesh::accept_from_higher_ranks(Socket& listener, Clock::time_point deadline) {
  int missing = size_ - 1 - rank_;
  const std::uint32_t job_hash = fnv1a(options_.job_id);
  while (missing > 0) {
    pollfd pfd{listener.fd(), POLLIN, 0};
    const int ready = ::poll(&pfd, 1, poll_timeout_ms(deadline));
    if (ready == 0) {
      std::vector<int> absent;
      for (int peer = rank_ + 1; peer < size_; ++peer) {
        if (!peers_[peer].socket.valid()) absent.push_back(peer);
      }
      throw Error(ErrorKind::timeout,
                  fmt::format("rank {}: ranks [{}] did not connect within {} s; are they "
                              "running, and can they reach this host?",
                              rank_, fmt::join(absent, ","),
                              options_.connect_timeout.count() / 1000),
                  rank_, absent.front());
    }
    sockaddr_storage remote{};
    socklen_t remote_len = sizeof(remote);
    Socket socket(::accept4(listener.fd(), reinterpret_cast<sockaddr*>(&remote), &remote_len,
                            SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!socket.valid()) continue;
    configure_data_socket(socket.fd(), options_.user_timeout);
    Hello hello{};
    const auto hello_deadline = std::min(deadline, Clock::now() + std::chrono::seconds(5));
    bool valid = false;
    try {
      valid = read_all(socket.fd(), &hello, sizeof(hello), hello_deadline) &&
              hello.magic == kHelloMagic && hello.version == kProtocolVersion &&
              hello.job_hash == job_hash && hello.rank > static_cast<std::uint32_t>(rank_) &&
              hello.rank < static_cast<std::uint32_t>(size_) &&
              !peers_[hello.rank].socket.valid();
    } catch (const std::exception& e) {
      spdlog::warn("rank {}: dropped a connection during set-up: {}", rank_, e.what());
      continue;
    }
    if (!valid) {
      spdlog::warn("rank {}: refused a connection that is not a peer of this job (bad hello)",
                   rank_);
      continue;
    }
    // The connector proves the secret only after we have, so nothing of ours is an oracle
    // for a process that lacks it; our proof binds its nonce, so it cannot be replayed.
    const Hello own = make_hello(rank_, options_.job_id);
    const Proof own_proof = mesh_proof(options_.secret, "acceptor", own, hello);
    Proof connector_proof{};
    try {
      if (!write_all(socket.fd(), &own, sizeof(own), hello_deadline) ||
          !write_all(socket.fd(), own_proof.data(), own_proof.size(), hello_deadline) ||
          !read_all(socket.fd(), connector_proof.data(), connector_proof.size(),
                    hello_deadline)) {
        spdlog::warn("rank {}: refused a connection claiming to be rank {}: it did not finish "
                     "authenticating in time",
                     rank_, hello.rank);
        continue;
      }
    } catch (const std::exception& e) {
      spdlog::warn("rank {}: refused a connection claiming to be rank {}: {} (wrong job secret?)",
                   rank_, hello.rank, e.what());
      continue;
    }
    const Proof expected = mesh_proof(options_.secret, "connector", hello, own);
    if (!rendezvous::auth::proofs_equal({connector_proof.data(), connector_proof.size()},
                                        {expected.data(), expected.size()})) {
      spdlog::warn("rank {}: refused a connection claiming to be rank {}: wrong job secret "
                   "(RINGFUSE_JOB_SECRET differs from this job's)",
                   rank_, hello.rank);
      continue;
    }
    const int peer = static_cast<int>(hello.rank);
    peers_[peer] = Peer{std::move(socket), fmt::format("rank {}", peer)};
    --missing;
  }
}


template <class Place, class Landed>
void TcpMesh::exchange(int send_peer, const std::byte* out, std::size_t send_bytes,
                       int recv_peer, std::size_t recv_bytes, Place&& place, Landed&& landed) {
  check_exchange(rank_, size_, operation_, aborted_, send_peer, recv_peer);
  if (send_peer == kNoPeer) send_bytes = 0;
  if (recv_peer == kNoPeer) recv_bytes = 0;
  const int send_fd = send_bytes > 0 ? peers_[send_peer].socket.fd() : -1;
  const int recv_fd = recv_bytes > 0 ? peers_[recv_peer].socket.fd() : -1;
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
      throw stalled_peer_error(rank_, operation_, stalled, options_.op_timeout);
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

void TcpMesh::fail(int peer, std::string what, bool peer_closed) {
  const std::string message = describe_lost_peer(store_, options_.key_prefix, rank_, operation_,
                                                 peer, what, peer_closed);
  aborted_ = message;
  peers_.clear();  // closing every connection tells every neighbour at once
  spdlog::error("{}", message);
  throw Error(ErrorKind::peer_failure, message, rank_, peer);
}

}  // namespace ringfuse::transport
