// What the table header and the JSON say about the run besides its rows.
#pragma once

#include <string>
#include <vector>

#include "results.hpp"

namespace ringfuse::perf {

struct RunInfo {
  std::string collective;
  int nranks = 1;
  std::string launcher;
  std::string timing = "median over iterations of the max across ranks";
  std::string transport;             // which data plane ours was asked to use
  std::string malloc_env;            // as the process was started
  std::string malloc_pass;           // the in-process mallopt pass, if any
  std::vector<std::string> notes;    // peers unavailable, cases a peer cannot run
  std::vector<std::string> command;  // argv
  bool with_peers = false;
};

}  // namespace ringfuse::perf
