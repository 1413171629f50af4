#include "p2p/handshake.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/errors.hpp"
#include "transport/full_mesh.hpp"

namespace ringfuse::p2p {

Hello make_hello(int rank, const std::string& job_id) {
  return transport::make_hello(kHelloMagic, rank, job_id);
}

Proof make_proof(const std::string& secret, const char* side, const Hello& from, const Hello& to) {
  return transport::make_proof(secret, "p2p", side, from, to);
}

int authenticate_connector(const transport::Socket& socket, const Identity& self,
                           std::chrono::steady_clock::time_point deadline) {
  const auto refuse = [&](const std::string& why) {
    spdlog::warn("rank {}: {}: refused a connection: {}", self.global_ranks(self.rank),
                 self.purpose, why);
    return -1;
  };
  try {
    Hello hello{};
    if (!transport::read_all(socket.fd(), &hello, sizeof(hello), deadline)) {
      return refuse("no complete hello in time");
    }
    if (transport::of_another_version(hello, kHelloMagic, self.job_id)) {
      const Hello own = make_hello(self.rank, self.job_id);  // tells it why; no proof
      (void)transport::write_all(socket.fd(), &own, sizeof(own), deadline);
      spdlog::error("rank {}: {}: refused a connection: {}", self.global_ranks(self.rank),
                    self.purpose,
                    transport::wire_version_mismatch(
                        hello.version, fmt::format("the rank claiming position {}", hello.rank)));
      return -1;
    }
    if (hello.magic != kHelloMagic || hello.version != transport::kHelloVersion ||
        hello.job_hash != transport::job_hash(self.job_id) ||
        hello.rank >= static_cast<std::uint32_t>(self.size) ||
        hello.rank == static_cast<std::uint32_t>(self.rank)) {
      return refuse("not a peer of this job (bad hello)");
    }
    const Hello own = make_hello(self.rank, self.job_id);
    const Proof own_proof = make_proof(self.secret, "acceptor", own, hello);
    Proof connector_proof{};
    if (!transport::write_all(socket.fd(), &own, sizeof(own), deadline) ||
        !transport::write_all(socket.fd(), own_proof.data(), own_proof.size(), deadline) ||
        !transport::read_all(socket.fd(), connector_proof.data(), connector_proof.size(),
                             deadline)) {
      return refuse(fmt::format("rank {} did not finish authenticating in time",
                                self.global_ranks(static_cast<int>(hello.rank))));
    }
    if (!proofs_match(connector_proof, make_proof(self.secret, "connector", hello, own))) {
      return refuse(fmt::format("claiming to be rank {}: wrong job secret "
                                "(RINGFUSE_JOB_SECRET differs from this job's)",
                                self.global_ranks(static_cast<int>(hello.rank))));
    }
    return static_cast<int>(hello.rank);
  } catch (const std::exception& e) {
    return refuse(fmt::format("{} (wrong job secret?)", e.what()));
  }
}

void authenticate_to_acceptor(const transport::Socket& socket, const Identity& self, int peer,
                              std::chrono::steady_clock::time_point deadline) {
  const int me = self.global_ranks(self.rank);
  const int who = self.global_ranks(peer);
  const Hello own = make_hello(self.rank, self.job_id);
  Hello reply{};
  Proof proof{};
  const auto no_answer = [&] {
    return core::error_at(ErrorKind::timeout, me, who,
                          "{}: rank {} did not answer the handshake in time "
                          "(RINGFUSE_CONNECT_TIMEOUT_S)",
                          self.purpose, who);
  };
  if (!transport::write_all(socket.fd(), &own, sizeof(own), deadline) ||
      !transport::read_all(socket.fd(), &reply, sizeof(reply), deadline)) {
    throw no_answer();
  }
  if (transport::of_another_version(reply, kHelloMagic, self.job_id)) {
    throw core::error_at(ErrorKind::protocol, me, who, "{}: {}", self.purpose,
                         transport::wire_version_mismatch(reply.version,
                                                          fmt::format("rank {}", who)));
  }
  if (!transport::read_all(socket.fd(), proof.data(), proof.size(), deadline)) throw no_answer();
  if (reply.magic != kHelloMagic || reply.rank != static_cast<std::uint32_t>(peer) ||
      reply.job_hash != own.job_hash) {
    throw core::error_at(ErrorKind::protocol, me, who,
                         "{}: the listener of rank {} answered as rank {} of another job or "
                         "protocol; check that RINGFUSE_JOB_ID and RINGFUSE_STORE_ADDR are the "
                         "same for every rank",
                         self.purpose, who, self.global_ranks(static_cast<int>(reply.rank)));
  }
  if (!proofs_match(proof, make_proof(self.secret, "acceptor", reply, own))) {
    throw core::error_at(ErrorKind::peer_failure, me, who,
                         "{}: rank {} could not prove this job's secret; RINGFUSE_JOB_SECRET "
                         "must be the same for every rank",
                         self.purpose, who);
  }
  const Proof own_proof = make_proof(self.secret, "connector", own, reply);
  if (!transport::write_all(socket.fd(), own_proof.data(), own_proof.size(), deadline)) {
    throw core::error_at(ErrorKind::timeout, me, who, "{}: timed out authenticating to rank {}",
                         self.purpose, who);
  }
}

}  // namespace ringfuse::p2p
