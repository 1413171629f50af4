// The command line that starts one rank on a remote host through the rsh agent (ssh by
// default): `AGENT... HOST 'cd DIR && exec env NAME=value... PROGRAM ARGS...'`, every word
// quoted for the remote shell. The agent's own environment is ours; the rank's is on the line.
#pragma once

#include <string>
#include <vector>

namespace ringfuse::launcher {

/// Quotes `word` for a POSIX shell ('it'\''s').
std::string shell_quote(const std::string& word);

/// Splits --rsh-agent's value on blanks: "ssh -o BatchMode=yes" -> {ssh, -o, BatchMode=yes}.
std::vector<std::string> split_agent(const std::string& agent);

/// The argv to spawn locally. `assignments` are "NAME=value" entries for the rank.
std::vector<std::string> remote_rank_command(const std::vector<std::string>& agent,
                                             const std::string& host, const std::string& cwd,
                                             const std::vector<std::string>& assignments,
                                             const std::vector<std::string>& command);

}  // namespace ringfuse::launcher
