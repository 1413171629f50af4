// The fixture of the namespace-host tests (namespace_hosts.hpp): makes the hosts, or skips
// with the reason where namespaces cannot be made, and starts ringfuse-run on host 0.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "namespace_hosts.hpp"
#include "subprocess.hpp"

namespace ringfuse::testing {

inline std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class NamespaceHostsTest : public ::testing::Test {
 protected:
  void make_hosts(const std::vector<std::string>& hostnames) {
    if (const auto reason = NamespaceHosts::unavailable_reason()) GTEST_SKIP() << *reason;
    hosts_ = std::make_unique<NamespaceHosts>(hostnames);
  }

  // ringfuse-run started on host 0, as a user logged into it would.
  ProcessResult launch_on_host0(const std::vector<std::string>& args,
                                std::chrono::milliseconds timeout) {
    std::vector<std::string> argv{RINGFUSE_RUN_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(hosts_->on_host(0, argv), {}, timeout);
  }

  std::unique_ptr<NamespaceHosts> hosts_;
};

}  // namespace ringfuse::testing
