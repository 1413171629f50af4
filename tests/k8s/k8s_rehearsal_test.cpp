// Rehearses k8s/overlays/cpu's StatefulSet on loopback: its pod command line is read from the
// rendered manifest (k8s/validate/validate.mjs pod-command), not retyped, and run as `replicas`
// "pods" against a dnsmasq standing for the headless Service, as tests/launcher's
// k8s_launcher_test.cpp does. Substitutions, all test-only: $(POD_NAMESPACE) -> default, the
// store port -> a free one, --health-port -> a free one per pod (they share one host here),
// --start-timeout -> 20, added --dns-server and --transport tcp, and
// the program after `--` (ringfuse-train, which needs libtorch) -> collective_check.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dns_server.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::Process;
using ringfuse::testing::ProcessResult;
using ringfuse::testing::free_port;
namespace fs = std::filesystem;

constexpr const char* kDnsmasq = ringfuse::testing::kDnsmasqPath;
constexpr const char* kNamespace = "default";

// What the rendered manifest says about the StatefulSet's pods.
struct PodSpec {
  int replicas = 0;
  std::string service;
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
};

PodSpec read_pod_spec(const std::string& overlay) {
  const ProcessResult r = ringfuse::testing::run_process(
      {"node", std::string(K8S_DIR) + "/validate/validate.mjs", "pod-command",
       std::string(K8S_DIR) + "/" + overlay},
      {}, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  PodSpec spec;
  std::stringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    const auto space = line.find(' ');
    const std::string what = line.substr(0, space);
    const std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    if (what == "replicas") spec.replicas = std::stoi(value);
    if (what == "service") spec.service = value;
    if (what == "arg") spec.args.push_back(value);
    if (what == "env") spec.env[value.substr(0, value.find('='))] = value.substr(value.find('=') + 1);
  }
  return spec;
}

std::string flag_value(const std::vector<std::string>& args, const std::string& name) {
  const auto end = std::find(args.begin(), args.end(), "--");
  const auto it = std::find(args.begin(), end, name);
  return it != end && it + 1 != end ? *(it + 1) : "";
}

bool have_node() { return std::system("command -v node >/dev/null 2>&1") == 0; }

TEST(K8sRehearsal, StatefulSetPodsFromTheManifestRendezvousAndAllReduce) {
  if (!fs::exists(kDnsmasq)) GTEST_SKIP() << kDnsmasq << " is missing (install dnsmasq-base)";
  if (!have_node()) GTEST_SKIP() << "node is missing (install nodejs and npm)";
  if (!fs::exists(std::string(K8S_DIR) + "/validate/node_modules")) {
    GTEST_SKIP() << "k8s/validate/node_modules is missing: run k8s_validator_npm_ci first";
  }
  const PodSpec spec = read_pod_spec("overlays/cpu");
  ASSERT_GE(spec.replicas, 2) << "the rehearsal needs at least two pods";
  ASSERT_FALSE(spec.args.empty());
  ASSERT_EQ(flag_value(spec.args, "--k8s-service"), spec.service);

  // replicas and -np live in two places in YAML; they must agree (validate.mjs checks it too).
  const std::string per_pod = flag_value(spec.args, "--nproc-per-pod");
  const int np = std::stoi(flag_value(spec.args, "-np"));
  ASSERT_EQ(np, spec.replicas * (per_pod.empty() ? 1 : std::stoi(per_pod)))
      << "-np must equal replicas x --nproc-per-pod";
  ASSERT_TRUE(per_pod.empty() || per_pod == "1") << "the rehearsal runs one rank per pod";

  // The launcher's part of the command line, with the test-only substitutions.
  const auto dashdash = std::find(spec.args.begin(), spec.args.end(), "--");
  ASSERT_NE(dashdash, spec.args.end()) << "no `--` before the program";
  ASSERT_EQ(*(dashdash + 1), "ringfuse-train") << "the manifest's program changed";
  const std::string service_fqdn = spec.service + "." + kNamespace + ".svc.cluster.local";

  // dnsmasq standing for the headless Service.
  ringfuse::testing::Dnsmasq dns(service_fqdn);
  ASSERT_TRUE(dns.ready()) << "dnsmasq did not answer:\n" << dns.log();
  std::vector<std::string> ips;
  for (int k = 0; k < spec.replicas; ++k) {
    ips.push_back("127.0.3." + std::to_string(k + 1));
    dns.add_record("pod-" + std::to_string(k), ips[k] + " " + spec.service + "-" +
                                                   std::to_string(k) + "." + service_fqdn + " " +
                                                   service_fqdn);
  }

  const std::string store_port = std::to_string(free_port(SOCK_STREAM));
  std::vector<std::string> argv{RINGFUSE_RUN_PATH};
  std::size_t health_port_at = 0;  // argv index of --health-port's value, set per pod below
  for (auto it = spec.args.begin(); it != dashdash; ++it) {
    std::string a = *it;
    if (a == "$(POD_NAMESPACE)") a = kNamespace;
    ASSERT_EQ(a.find("$("), std::string::npos) << "unexpanded variable in " << a;
    argv.push_back(a);
    if ((*it == "--port" || *it == "--start-timeout") && it + 1 != dashdash) {
      argv.push_back(*it == "--port" ? store_port : "20");
      ++it;
    } else if (*it == "--health-port" && it + 1 != dashdash) {
      health_port_at = argv.size();
      argv.push_back(*(it + 1));
      ++it;
    }
  }
  for (const std::string& a : std::vector<std::string>{"--dns-server", dns.server(),
                              "--transport", "tcp", "--", COLLECTIVE_CHECK_PATH, "--collective",
                              "allreduce", "--counts", "1,1009", "--algos", "ring"}) {
    argv.push_back(a);
  }

  std::vector<std::unique_ptr<Process>> pods;
  for (int k = 0; k < spec.replicas; ++k) {
    std::map<std::string, std::string> env = spec.env;
    env["POD_IP"] = ips[k];
    env["POD_NAMESPACE"] = kNamespace;
    env["HOSTNAME"] = spec.service + "-" + std::to_string(k);
    env["RINGFUSE_JOB_SECRET"] = "k8s-rehearsal-secret";
    if (health_port_at != 0) argv[health_port_at] = std::to_string(free_port(SOCK_STREAM));
    pods.push_back(std::make_unique<Process>(argv, env));
  }
  for (int k = 0; k < spec.replicas; ++k) {
    const ProcessResult r = pods[k]->wait(60s);
    EXPECT_EQ(r.exit_code, 0) << "pod " << k << ":\n" << r.output;
    EXPECT_NE(r.output.find("this is pod " + std::to_string(k) + " (" + ips[k] + ")"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("[" + std::to_string(k) + "] rank " + std::to_string(k) +
                            ": allreduce"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find(" 0 failed"), std::string::npos) << r.output;
  }
}

}  // namespace
