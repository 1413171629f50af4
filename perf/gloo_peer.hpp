// Peer: Gloo's allreduce_ring_chunked and allreduce_halving_doubling over Gloo's TCP transport
// (loopback here), rendezvoused through GlooStoreAdapter. All-reduce only: those are the Gloo
// algorithms the issue compares against.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "implementation.hpp"

namespace ringfuse::perf {

struct GlooWorld {
  int rank = 0;
  int size = 1;
  std::string store_host;
  std::uint16_t store_port = 0;
  std::string key_prefix;  // unique per job
  std::string job_secret;  // the store authenticates every connection
  std::chrono::milliseconds timeout{60'000};
};

struct GlooPeers {
  std::vector<std::unique_ptr<Implementation>> impls;  // ring_chunked, halving_doubling
  std::string unavailable;                             // why not, when impls is empty
};

/// Connects one Gloo context (a full TCP mesh) shared by both algorithms. Collective: every
/// rank must call it.
GlooPeers make_gloo_peers(const GlooWorld& world);

}  // namespace ringfuse::perf
