// Hostfiles as Open MPI and MPIJob write them: one host per line, "host slots=N" or "host:N"
// or just "host" (one slot); '#' starts a comment; blank lines are ignored.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "host_list.hpp"

namespace ringfuse::launcher {

/// Parses a hostfile's text; `origin` (the file's path) prefixes every error, with the line
/// number: "hosts.txt:3: slots=x is not a whole number >= 1". Hosts named twice are merged.
std::vector<HostSlots> parse_hostfile(std::string_view text, const std::string& origin);

/// Reads and parses the file at `path`; throws Error(invalid_argument) if it cannot be read.
std::vector<HostSlots> read_hostfile(const std::string& path);

}  // namespace ringfuse::launcher
