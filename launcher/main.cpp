// ringfuse-run: starts the ranks of a program with the Ringfuse environment contract
// (DESIGN.md §3) on this host, on several hosts (-H / --hostfile, remote ones through an rsh
// agent), or as a Kubernetes pod's entrypoint (--k8s-service); hosts their rendezvous store,
// relays their output and reports how they ended.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "closest_flag.hpp"
#include "descriptor_budget.hpp"
#include "exported_variables.hpp"
#include "host_list.hpp"
#include "health_server.hpp"
#include "hostfile.hpp"
#include "job_environment.hpp"
#include "k8s_mode.hpp"
#include "rank_process.hpp"
#include "rendezvous/rank_exits.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"
#include "rsh_command.hpp"
#include "signal_pipe.hpp"
#include "store_address.hpp"
#include "supervisor.hpp"
#include "tunables.hpp"

namespace {

using namespace ringfuse::launcher;

constexpr int kUsageError = 2;         // as CLI tools conventionally do for bad flags
constexpr int kLauncherError = 1;      // the launcher itself failed (store, pipes, discovery, ...)
constexpr int kCannotExecute = 127;    // as shells do for a program that cannot be run

struct Options {
  int np = 0;
  std::string hosts;
  std::string hostfile;
  std::string rsh_agent = "ssh";
  std::string store_addr;
  bool verbose = false;
  bool timestamp = false;
  std::string bind_to = "none";
  std::string k8s_service;
  std::string k8s_namespace = "default";
  int nproc_per_pod = 1;
  std::string dns_server;
  int port = 29500;
  int health_port = 0;
  Tunables tunables;
  std::vector<std::string> exports;            // -x NAME[=VALUE], as given
  std::map<std::string, std::string> exported;  // and as every rank gets them
  std::vector<std::string> command;
};

// Every spelling of `app`'s flags ("--np", "-n", ...), for suggestions.
std::vector<std::string> known_flags(const CLI::App& app) {
  std::vector<std::string> flags{"-np"};
  for (const CLI::Option* option : app.get_options()) {
    for (const auto& name : option->get_lnames()) flags.push_back("--" + name);
    for (const auto& name : option->get_snames()) flags.push_back("-" + name);
  }
  return flags;
}

// mpirun users type "-np 4", but CLI11 only has one-letter short options, so the leading
// launcher flags are rewritten to "--np" before parsing. Only our own flags are touched: the
// scan stops at "--" or at the program, whose arguments are never rewritten; the value after
// any of `app`'s options that takes one is skipped. A flag `app` does not know is refused here
// (CLI11 would take it, and everything after it, for the program), with the nearest known one.
std::vector<std::string> normalize_arguments(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--" || arg.size() < 2 || arg[0] != '-') break;
    if (arg == "-np") {
      arg = "--np";
    } else if (arg.starts_with("-np=")) {
      arg = std::string("--np=").append(arg, 4);
      continue;
    }
    // "--name=value" and "-nVALUE" carry their value; "--name VALUE" and "-n VALUE" do not.
    const bool is_long = arg.starts_with("--");
    const std::string name = is_long ? arg.substr(0, arg.find('=')) : arg.substr(0, 2);
    const CLI::Option* option = app.get_option_no_throw(name);
    if (option == nullptr) {
      const std::string typed = is_long ? name : arg;
      throw CLI::ParseError(
          "unknown flag '" + typed + "'; did you mean '" + closest_flag(typed, known_flags(app)) +
              "'? (ringfuse-run's flags go before PROGRAM; put '--' before a PROGRAM whose "
              "name starts with '-')",
          CLI::ExitCodes::ExtrasError);
    }
    if (option->get_expected_min() > 0 && name == arg) ++i;
  }
  return args;
}

CLI::Validator positive_int(const std::string& what) {
  return CLI::Validator(
      [what](std::string& value) -> std::string {
        int n = 0;
        if (!CLI::detail::lexical_cast(value, n) || n < 1) {
          return what + " must be a whole number >= 1, not '" + value + "'";
        }
        return {};
      },
      "N>=1");
}

