// The WorldSpec of one rank in a job whose ranks all run on this host (as threads of a test),
// with the test's job secret: what ringfuse-run would describe to a rank it started here.
// The job id carries the test process's pid: CTest runs each test of a binary as a process
// of its own, two at a time, and two worlds with one job id would share shared-memory names
// (each would take the other's segments for a dead job's and replace them).
#pragma once

#include <unistd.h>

#include <string>

#include "ringfuse/context.hpp"

namespace ringfuse {

inline WorldSpec one_host_world(int rank, int size, const std::string& job) {
  WorldSpec world;
  world.rank = rank;
  world.size = size;
  world.local_rank = rank;
  world.local_size = size;
  world.job_id = job + "-" + std::to_string(::getpid());
  world.job_secret = "secret";
  return world;
}

}  // namespace ringfuse
