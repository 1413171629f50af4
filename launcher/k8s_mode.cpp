#include "k8s_mode.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <memory>
#include <system_error>

#include <fmt/format.h>

#include "dns_resolver.hpp"
#include "job_environment.hpp"
#include "k8s_discovery.hpp"
#include "k8s_identity.hpp"
#include "membership_agreement.hpp"
#include "pod_zero_store.hpp"
#include "rendezvous/rank_exits.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

using Clock = std::chrono::steady_clock;

std::optional<std::string> getenv_string(const std::string& name) {
  if (const char* value = std::getenv(name.c_str())) return std::string(value);
  return std::nullopt;
}

std::chrono::milliseconds left_until(Clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(1),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

std::string done_key(int pod) { return "ringfuse-run/k8s/done/" + std::to_string(pod); }

constexpr const char* kTorchMasterPortKey = "ringfuse-run/k8s/torch-master-port";

std::uint16_t parse_port(const std::string& text, const std::string& what) {
  int port = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (error != std::errc{} || end != text.data() + text.size() || port < 1 || port > 65535) {
    throw Error(ErrorKind::invalid_config, what + " is '" + text + "', not a TCP port: do all "
                                           "pods run the same ringfuse-run?");
  }
  return static_cast<std::uint16_t>(port);
}

}  // namespace

int run_k8s(const K8sOptions& options, const std::vector<std::string>& command,
            SignalPipe& signals) {
  if (options.np % options.nproc_per_pod != 0) {
    throw Error(ErrorKind::invalid_argument,
                "-np " + std::to_string(options.np) + " is not a multiple of --nproc-per-pod " +
                    std::to_string(options.nproc_per_pod) + " (N = pods x ranks per pod)");
  }
  const int pods = options.np / options.nproc_per_pod;
  const auto secret = getenv_string("RINGFUSE_JOB_SECRET").value_or("");
  if (secret.empty()) {
    throw Error(ErrorKind::invalid_config,
                "--k8s-service needs RINGFUSE_JOB_SECRET, the same in every pod: put a random "
                "value in a Kubernetes Secret and expose it with env.valueFrom.secretKeyRef "
                "(pods with another secret are refused by the store and the mesh)");
  }
  const auto deadline = Clock::now() + options.start_timeout;
  HealthState* health = options.supervisor.health;

  char system_hostname[256] = {};
  ::gethostname(system_hostname, sizeof(system_hostname) - 1);
  PodIdentity self = pod_identity(getenv_string, system_hostname);
  if (!self.index && self.ip.empty()) {
    throw Error(ErrorKind::invalid_config,
                "the hostname '" + self.hostname + "' has no ordinal (not a StatefulSet or "
                "Indexed Job pod) and POD_IP is not set, so this pod cannot find itself among "
                "the Service's addresses; set POD_IP from the downward API (status.podIP)");
  }
  report("k8s: pod " + self.hostname + (self.ip.empty() ? "" : " (" + self.ip + ")") +
         ", index from " + self.index_source + "; waiting for " + std::to_string(pods) +
         " pods of " + service_fqdn(options.service, options.ns));

  if (health) {
    health->set_starting("discovering " + std::to_string(pods) + " pods of " +
                         service_fqdn(options.service, options.ns));
  }
  Membership membership;
  {
    DnsResolver dns(options.dns_server, std::chrono::milliseconds(2000));
    membership = discover_pods(DiscoverySpec{options.service, options.ns, pods}, self, dns,
                               deadline, [](const std::string& line) { report("k8s: " + line); });
  }
  const int index = membership.own_index;
  const std::string own_ip = membership.pod_ips[static_cast<std::size_t>(index)];
  const std::string& store_ip = membership.pod_ips.front();
  const auto port = static_cast<std::uint16_t>(options.port);
  report("k8s: all " + std::to_string(pods) + " pods found; this is pod " + std::to_string(index) +
         " (" + own_ip + "), store on pod 0 at " + store_ip + ":" + std::to_string(port));

  // Pod 0 serves the store for the whole job; every launcher (pod 0's too) is a client.
  std::unique_ptr<rendezvous::TcpStoreServer> server;
  if (index == 0) server = std::make_unique<rendezvous::TcpStoreServer>(own_ip, port, secret);
  const auto store_client = connect_to_pod_zero_store(membership, port, left_until(deadline),
                                                      secret, options.start_timeout);
  rendezvous::TcpStoreClient& store = *store_client;
  // torch's env:// meets at rank 0's TCPStore, in pod 0: pod 0 finds a port free there and
  // tells the other pods, which read it once every pod has joined.
  if (index == 0) store.set(kTorchMasterPortKey, std::to_string(free_port_for_rank_zero()));
  if (health) health->set_starting("agreeing on the membership through the store on pod 0");
  agree_on_membership(store, membership, left_until(deadline), options.start_timeout);
  const std::uint16_t torch_port =
      parse_port(store.get(kTorchMasterPortKey, left_until(deadline)), "pod 0's MASTER_PORT");
  if (options.supervisor.verbose) report("k8s: every pod agrees on " + membership.canonical());

  WorldLayout layout;
  layout.world_size = options.np;
  layout.local_size = options.nproc_per_pod;
  layout.cross_rank = index;
  layout.cross_size = pods;
  layout.first_rank = index * options.nproc_per_pod;
  JobIdentity identity{getenv_string("RINGFUSE_JOB_ID").value_or("k8s-" + options.ns + "-" +
                                                                 options.service),
                       secret};
  const TorchMaster torch_master{store_ip, torch_port};
  JobEnvironment environment(layout, store_ip, port, torch_master, std::move(identity),
                             JobEnvironment::current_environment());
  for (const auto& [name, value] : options.rank_variables) environment.set_extra(name, value);
  // The ranks advertise the pod's address to their peers (the library's mesh reads it).
  environment.set_extra("RINGFUSE_HOST_ADDR", own_ip);

  SupervisorOptions supervisor_options = options.supervisor;
  supervisor_options.host = self.hostname;
  // Recorded in pod 0's store, where the ranks of every pod wait for each other.
  supervisor_options.on_rank_exit = [&store](int rank, const std::string& description) {
    try {
      rendezvous::record_rank_exit(store, rank, description);
    } catch (const std::exception&) {
      // Pod 0's store is gone: the waiting ranks lose it too, and their errors say so.
    }
  };
  Supervisor supervisor(supervisor_options, signals);
  const int code = supervisor.run(local_launches(command, environment, self.hostname));

  // Pod 0's store must outlive the other pods' ranks: they report here when theirs have ended.
  try {
    store.set(done_key(index), std::to_string(code));
    if (index == 0 && code == 0) {
      std::vector<std::string> keys;
      for (int pod = 1; pod < pods; ++pod) keys.push_back(done_key(pod));
      store.wait(keys, std::chrono::seconds(30));
    }
  } catch (const std::exception& e) {
    if (code == 0) report(std::string("k8s: after the ranks ended: ") + e.what());
  }
  return code;
}

}  // namespace ringfuse::launcher