// Fills `options` and returns -1, or returns the exit code when parsing already decided it
// (--help, a bad flag).
int parse_command_line(int argc, char** argv, Options& options) {
  CLI::App app{
      "Starts N ranks of PROGRAM with the Ringfuse environment (RINGFUSE_RANK, RINGFUSE_SIZE, "
      "RINGFUSE_STORE_ADDR, ... and torchrun's RANK, WORLD_SIZE, MASTER_ADDR, ...), on this "
      "host, on the hosts of -H/--hostfile, or as one pod of a Kubernetes job "
      "(--k8s-service), hosting their rendezvous store. Each output line is prefixed with its "
      "rank.",
      "ringfuse-run"};
  app.footer(
      "Usage:\n"
      "  ringfuse-run -np N [-H host1:slots,host2:slots | --hostfile FILE] [flags] -- PROGRAM "
      "[ARGS...]\n"
      "  ringfuse-run --k8s-service SVC [--namespace NS] -np N [--nproc-per-pod G] "
      "[--dns-server IP:PORT] [--port P] [--health-port P] -- PROGRAM [ARGS...]\n\n"
      "Job secret: RINGFUSE_JOB_SECRET from the environment when set (required with "
      "--k8s-service, from a Kubernetes Secret), else a fresh random one.\n\n"
      "Exit status: 0 when every rank exits 0; otherwise the first failing rank's status "
      "(128+signal if a signal ended it), after the other ranks were stopped (SIGTERM, then "
      "SIGKILL after 5 s); 127 if PROGRAM cannot be executed; 2 for bad flags (an unknown "
      "flag, an invalid value, more ranks than the open-file limit allows); 1 when the "
      "launcher itself fails (discovery, store, membership). SIGINT, SIGTERM and SIGHUP are "
      "forwarded to every rank; a second one kills them.\n\n"
      "Each tunable flag sets its RINGFUSE_* variable for every rank, checked as ringfuse::init() "
      "checks it; a tunable not given keeps the launcher's environment's value, else the "
      "default shown.");
  app.prefix_command();  // everything from PROGRAM on belongs to PROGRAM
  app.option_defaults()->always_capture_default();

  app.add_option("-n,--np", options.np,
                 "Number of ranks (also spelled -np, as in mpirun); with -H/--hostfile the "
                 "default is every slot; with --k8s-service, the total over all pods")
      ->type_name("N")
      ->check(positive_int("the number of ranks"));
  app.add_option("-H,--host", options.hosts,
                 "Hosts and their slots: host1:slots,host2:slots (slots default 1). localhost, "
                 "127.0.0.1 and this host's name are spawned directly, others through "
                 "--rsh-agent")
      ->type_name("LIST");
  app.add_option("--hostfile", options.hostfile,
                 "File of hosts: 'host slots=N' or 'host:N' lines, '#' comments")
      ->type_name("FILE");
  app.add_option("--rsh-agent", options.rsh_agent,
                 "Program (with arguments) that runs a command on a remote host: AGENT HOST "
                 "COMMAND")
      ->type_name("CMD");
  app.add_option("--store-addr", options.store_addr,
                 "Address remote ranks reach the store at (default: for each host, the address "
                 "of this host that routes to it; 127.0.0.1 for loopback hosts)")
      ->type_name("ADDR");
  app.add_option("--health-port", options.health_port,
                 "Serve HTTP on 0.0.0.0:P for probes and Prometheus: GET /healthz (200 'ok' "
                 "until a rank fails, then 503 with the reason), /readyz (200 once every local "
                 "rank was started, after discovery and agreement with --k8s-service; 503 "
                 "'starting: ...' before), /metrics (ranks by state, local ranks, uptime, exit "
                 "codes; Prometheus text format); 0 = off. Sets each rank's RINGFUSE_PROGRESS_FILE")
      ->type_name("P")
      ->check(CLI::Range(0, 65535));
  app.add_option("--bind-to", options.bind_to,
                 "none: ranks run on any CPU this launcher may use (as torchrun); core: the "
                 "i-th rank started on this host is bound to the i-th of those CPUs (as mpirun "
                 "--bind-to core). Binding helps latency-bound runs such as many small "
                 "all-reduces; it hurts a rank that wants several cores (libtorch's intra-op "
                 "threads, data loaders)")
      ->type_name("none|core")
      ->check(CLI::IsMember({"none", "core"}));
  app.add_option("-x", options.exports,
                 "Set an environment variable for every rank, as mpirun's -x: NAME=VALUE, or "
                 "NAME for this launcher's value (repeat for more). Ranks on this host inherit "
                 "the launcher's environment anyway; ranks on other hosts get only the "
                 "RINGFUSE_* settings and what -x names")
      ->type_name("NAME[=VALUE]")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--verbose", options.verbose,
               "Report the store address, job id, and each rank's start and end");
  app.add_flag("--timestamp", options.timestamp,
               "Add an ISO 8601 UTC timestamp after each line's rank prefix");

  auto* k8s = app.add_option("--k8s-service", options.k8s_service,
                             "Kubernetes mode: the headless Service whose DNS records list the "
                             "job's pods; run this in every pod")
                  ->type_name("SVC")
                  ->group("Kubernetes");
  app.add_option("--namespace", options.k8s_namespace, "The Service's namespace")
      ->type_name("NS")
      ->group("Kubernetes");
  app.add_option("--nproc-per-pod", options.nproc_per_pod, "Ranks each pod starts")
      ->type_name("G")
      ->group("Kubernetes")
      ->check(positive_int("--nproc-per-pod"));
  app.add_option("--dns-server", options.dns_server,
                 "Ask this DNS server instead of the pod's resolver (for tests)")
      ->type_name("IP:PORT")
      ->group("Kubernetes");
  app.add_option("--port", options.port, "Port of the store pod 0 serves")
      ->type_name("P")
      ->group("Kubernetes")
      ->check(CLI::Range(1, 65535));
  options.tunables.add_to(app);

  try {
    auto args = normalize_arguments(app, argc, argv);
    std::reverse(args.begin(), args.end());  // CLI11 parses a vector from the back
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kUsageError;
  }
  options.command = app.remaining();
  if (!options.command.empty() && options.command.front() == "--") {
    options.command.erase(options.command.begin());
  }
  auto usage = [](const std::string& message) {
    report(message + "; see ringfuse-run --help");
    return kUsageError;
  };
  if (options.command.empty()) {
    return usage("no PROGRAM given; usage: ringfuse-run -np N [flags] -- PROGRAM [ARGS...]");
  }
  if (!options.hosts.empty() && !options.hostfile.empty()) {
    return usage("-H and --hostfile both name the hosts; give one");
  }
  if (k8s->count() > 0 && (!options.hosts.empty() || !options.hostfile.empty())) {
    return usage("--k8s-service finds the hosts itself; drop -H/--hostfile");
  }
  if (options.np == 0 && (k8s->count() > 0 || (options.hosts.empty() && options.hostfile.empty()))) {
    return usage("-np N is required (the number of ranks)");
  }
  if (const auto problem = options.tunables.inconsistency()) return usage(*problem);
  try {
    options.exported = exported_variables(options.exports, [](const std::string& name) {
      const char* value = std::getenv(name.c_str());
      return value != nullptr ? std::optional<std::string>(value) : std::nullopt;
    });
  } catch (const ringfuse::Error& e) {
    return usage(e.what());
  }
  if (options.np > 0) {
    // With --k8s-service this pod supervises its own ranks, and pod 0 serves the store to
    // every rank and pod; otherwise this launcher does both for all of them.
    const bool k8s_mode = k8s->count() > 0;
    const DescriptorNeed need{k8s_mode ? options.nproc_per_pod : options.np,
                              k8s_mode ? options.np + options.np / options.nproc_per_pod
                                       : options.np};
    if (const auto shortfall = descriptor_shortfall(need)) {
      return usage("-np " + std::to_string(options.np) + ": " + *shortfall);
    }
  }
  return -1;
}

