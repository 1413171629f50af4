#include "rendezvous/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "ringfuse/error.hpp"

namespace ringfuse::rendezvous::auth {

void initialise() {
  // An option it has not done yet: with none (opts = 0) OpenSSL 3 returns at once and registers
  // nothing. Digests are what HMAC-SHA256 needs anyway.
  if (OPENSSL_init_crypto(OPENSSL_INIT_ADD_ALL_DIGESTS, nullptr) != 1) {
    throw Error(ErrorKind::system, "cannot initialise OpenSSL for authenticating connections");
  }
}

std::string random_nonce() {
  std::string nonce(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) !=
      1) {
    throw Error(ErrorKind::system, "cannot draw random bytes for an authentication nonce");
  }
  return nonce;
}

std::string proof(std::string_view secret, std::string_view label, std::string_view first,
                  std::string_view second) {
  std::string message;
  message.reserve(label.size() + first.size() + second.size() + 2);
  message.append(label).push_back('\0');
  message.append(first).push_back('\0');
  message.append(second);
  std::string digest(kProofBytes, '\0');
  unsigned int length = 0;
  // An empty secret still authenticates consistently: both sides compute the same HMAC, so a
  // job without RINGFUSE_JOB_SECRET works and only refuses peers that do have one.
  const unsigned char empty_key = 0;
  const void* key = secret.empty() ? static_cast<const void*>(&empty_key) : secret.data();
  if (HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(),
           reinterpret_cast<unsigned char*>(digest.data()), &length) == nullptr ||
      length != kProofBytes) {
    throw Error(ErrorKind::system, "HMAC-SHA256 failed while authenticating a connection");
  }
  return digest;
}

bool proofs_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace ringfuse::rendezvous::auth
