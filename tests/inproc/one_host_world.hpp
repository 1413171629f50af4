// The WorldSpec of one rank in a job whose ranks all run on this host (as threads of a test),
// with the test's job secret: what ringfuse-run would describe to a rank it started here.
#pragma once

#include <string>

#include "ringfuse/context.hpp"

namespace ringfuse {

inline WorldSpec one_host_world(int rank, int size, const std::string& job) {
  WorldSpec world;
  world.rank = rank;
  world.size = size;
  world.local_rank = rank;
  world.local_size = size;
  world.job_id = job;
  world.job_secret = "secret";
  return world;
}

}  // namespace ringfuse