std::optional<std::string> getenv_string(const char* name) {
  if (const char* value = std::getenv(name); value != nullptr && *value != '\0') return value;
  return std::nullopt;
}

// Fresh id and secret, except that a secret in our environment is kept (a Kubernetes Secret,
// or hosts that must share one).
JobIdentity job_identity() {
  JobIdentity identity = JobIdentity::generate();
  if (auto secret = getenv_string("RINGFUSE_JOB_SECRET")) identity.job_secret = std::move(*secret);
  return identity;
}

// What every rank gets set beyond the contract: -x's variables, and the tunables' flags, which
// win where both name one.
std::map<std::string, std::string> rank_variables(const Options& options) {
  auto variables = options.exported;
  for (auto& [name, value] : options.tunables.variables()) variables[name] = value;
  return variables;
}

SupervisorOptions supervisor_options(const Options& options, HealthState* health) {
  SupervisorOptions s;
  s.health = health;
  s.verbose = options.verbose;
  s.timestamps = options.timestamp;
  s.bind_to_core = options.bind_to == "core";
  return s;
}

// The same, recording each rank's end in the store we host, for the ranks waiting for it.
SupervisorOptions supervisor_options(const Options& options, HealthState* health,
                                     ringfuse::rendezvous::TcpStoreServer& store) {
  SupervisorOptions s = supervisor_options(options, health);
  s.on_rank_exit = [&store](int rank, const std::string& description) {
    ringfuse::rendezvous::record_rank_exit(store, rank, description);
  };
  return s;
}

