#include "transport/hello.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "transport/full_mesh.hpp"

namespace ringfuse::transport {

Hello make_hello(std::uint32_t magic, int rank, const std::string& job_id) {
  Hello hello{magic, kHelloVersion, static_cast<std::uint32_t>(rank), job_hash(job_id), {}};
  const auto nonce = rendezvous::auth::random_nonce();
  std::copy(nonce.begin(), nonce.end(), hello.nonce.begin());
  return hello;
}

Proof make_proof(const std::string& secret, std::string_view label, std::string_view side,
                 const Hello& from, const Hello& to) {
  const auto digest = rendezvous::auth::proof(
      secret, fmt::format("{}-{}-{}-{}", label, side, from.rank, to.rank),
      {from.nonce.data(), from.nonce.size()}, {to.nonce.data(), to.nonce.size()});
  Proof proof{};
  std::copy(digest.begin(), digest.end(), proof.begin());
  return proof;
}

bool of_another_version(const Hello& got, std::uint32_t magic, const std::string& job_id) {
  return got.magic == magic && got.job_hash == job_hash(job_id) && got.version != kHelloVersion;
}

std::string wire_version_mismatch(std::uint32_t version, std::string_view peer) {
  return fmt::format("{} runs a Ringfuse build of wire version {}, this rank one of version {}: "
                     "every rank of a job must run the same Ringfuse build",
                     peer, version, kHelloVersion);
}

bool proofs_match(const Proof& got, const Proof& expected) {
  return rendezvous::auth::proofs_equal({got.data(), got.size()},
                                        {expected.data(), expected.size()});
}

}  // namespace ringfuse::transport
