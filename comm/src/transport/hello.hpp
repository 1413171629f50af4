// The first bytes two ranks exchange on a new connection, and the proof that binds it: each
// side's fresh nonce and rank, then HMAC-SHA256 of the job secret over both nonces and both
// ranks (rendezvous/auth). The meshes (full_mesh.cpp) and point-to-point (p2p/handshake.cpp)
// speak it under their own magic and proof labels, so neither ever accepts the other's hello
// or proof.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "rendezvous/auth.hpp"

namespace ringfuse::transport {

/// The wire format's version, in every hello. 2: with several connections per peer
/// (RINGFUSE_SOCKETS_PER_PEER > 1) large messages travel in pieces over all of them
/// (tcp_pieces.hpp). Ranks of different versions refuse each other's connections and say why
/// (wire_version_mismatch), instead of misreading each other's bytes.
inline constexpr std::uint32_t kHelloVersion = 2;

struct Hello {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint32_t rank;
  std::uint32_t job_hash;
  std::array<char, rendezvous::auth::kNonceBytes> nonce;
};

using Proof = std::array<char, rendezvous::auth::kProofBytes>;

/// A hello with `magic` from `rank` of job `job_id`, with a fresh nonce.
Hello make_hello(std::uint32_t magic, int rank, const std::string& job_id);

/// The proof `from` gives `to`: `label` names the protocol ("mesh", "p2p"), `side` the role
/// ("acceptor", "connector").
Proof make_proof(const std::string& secret, std::string_view label, std::string_view side,
                 const Hello& from, const Hello& to);

/// Whether `got` is a hello of protocol `magic` from job `job_id` whose wire version is not
/// this build's.
bool of_another_version(const Hello& got, std::uint32_t magic, const std::string& job_id);

/// What a rank says of `peer` (e.g. "rank 3") whose hello carried wire version `version`.
std::string wire_version_mismatch(std::uint32_t version, std::string_view peer);

/// Compares in constant time.
bool proofs_match(const Proof& got, const Proof& expected);

}  // namespace ringfuse::transport