JobEnvironment make_environment(WorldLayout layout, const std::string& store_host,
                                std::uint16_t store_port, const TorchMaster& torch_master,
                                const JobIdentity& identity,
                                const std::map<std::string, std::string>& variables) {
  JobEnvironment environment(layout, store_host, store_port, torch_master, identity,
                             JobEnvironment::current_environment());
  for (const auto& [name, value] : variables) environment.set_extra(name, value);
  return environment;
}

int run_local(const Options& options, SignalPipe& signals, HealthState* health) {
  JobIdentity identity = job_identity();
  // Ranks and anything else connecting must prove the job secret (RINGFUSE_JOB_SECRET).
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0, identity.job_secret);
  WorldLayout layout;
  layout.world_size = options.np;
  layout.local_size = options.np;
  const auto environment =
      make_environment(layout, store.host(), store.port(),
                       TorchMaster{store.host(), free_port_for_rank_zero()}, identity,
                       rank_variables(options));
  if (options.verbose) {
    report("job " + environment.identity().job_id + ": " + std::to_string(options.np) +
           " ranks, store at " + environment.store_address());
  }
  Supervisor supervisor(supervisor_options(options, health, store), signals);
  return supervisor.run(local_launches(options.command, environment, "localhost"));
}

int run_hosts(const Options& options, SignalPipe& signals, HealthState* health) {
  const auto hosts = options.hostfile.empty() ? parse_host_list(options.hosts)
                                              : read_hostfile(options.hostfile);
  const auto placements = place_ranks(hosts, options.np);
  const int np = placements.back().first_rank + placements.back().local_size;
  int remote_ranks = 0;
  for (const auto& placement : placements) {
    if (!is_local_host(placement.host)) remote_ranks += placement.local_size;
  }
  // A remote rank keeps a second store connection: its watch on this launcher.
  if (const auto shortfall = descriptor_shortfall(DescriptorNeed{np, np + remote_ranks})) {
    report(std::to_string(np) + " ranks (the hosts' slots): " + *shortfall +
           "; see ringfuse-run --help");
    return kUsageError;
  }
  const bool any_remote = std::any_of(placements.begin(), placements.end(),
                                      [](const Placement& p) { return !is_local_host(p.host); });
  // Remote ranks need the store on an address they can reach: it listens on every address,
  // and each host's ranks are told --store-addr, or the address of ours that routes to that
  // host (store_address.hpp), decided before anything starts so that a host no address is
  // known for fails the job at once.
  std::vector<std::string> store_addresses;
  for (const auto& placement : placements) {
    store_addresses.push_back(store_address_for(placement.host, options.store_addr,
                                                std::chrono::seconds(5)));
  }
  // Ranks advertise to their peers the address they reach the store at. With ranks on another
  // host, this host's ranks must advertise one that host reaches, not 127.0.0.1: they reach the
  // store at our address that routes to the first such host.
  std::optional<std::string> reachable;
  for (std::size_t host = 0; host < placements.size() && !reachable; ++host) {
    if (!is_local_host(placements[host].host) && !is_loopback_literal(store_addresses[host])) {
      reachable = store_addresses[host];
    }
  }
  if (reachable && options.store_addr.empty()) {
    for (std::size_t host = 0; host < placements.size(); ++host) {
      if (is_local_host(placements[host].host)) store_addresses[host] = *reachable;
    }
  }
  const JobIdentity identity = job_identity();
  // A loopback store address (loopback "hosts", a tunnel) needs nothing beyond it.
  const bool one_loopback_address =
      std::all_of(store_addresses.begin(), store_addresses.end(), [&](const std::string& at) {
        return at == store_addresses.front() && is_loopback_literal(at);
      });
  const std::string listen_addr = one_loopback_address ? store_addresses.front()
                                  : any_remote         ? "0.0.0.0"
                                                       : "127.0.0.1";
  ringfuse::rendezvous::TcpStoreServer store(listen_addr, 0, identity.job_secret);
  // torch's env:// meets at rank 0's TCPStore: on the first host, which the others reach as
  // they reach our store when that host is this one, else by the name it was given.
  const std::string& rank_zero_host = placements.front().host;
  const bool rank_zero_here = is_local_host(rank_zero_host);
  const std::uint16_t torch_port = free_port_for_rank_zero();
  const auto variables = rank_variables(options);
  const auto agent = split_agent(options.rsh_agent);
  const std::string cwd = std::filesystem::current_path().string();
  // Our own RINGFUSE_* settings (tunables from the environment) travel to remote ranks too,
  // except this host's own address.
  std::vector<std::string> forwarded;
  for (const auto& entry : JobEnvironment::current_environment()) {
    if (entry.starts_with("RINGFUSE_") && !entry.starts_with("RINGFUSE_HOST_ADDR=")) {
      forwarded.push_back(entry);
    }
  }
  if (options.verbose) {
    std::string at;
    for (std::size_t i = 0; i < placements.size(); ++i) {
      at += (i == 0 ? "" : ", ") + placements[i].host + " -> " + store_addresses[i];
    }
    report("job " + identity.job_id + ": " + std::to_string(np) + " ranks on " +
           std::to_string(placements.size()) + " hosts, store on port " +
           std::to_string(store.port()) + " (" + at + ")");
  }

  std::vector<RankLaunch> launches;
  for (std::size_t host = 0; host < placements.size(); ++host) {
    const Placement& placement = placements[host];
    WorldLayout layout;
    layout.world_size = np;
    layout.local_size = placement.local_size;
    layout.cross_rank = placement.cross_rank;
    layout.cross_size = static_cast<int>(placements.size());
    layout.first_rank = placement.first_rank;
    // --host-addr names an address of this host: only its own ranks advertise it.
    auto host_variables = variables;
    if (!is_local_host(placement.host)) host_variables.erase("RINGFUSE_HOST_ADDR");
    const TorchMaster torch_master{rank_zero_here ? store_addresses[host] : rank_zero_host,
                                   torch_port};
    auto environment = make_environment(layout, store_addresses[host], store.port(),
                                        torch_master, identity, host_variables);
    // Ranks advertise the address their host was named by, so peers connect to that host.
    if (is_ip_literal(placement.host) && !is_local_host(placement.host)) {
      environment.set_extra("RINGFUSE_HOST_ADDR", placement.host);
    }
    if (is_local_host(placement.host)) {
      auto local = local_launches(options.command, environment, placement.host);
      launches.insert(launches.end(), local.begin(), local.end());
      continue;
    }
    for (int local = 0; local < placement.local_size; ++local) {
      std::vector<std::string> assignments = forwarded;
      const auto own = environment.assignments_for_local_rank(local);
      std::erase_if(assignments, [&own](const std::string& entry) {
        const auto name = entry.substr(0, entry.find('=') + 1);
        return std::any_of(own.begin(), own.end(),
                           [&name](const std::string& o) { return o.starts_with(name); });
      });
      assignments.insert(assignments.end(), own.begin(), own.end());
      // The agent may not pass our signals on (ssh without -tt): the rank watches us itself.
      assignments.emplace_back("RINGFUSE_WATCH_LAUNCHER=1");
      launches.push_back(RankLaunch{
          placement.first_rank + local, placement.host,
          remote_rank_command(agent, placement.host, cwd, assignments, options.command),
          JobEnvironment::current_environment(), /*remote=*/true});
    }
  }
  Supervisor supervisor(supervisor_options(options, health, store), signals);
  return supervisor.run(launches);
}

