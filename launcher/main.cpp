// ringfuse-run: starts N local ranks of a program with the Ringfuse environment contract
// (DESIGN.md §3), hosts their rendezvous store, relays their output and reports how they ended.
#include <CLI/CLI.hpp>

#include <chrono>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "job_environment.hpp"
#include "rank_process.hpp"
#include "rendezvous/tcp_store.hpp"
#include "signal_pipe.hpp"
#include "supervisor.hpp"

namespace {

using namespace ringfuse::launcher;

constexpr int kUsageError = 2;         // as CLI tools conventionally do for bad flags
constexpr int kLauncherError = 1;      // the launcher itself failed (store, pipes, ...)
constexpr int kCannotExecute = 127;    // as shells do for a program that cannot be run

struct Options {
  int np = 0;
  double start_timeout_s = 60.0;
  bool verbose = false;
  bool timestamp = false;
  std::vector<std::string> command;
};

// mpirun users type "-np 4", but CLI11 only has one-letter short options, so the leading
// launcher flags are rewritten to "--np" before parsing. Only our own flags are touched: the
// scan stops at "--" or at the program, whose arguments are never rewritten.
std::vector<std::string> normalize_arguments(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--" || arg.empty() || arg[0] != '-') break;
    if (arg == "-np") {
      arg = "--np";
    } else if (arg.starts_with("-np=")) {
      arg = std::string("--np=").append(arg, 4);
      continue;
    }
    const bool takes_value = arg == "--np" || arg == "-n" || arg == "--start-timeout";
    if (takes_value) ++i;
  }
  return args;
}

// Fills `options` and returns -1, or returns the exit code when parsing already decided it
// (--help, a bad flag).
int parse_command_line(int argc, char** argv, Options& options) {
  CLI::App app{
      "Starts N ranks of PROGRAM on this host with the Ringfuse environment (RINGFUSE_RANK, "
      "RINGFUSE_SIZE, RINGFUSE_STORE_ADDR, ... and torchrun's RANK, WORLD_SIZE, MASTER_ADDR, "
      "...), hosting their rendezvous store. Each output line is prefixed with its rank.",
      "ringfuse-run"};
  app.footer(
      "Usage: ringfuse-run -np N [--start-timeout S] [--verbose] [--timestamp] -- PROGRAM "
      "[ARGS...]\n\n"
      "Exit status: 0 when every rank exits 0; otherwise the first failing rank's status "
      "(128+signal if a signal ended it), after the other ranks were stopped (SIGTERM, then "
      "SIGKILL after 5 s); 127 if PROGRAM cannot be executed; 2 for bad flags. SIGINT, SIGTERM "
      "and SIGHUP are forwarded to every rank; a second one kills them.");
  app.prefix_command();  // everything from PROGRAM on belongs to PROGRAM

  app.add_option("-n,--np", options.np, "Number of ranks to start (also spelled -np, as in mpirun)")
      ->required()
      ->type_name("N")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            int n = 0;
            if (!CLI::detail::lexical_cast(value, n) || n < 1) {
              return "the number of ranks must be a whole number >= 1, not '" + value + "'";
            }
            return {};
          },
          "N>=1"));
  app.add_option("--start-timeout", options.start_timeout_s,
                 "Seconds the ranks get to reach the rendezvous (reserved: accepted and "
                 "validated, not yet enforced)")
      ->type_name("S")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            double s = 0;
            if (!CLI::detail::lexical_cast(value, s) || !(s > 0)) {
              return "the start timeout must be a positive number of seconds, not '" + value + "'";
            }
            return {};
          },
          "S>0"));
  app.add_flag("--verbose", options.verbose,
               "Report the store address, job id, and each rank's start and end");
  app.add_flag("--timestamp", options.timestamp,
               "Add an ISO 8601 UTC timestamp after each line's rank prefix");

  auto args = normalize_arguments(argc, argv);
  std::reverse(args.begin(), args.end());  // CLI11 parses a vector from the back
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kUsageError;
  }
  options.command = app.remaining();
  if (!options.command.empty() && options.command.front() == "--") {
    options.command.erase(options.command.begin());
  }
  if (options.command.empty()) {
    report("no PROGRAM given; usage: ringfuse-run -np N [flags] -- PROGRAM [ARGS...]");
    return kUsageError;
  }
  return -1;
}

int run(const Options& options) {
  // Handlers first: a Ctrl-C from here on is forwarded instead of orphaning started ranks.
  SignalPipe signals;
  JobIdentity identity = JobIdentity::generate();
  // Ranks and anything else connecting must prove the job secret (RINGFUSE_JOB_SECRET).
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0, identity.job_secret);

  WorldLayout layout;
  layout.world_size = options.np;
  layout.local_size = options.np;
  JobEnvironment environment(layout, store.host(), store.port(), std::move(identity),
                             JobEnvironment::current_environment());

  SupervisorOptions supervisor_options;
  supervisor_options.verbose = options.verbose;
  supervisor_options.timestamps = options.timestamp;
  if (options.verbose) {
    report("job " + environment.identity().job_id + ": " + std::to_string(options.np) +
           " ranks, store at " + environment.store_address());
  }
  Supervisor supervisor(supervisor_options, signals);
  return supervisor.run(options.command, environment);
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
