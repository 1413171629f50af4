// mpirun's -x: environment variables a user sends to every rank. Ranks on this host inherit the
// launcher's whole environment anyway; ranks on other hosts get only what travels on their
// command line, so PYTHONPATH, NCCL_SOCKET_IFNAME, OMP_NUM_THREADS and the like need -x there.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ringfuse::launcher {

/// Looks a variable up in the launcher's environment.
using EnvironmentLookup = std::function<std::optional<std::string>(const std::string&)>;

/// NAME → value for each -x spec: "NAME=VALUE" sets NAME, "NAME" passes on the launcher's own
/// value. Throws Error(invalid_argument) naming the spec for a NAME that is no variable name,
/// a bare NAME the launcher's environment lacks, and a variable ringfuse-run sets itself
/// (RANK, RINGFUSE_RANK, MASTER_PORT, ...).
std::map<std::string, std::string> exported_variables(const std::vector<std::string>& specs,
                                                      const EnvironmentLookup& lookup);

}  // namespace ringfuse::launcher