int run(const Options& options) {
  // Handlers first: a Ctrl-C from here on is forwarded instead of orphaning started ranks.
  SignalPipe signals;
  // --health-port: served from its own thread until run() returns (the destructor joins it).
  HealthState health_state;
  HealthState* health = options.health_port > 0 ? &health_state : nullptr;
  std::optional<HealthServer> health_server;
  if (health) {
    health_server.emplace(health_state, static_cast<std::uint16_t>(options.health_port));
    if (options.verbose) {
      report("health endpoint on 0.0.0.0:" + std::to_string(health_server->port()) +
             " (/healthz, /readyz, /metrics)");
    }
  }
  if (!options.k8s_service.empty()) {
    K8sOptions k8s;
    k8s.service = options.k8s_service;
    k8s.ns = options.k8s_namespace;
    k8s.np = options.np;
    k8s.nproc_per_pod = options.nproc_per_pod;
    if (!options.dns_server.empty()) k8s.dns_server = options.dns_server;
    k8s.port = options.port;
    k8s.start_timeout = options.tunables.options().connect_timeout;
    k8s.rank_variables = rank_variables(options);
    k8s.supervisor = supervisor_options(options, health);
    return run_k8s(k8s, options.command, signals);
  }
  if (!options.hosts.empty() || !options.hostfile.empty()) {
    return run_hosts(options, signals, health);
  }
  return run_local(options, signals, health);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (const int code = parse_command_line(argc, argv, options); code >= 0) return code;
  try {
    return run(options);
  } catch (const ProgramNotExecutable& e) {
    report(e.what());
    return kCannotExecute;
  } catch (const std::exception& e) {
    report(std::string("error: ") + e.what());
    return kLauncherError;
  }
}
