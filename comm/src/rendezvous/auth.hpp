// Job-secret authentication shared by the store and the data connections: every connection
// proves knowledge of RINGFUSE_JOB_SECRET with HMAC-SHA256 over fresh nonces from both sides,
// so a process without the secret (or a replayed handshake) is refused.
#pragma once

#include <string>
#include <string_view>

namespace ringfuse::rendezvous::auth {

inline constexpr std::size_t kNonceBytes = 16;
inline constexpr std::size_t kProofBytes = 32;

/// Initialises OpenSSL now. Call it before starting a thread that will authenticate: OpenSSL
/// registers its atexit cleanup on first use, and that cleanup must be registered before the
/// destructor of whatever owns the thread (a static, say), so that it runs after the thread is
/// joined rather than freeing OpenSSL's tables under it.
void initialise();

/// kNonceBytes from the system's CSPRNG.
std::string random_nonce();

/// HMAC-SHA256(secret, label || first || second): which side proves (label) is bound in, so
/// one side's answer can never be replayed as the other's.
std::string proof(std::string_view secret, std::string_view label, std::string_view first,
                  std::string_view second);

/// Constant-time comparison of two proofs.
bool proofs_equal(std::string_view a, std::string_view b);

}  // namespace ringfuse::rendezvous::auth
