#include "transport/full_mesh.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "core/errors.hpp"
#include "rendezvous/auth.hpp"
#include "transport/ended_peers.hpp"
#include "transport/group_gather.hpp"
#include "transport/hello.hpp"
#include "transport/tcp_mesh.hpp"

namespace ringfuse::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kHelloMagic = 0x52465345;  // "RFSE"
constexpr auto kHandshakeLimit = std::chrono::seconds(5);  // per accepted connection
// How often a rank waiting for higher ranks to connect looks for one whose process ended.
constexpr auto kEndedPeerCheckEvery = std::chrono::milliseconds(500);

Hello make_hello(int rank, const std::string& job_id) {
  return transport::make_hello(kHelloMagic, rank, job_id);
}

/// Each side's proof binds both nonces and both ranks, so it is good for this one connection.
Proof mesh_proof(const std::string& secret, std::string_view side, const Hello& from,
                 const Hello& to) {
  return make_proof(secret, "mesh", side, from, to);
}

std::pair<std::string, std::uint16_t> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  return {address.substr(0, colon),
          static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))};
}

class MeshSetUp {
 public:
  MeshSetUp(int rank, int size, const FullMeshOptions& options, Clock::time_point deadline)
      : rank_(rank), size_(size), options_(options), deadline_(deadline),
        peers_(static_cast<std::size_t>(size)) {}

