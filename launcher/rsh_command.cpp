#include "rsh_command.hpp"

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {

std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_-./=:,+@%") == std::string::npos) {
    return word;
  }
  std::string quoted = "'";
  for (const char c : word) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::vector<std::string> split_agent(const std::string& agent) {
  std::vector<std::string> words;
  std::string current;
  for (const char c : agent) {
    if (c == ' ' || c == '\t') {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) words.push_back(std::move(current));
  if (words.empty()) {
    throw Error(ErrorKind::invalid_argument, "--rsh-agent is empty; give a program such as ssh");
  }
  return words;
}

std::vector<std::string> remote_rank_command(const std::vector<std::string>& agent,
                                             const std::string& host, const std::string& cwd,
                                             const std::vector<std::string>& assignments,
                                             const std::vector<std::string>& command) {
  std::string line = "cd " + shell_quote(cwd) + " && exec env";
  for (const auto& assignment : assignments) {
    line += ' ';
    line += shell_quote(assignment);
  }
  for (const auto& word : command) {
    line += ' ';
    line += shell_quote(word);
  }
  std::vector<std::string> argv = agent;
  argv.push_back(host);
  argv.push_back(line);
  return argv;
}

}  // namespace ringfuse::launcher
