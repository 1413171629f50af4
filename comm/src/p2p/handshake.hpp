// The proof two ranks exchange on a new point-to-point connection: the meshes' scheme
// (full_mesh.cpp: HMAC-SHA256 of the job secret over both sides' fresh nonces and ranks),
// under labels of its own so that no mesh proof is ever accepted here. The connector sends
// its hello; the acceptor answers with its hello and proof; the connector checks it and
// proves itself last, so the acceptor is never an oracle for a process without the secret.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

#include "transport/hello.hpp"
#include "transport/global_ranks.hpp"
#include "transport/socket.hpp"

namespace ringfuse::p2p {

inline constexpr std::uint32_t kHelloMagic = 0x52465032;  // "RFP2"

using transport::Hello;
using transport::Proof;
using transport::proofs_match;

/// A point-to-point hello from `rank` of job `job_id`, with a fresh nonce.
Hello make_hello(int rank, const std::string& job_id);
/// `side` is "acceptor" or "connector": the proof `from` gives `to`.
Proof make_proof(const std::string& secret, const char* side, const Hello& from, const Hello& to);

struct Identity {
  int rank;
  int size;
  std::string job_id;
  std::string secret;
  std::string purpose;  // in log lines
  transport::GlobalRanks global_ranks;  // log lines name global ranks (a child's table)
};

/// The acceptor's side, blocking until `deadline`: the rank the connector proved to be, or -1
/// (logged as a warning) when it is refused.
int authenticate_connector(const transport::Socket& socket, const Identity& self,
                           std::chrono::steady_clock::time_point deadline);

/// The connector's side, to `peer` (a position in self's group), blocking until `deadline`:
/// returns once both proofs are exchanged. Throws Error naming both global ranks: timeout (no
/// answer), protocol (an acceptor of another wire version, job or protocol), peer_failure (it
/// could not prove the job secret).
void authenticate_to_acceptor(const transport::Socket& socket, const Identity& self, int peer,
                              std::chrono::steady_clock::time_point deadline);

}  // namespace ringfuse::p2p
