// One enqueued collective as the engine thread sees it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "engine/fingerprint.hpp"
#include "engine/work_state.hpp"

namespace ringfuse::engine {

using Clock = std::chrono::steady_clock;

struct Request {
  std::uint64_t seq = 0;  // this rank's collective number, 1, 2, ...
  Fingerprint fp;
  void* data = nullptr;        // in-place tensor, or the input
  void* output = nullptr;      // alltoall / reducescatter output
  OutputAllocator allocate;    // allgather
  std::shared_ptr<WorkState> work;
  Clock::time_point enqueued;
  bool join = false;           // a join() marker, not a collective (seq 0)
};

}  // namespace ringfuse::engine
