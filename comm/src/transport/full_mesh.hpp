// The one way two ranks of a job open a TCP connection to each other: every rank publishes a
// listener through the store, the higher rank of each pair connects, and both sides prove the
// job secret (HMAC over fresh nonces, rendezvous/auth.hpp) before the connection is used.
// The TCP mesh's data connections and the shared-memory transport's liveness connections are
// both made here, so no connection a rank accepts skips the proof (SECURITY.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rendezvous/store.hpp"
#include "transport/global_ranks.hpp"
#include "transport/socket.hpp"

namespace ringfuse::transport {

struct MeshOptions;  // tcp_mesh.hpp

struct FullMeshOptions {
  std::string advertise_host = "127.0.0.1";  // address peers connect to
  std::string job_id;                        // hashed into the hello: tells jobs apart
  std::string secret;                        // RINGFUSE_JOB_SECRET: proven by both sides
  /// Store key the listeners' addresses are gathered under (`address_key/<rank>`).
  std::string address_key = "mesh/addr";
  /// What these connections are for, in error messages ("the TCP mesh").
  std::string purpose = "the TCP mesh";
  std::chrono::milliseconds user_timeout{10'000};  // TCP_USER_TIMEOUT on every connection
  /// The global rank (and, across hosts, the place) of each position, for errors and logs:
  /// the ranks passed to connect_full_mesh() are positions in the transport's group.
  GlobalRanks global_ranks;
};

/// What a hello carries to tell jobs apart before the proof: the FNV-1a hash of `job_id`.
std::uint32_t job_hash(std::string_view job_id);

/// The connection settings of `mesh` (its advertised host, job id, secret and
/// TCP_USER_TIMEOUT, its global ranks), for connections gathered under `address_key` and called `purpose` in
/// errors: how the TCP mesh and the shared-memory transport's liveness connections are made
/// alike.
FullMeshOptions full_mesh_options(const MeshOptions& mesh, std::string address_key,
                                  std::string purpose);

/// Collective over `size` ranks: returns one authenticated, non-blocking socket per peer,
/// indexed by peer rank (this rank's slot stays invalid). A connection whose hello is not a
/// peer's of this job, or whose proof is wrong or late (5 s), is dropped with a warning and
/// the rank keeps waiting for the real peer. Throws ringfuse::Error naming the peer by its
/// global rank (and place, when known) on a connect failure, a peer that cannot prove the
/// secret, or `deadline` (saying, for a peer that never connected, whether it published a
/// listener and where).
std::vector<Socket> connect_full_mesh(int rank, int size, rendezvous::Store& store,
                                      const FullMeshOptions& options,
                                      std::chrono::steady_clock::time_point deadline);

}  // namespace ringfuse::transport