  std::vector<Socket> run(rendezvous::Store& store) {
    store_ = &store;
    auto [listener, port] = listen_on(options_.advertise_host, size_ + 8);
    const auto wait = std::max(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()),
        std::chrono::milliseconds(1));
    // Only the lower ranks' listeners are needed: rank 0 accepts at once.
    const auto addresses = gather_first_in_group(
        store, options_.address_key, fmt::format("{}:{}", options_.advertise_host, port), rank_,
        rank_, wait, global_, options_.purpose + ": publishing listeners");
    for (int peer = 0; peer < rank_; ++peer) connect_to(peer, addresses[peer]);
    accept_higher_ranks(listener);
    return std::move(peers_);
  }

 private:
  void connect_to(int peer, const std::string& address) {
    const Hello hello = make_hello(rank_, options_.job_id);
    Socket socket;
    Hello reply{};
    Proof acceptor_proof{};
    try {
      const auto [host, port] = split_address(address);
      socket = connect_with_retry(host, port, deadline_, options_.advertise_host);
      configure_data_socket(socket.fd(), options_.user_timeout);
      if (!write_all(socket.fd(), &hello, sizeof(hello), deadline_) ||
          !read_all(socket.fd(), &reply, sizeof(reply), deadline_)) {
        throw core::error_at(ErrorKind::timeout, global_(rank_), global_(peer),
                             "{}: timed out connecting to {} at {}", options_.purpose,
                             global_.name(peer), address);
      }
      // A listener of another version answers with its hello and no proof.
      if (of_another_version(reply, kHelloMagic, options_.job_id)) {
        throw core::error_at(ErrorKind::protocol, global_(rank_), global_(peer), "{}: {}",
                             options_.purpose,
                             wire_version_mismatch(reply.version,
                                                   fmt::format("{} (at {})", global_.name(peer),
                                                               address)));
      }
      if (!read_all(socket.fd(), acceptor_proof.data(), acceptor_proof.size(), deadline_)) {
        throw core::error_at(ErrorKind::timeout, global_(rank_), global_(peer),
                             "{}: timed out connecting to {} at {}", options_.purpose,
                             global_.name(peer), address);
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw core::error_at(ErrorKind::peer_failure, global_(rank_), global_(peer),
                           "{}: cannot connect to {} at {}: {}", options_.purpose,
                           global_.name(peer), address, e.what());
    }
    if (reply.magic != kHelloMagic || reply.rank != static_cast<std::uint32_t>(peer) ||
        reply.job_hash != hello.job_hash) {
      throw core::error_at(ErrorKind::protocol, global_(rank_), global_(peer),
                           "{}: {} (the listener of {}) answered as position {} of another job "
                           "or protocol; check that RINGFUSE_JOB_ID and RINGFUSE_STORE_ADDR are "
                           "the same for every rank",
                           options_.purpose, address, global_.name(peer), reply.rank);
    }
    if (!proofs_match(acceptor_proof, mesh_proof(options_.secret, "acceptor", reply, hello))) {
      throw core::error_at(ErrorKind::peer_failure, global_(rank_), global_(peer),
                           "{}: {} at {} could not prove this job's secret; "
                           "RINGFUSE_JOB_SECRET must be the same for every rank",
                           options_.purpose, global_.name(peer), address);
    }
    const Proof own_proof = mesh_proof(options_.secret, "connector", hello, reply);
    if (!write_all(socket.fd(), own_proof.data(), own_proof.size(), deadline_)) {
      throw core::error_at(ErrorKind::timeout, global_(rank_), global_(peer),
                           "{}: timed out authenticating to {} at {}", options_.purpose,
                           global_.name(peer), address);
    }
    peers_[peer] = std::move(socket);
  }

  void accept_higher_ranks(Socket& listener) {
    for (int missing = size_ - 1 - rank_; missing > 0;) {
      pollfd pfd{listener.fd(), POLLIN, 0};
      const auto slice = std::min(deadline_, Clock::now() + kEndedPeerCheckEvery);
      if (::poll(&pfd, 1, poll_timeout_ms(slice)) == 0) {
        if (Clock::now() >= deadline_) throw absent_ranks();
        give_up_on_ended_peers(*store_, global_, rank_, [&] {
          std::vector<int> absent;
          for (int peer = rank_ + 1; peer < size_; ++peer) {
            if (!peers_[peer].valid()) absent.push_back(peer);
          }
          return absent;
        }, options_.purpose);
        continue;
      }
      Socket socket(::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!socket.valid()) continue;
      configure_data_socket(socket.fd(), options_.user_timeout);
      if (const int peer = authenticate(socket); peer >= 0) {
        peers_[peer] = std::move(socket);
        --missing;
      }
    }
  }

  /// The peer rank the connection proved to be, or -1 (logged) when it is refused.
  int authenticate(const Socket& socket) {
    const auto limit = std::min(deadline_, Clock::now() + kHandshakeLimit);
    Hello hello{};
    try {
      if (!read_all(socket.fd(), &hello, sizeof(hello), limit)) {
        spdlog::warn("rank {}: {}: refused a connection that sent no complete hello within {} s",
                     global_(rank_), options_.purpose, kHandshakeLimit.count());
        return -1;
      }
    } catch (const std::exception& e) {
      spdlog::warn("rank {}: {}: dropped a connection during set-up: {}", global_(rank_),
                   options_.purpose, e.what());
      return -1;
    }
    if (of_another_version(hello, kHelloMagic, options_.job_id)) {
      // Our hello tells it why (nothing secret: no proof is sent), then the job goes on
      // waiting for a peer of this build.
      const Hello own = make_hello(rank_, options_.job_id);
      try {
        (void)write_all(socket.fd(), &own, sizeof(own), limit);
      } catch (const std::exception&) {
        // Gone already: the log below is all there is to say.
      }
      spdlog::error("rank {}: {}: refused a connection: {}", global_(rank_), options_.purpose,
                    wire_version_mismatch(hello.version,
                                          fmt::format("the rank claiming position {}",
                                                      hello.rank)));
      return -1;
    }
    if (hello.magic != kHelloMagic || hello.version != kHelloVersion ||
        hello.job_hash != job_hash(options_.job_id) ||
        hello.rank <= static_cast<std::uint32_t>(rank_) ||
        hello.rank >= static_cast<std::uint32_t>(size_) || peers_[hello.rank].valid()) {
      spdlog::warn("rank {}: {}: refused a connection that is not a peer of this job (bad hello)",
                   global_(rank_), options_.purpose);
      return -1;
    }
    // The connector proves the secret only after we have, so nothing of ours is an oracle
    // for a process that lacks it; our proof binds its nonce, so it cannot be replayed.
    const Hello own = make_hello(rank_, options_.job_id);
    const Proof own_proof = mesh_proof(options_.secret, "acceptor", own, hello);
    Proof connector_proof{};
    try {
      if (!write_all(socket.fd(), &own, sizeof(own), limit) ||
          !write_all(socket.fd(), own_proof.data(), own_proof.size(), limit) ||
          !read_all(socket.fd(), connector_proof.data(), connector_proof.size(), limit)) {
        spdlog::warn("rank {}: {}: refused a connection claiming to be rank {}: it did not "
                     "finish authenticating in time",
                     global_(rank_), options_.purpose, global_(static_cast<int>(hello.rank)));
        return -1;
      }
    } catch (const std::exception& e) {
      spdlog::warn("rank {}: {}: refused a connection claiming to be rank {}: {} (wrong job "
                   "secret?)",
                   global_(rank_), options_.purpose, global_(static_cast<int>(hello.rank)),
                   e.what());
      return -1;
    }
    if (!proofs_match(connector_proof, mesh_proof(options_.secret, "connector", hello, own))) {
      spdlog::warn("rank {}: {}: refused a connection claiming to be rank {}: wrong job secret "
                   "(RINGFUSE_JOB_SECRET differs from this job's)",
                   global_(rank_), options_.purpose, global_(static_cast<int>(hello.rank)));
      return -1;
    }
    return static_cast<int>(hello.rank);
  }

  // Names each higher rank that never connected, with what the store says of it: a listener
  // it published (so it ran this far, and where) or none (not running, or stuck before).
  Error absent_ranks() const {
    std::vector<std::string> absent;
    int first = Error::kNoRank;
    for (int peer = rank_ + 1; peer < size_; ++peer) {
      if (peers_[peer].valid()) continue;
      if (first == Error::kNoRank) first = global_(peer);
      std::string where = "published no listener: not running, or stuck before this set-up";
      try {
        const std::string key = fmt::format("{}/{}", options_.address_key, peer);
        if (store_->check({key})) {
          where = "listening at " + store_->get(key, std::chrono::milliseconds(1000));
        }
      } catch (const std::exception&) {
        where = "the store cannot say where";
      }
      absent.push_back(fmt::format("{} ({})", global_.name(peer), where));
    }
    return core::error_at(ErrorKind::timeout, global_(rank_), first,
                          "{}: {} did not connect to this rank at {} in time; {} running, and "
                          "can {} reach this host?",
                          options_.purpose, fmt::join(absent, ", "), options_.advertise_host,
                          absent.size() == 1 ? "is it" : "are they",
                          absent.size() == 1 ? "it" : "they");
  }

  int rank_;  // positions in the group: global_ names them
  int size_;
  const FullMeshOptions& options_;
  const GlobalRanks& global_ = options_.global_ranks;
  rendezvous::Store* store_ = nullptr;
  Clock::time_point deadline_;
  std::vector<Socket> peers_;
};

}  // namespace

std::uint32_t job_hash(std::string_view job_id) {
  std::uint32_t hash = 2166136261u;  // FNV-1a
  for (unsigned char c : job_id) {
    hash ^= c;
    hash *= 16777619u;
  }
  return hash;
}

FullMeshOptions full_mesh_options(const MeshOptions& mesh, std::string address_key,
                                  std::string purpose) {
  FullMeshOptions options;
  options.advertise_host = mesh.advertise_host;
  options.job_id = mesh.job_id;
  options.secret = mesh.secret;
  options.address_key = std::move(address_key);
  options.purpose = std::move(purpose);
  options.user_timeout = mesh.user_timeout;
  options.global_ranks = mesh.global_ranks;
  return options;
}

std::vector<Socket> connect_full_mesh(int rank, int size, rendezvous::Store& store,
                                      const FullMeshOptions& options,
                                      std::chrono::steady_clock::time_point deadline) {
  if (size <= 1) return std::vector<Socket>(static_cast<std::size_t>(std::max(size, 0)));
  return MeshSetUp(rank, size, options, deadline).run(store);
}

}  // namespace ringfuse::transport
