// Whether two ranks can share memory is decided by proof, not by a guess from hostname and
// boot id: two containers or network namespaces may share both and still see separate
// /dev/shm (their own tmpfs), and shm_open then fails at once with a bare ENOENT. Every rank
// creates a small segment holding a random token, every other rank tries to open it and read
// the token back, and the ranks exchange what they saw.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "rendezvous/store.hpp"
#include "transport/tcp_mesh.hpp"

namespace ringfuse::transport {

/// What each rank saw: seen[a][b] is '1' when rank a opened rank b's segment and read its
/// token back (seen[a][a] is '1' when rank a could create its own). Collective over the
/// `size` ranks sharing `mesh.key_prefix`; every segment is unlinked before it returns.
std::vector<std::string> prove_shared_memory(rendezvous::Store& store, const MeshOptions& mesh,
                                             int rank, int size);

/// The pairs of positions (a < b) that cannot share memory according to `seen`.
std::vector<std::pair<int, int>> pairs_without_shared_memory(const std::vector<std::string>& seen);

/// The positions split into groups whose members all share memory with each other, each in
/// ascending order, the groups ordered by their first position: position p joins the first
/// group all of whose members share memory with it, else starts one. Every rank computes the
/// same groups from the same `seen`.
std::vector<std::vector<int>> shared_memory_groups(const std::vector<std::string>& seen);

}  // namespace ringfuse::transport
