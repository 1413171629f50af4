// The launcher's parsers and rules, without processes or DNS: -H, hostfiles, rank placement,
// Kubernetes pod identity and the discovery verdicts.
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <vector>

#include "closest_flag.hpp"
#include "host_list.hpp"
#include "hostfile.hpp"
#include "k8s_discovery.hpp"
#include "k8s_identity.hpp"
#include "rsh_command.hpp"
#include "tunables.hpp"
#include "ringfuse/error.hpp"

namespace {

using namespace ringfuse::launcher;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HostList, ParsesHostsAndSlots) {
  EXPECT_EQ(parse_host_list("a:2,b,127.0.0.3:4"),
            (std::vector<HostSlots>{{"a", 2}, {"b", 1}, {"127.0.0.3", 4}}));
  EXPECT_EQ(parse_host_list("[::1]:3"), (std::vector<HostSlots>{{"::1", 3}}));
  EXPECT_EQ(parse_host_list("a:1,a:2"), (std::vector<HostSlots>{{"a", 3}}));
}

TEST(HostList, RejectsBadEntries) {
  EXPECT_NE(error_of([] { parse_host_list("a:0"); }).find("slots must be a whole number >= 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_host_list("a:x"); }).find("'a:x'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_host_list("a,,b"); }).find("empty entry"), std::string::npos);
  EXPECT_NE(error_of([] { parse_host_list(":2"); }).find("no host name"), std::string::npos);
}

TEST(Hostfile, AcceptsBothFormatsAndComments) {
  const auto hosts = parse_hostfile(
      "# cluster\n\nnode-a slots=4\nnode-b:2   # trailing comment\n  node-c\n"
      "node-d slots=1 max_slots=8\n",
      "hosts.txt");
  EXPECT_EQ(hosts, (std::vector<HostSlots>{{"node-a", 4}, {"node-b", 2}, {"node-c", 1},
                                           {"node-d", 1}}));
}

TEST(Hostfile, ErrorsNameTheFileAndLine) {
  EXPECT_NE(error_of([] { parse_hostfile("a slots=2\nb slots=x\n", "h.txt"); })
                .find("h.txt:2: 'x' is not a whole number of slots"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_hostfile("a colour=red\n", "h.txt"); })
                .find("h.txt:1: unknown attribute 'colour'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_hostfile("# nothing\n", "h.txt"); }).find("names no hosts"),
            std::string::npos);
}

TEST(Placement, FillsHostsInOrder) {
  const auto p = place_ranks({{"a", 2}, {"b", 2}, {"c", 2}}, 3);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].host, "a");
  EXPECT_EQ(p[0].local_size, 2);
  EXPECT_EQ(p[1].host, "b");
  EXPECT_EQ(p[1].first_rank, 2);
  EXPECT_EQ(p[1].local_size, 1);
  EXPECT_EQ(p[1].cross_rank, 1);
  EXPECT_EQ(place_ranks({{"a", 2}, {"b", 3}}, 0).back().local_size, 3);  // 0: every slot
  EXPECT_NE(error_of([] { place_ranks({{"a", 2}}, 3); }).find("-np 3 needs more slots"),
            std::string::npos);
}

TEST(Hosts, LocalAndLoopback) {
  EXPECT_TRUE(is_local_host("localhost"));
  EXPECT_TRUE(is_local_host("127.0.0.1"));
  EXPECT_FALSE(is_local_host("127.0.0.2"));  // a loopback "host": goes through the agent
  EXPECT_TRUE(is_loopback_literal("127.0.0.2"));
  EXPECT_FALSE(is_loopback_literal("10.0.0.1"));
  EXPECT_TRUE(is_ip_literal("10.0.0.1"));
  EXPECT_FALSE(is_ip_literal("node-a"));
}

TEST(RshCommand, QuotesEveryWordForTheRemoteShell) {
  EXPECT_EQ(shell_quote("plain-word_1.0"), "plain-word_1.0");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote(""), "''");
  const auto argv = remote_rank_command(split_agent("ssh -o BatchMode=yes"), "node-a", "/w d",
                                        {"A=1 2"}, {"prog", "--x", "$HOME"});
  EXPECT_EQ(argv, (std::vector<std::string>{"ssh", "-o", "BatchMode=yes", "node-a",
                                            "cd '/w d' && exec env 'A=1 2' prog --x '$HOME'"}));
}

EnvGet env_of(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    const auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

TEST(PodIdentity, OrdinalFromHostname) {
  EXPECT_EQ(statefulset_ordinal("trainer-2"), 2);
  EXPECT_EQ(statefulset_ordinal("my-job-12"), 12);
  EXPECT_EQ(statefulset_ordinal("trainer-02"), std::nullopt);  // not a StatefulSet ordinal
  EXPECT_EQ(statefulset_ordinal("trainer-7d9f8-2x4bq"), std::nullopt);
  EXPECT_EQ(statefulset_ordinal("trainer"), std::nullopt);
  EXPECT_EQ(ordinal_base("my-job-12"), "my-job");
}

TEST(PodIdentity, PrecedenceAndContradictions) {
  auto id = pod_identity(env_of({{"HOSTNAME", "trainer-3"}, {"POD_IP", "10.0.0.9"}}), "x");
  EXPECT_EQ(id.index, 3);
  EXPECT_EQ(id.ip, "10.0.0.9");
  EXPECT_EQ(id.name_base, "trainer");

  id = pod_identity(env_of({{"JOB_COMPLETION_INDEX", "1"}}), "job-1");
  EXPECT_EQ(id.index, 1);
  EXPECT_EQ(id.index_source, "JOB_COMPLETION_INDEX");

  // Explicit ranks come first: PET_NODE_RANK, then RANK, then JOB_COMPLETION_INDEX, POD_INDEX.
  id = pod_identity(env_of({{"PET_NODE_RANK", "2"}, {"RANK", "5"}, {"JOB_COMPLETION_INDEX", "2"}}),
                    "job-2");
  EXPECT_EQ(id.index, 2);
  EXPECT_EQ(id.index_source, "PET_NODE_RANK");
  id = pod_identity(env_of({{"POD_INDEX", "4"}}), "trainer-4");
  EXPECT_EQ(id.index_source, "POD_INDEX");
  EXPECT_THROW(pod_identity(env_of({{"RANK", "1"}}), "trainer-2"), ringfuse::Error);
  EXPECT_THROW(pod_identity(env_of({{"PET_NODE_RANK", "x"}}), "trainer-2"), ringfuse::Error);

  id = pod_identity(env_of({{"POD_IP", "10.0.0.9"}}), "web-7d9f8-abcde");
  EXPECT_FALSE(id.index.has_value());  // decided by sorted IP

  id = pod_identity(env_of({{"HOSTNAME", "trainer-1.trainer.default.svc.cluster.local"}}), "x");
  EXPECT_EQ(id.hostname, "trainer-1");

  EXPECT_NE(error_of([] { pod_identity(env_of({{"JOB_COMPLETION_INDEX", "2"}}), "job-1"); })
                .find("contradicts"),
            std::string::npos);
  EXPECT_NE(error_of([] { pod_identity(env_of({{"POD_IP", "nope"}}), "job-1"); })
                .find("POD_IP='nope' is not an IPv4 address"),
            std::string::npos);
}

DnsAnswer ok(std::vector<std::string> addresses) {
  DnsAnswer a;
  a.status = DnsAnswer::Status::ok;
  a.addresses = std::move(addresses);
  return a;
}
DnsAnswer nxdomain() {
  DnsAnswer a;
  a.status = DnsAnswer::Status::nxdomain;
  return a;
}

PodIdentity named(int index, std::string ip) {
  PodIdentity id;
  id.hostname = "trainer-" + std::to_string(index);
  id.ip = std::move(ip);
  id.index = index;
  id.name_base = "trainer";
  return id;
}

const DiscoverySpec kSpec{"trainer", "default", 3};

TEST(Discovery, ByNameCompleteWaitingAndFatal) {
  DiscoveryRound round{ok({"10.0.0.1", "10.0.0.2", "10.0.0.3"}),
                       {ok({"10.0.0.1"}), ok({"10.0.0.2"}), ok({"10.0.0.3"})}};
  auto v = evaluate_discovery(kSpec, named(1, "10.0.0.2"), round);
  ASSERT_EQ(v.kind, DiscoveryVerdict::Kind::complete) << v.message;
  EXPECT_EQ(v.membership.canonical(), "0=10.0.0.1,1=10.0.0.2,2=10.0.0.3");
  EXPECT_EQ(v.membership.own_index, 1);

  round.by_name[2] = nxdomain();
  v = evaluate_discovery(kSpec, named(1, "10.0.0.2"), round);
  EXPECT_EQ(v.kind, DiscoveryVerdict::Kind::waiting);
  EXPECT_EQ(v.missing, std::vector<int>{2});
  EXPECT_EQ(v.message, "2/3 peers");

  round.by_name[2] = ok({"10.0.0.3", "10.0.0.4"});
  v = evaluate_discovery(kSpec, named(1, "10.0.0.2"), round);
  EXPECT_EQ(v.kind, DiscoveryVerdict::Kind::fatal);
  EXPECT_NE(v.message.find("duplicate ordinal 2"), std::string::npos) << v.message;

  round.by_name[2] = ok({"10.0.0.3"});
  round.service = ok({"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.8"});
  v = evaluate_discovery(kSpec, named(1, "10.0.0.2"), round);
  EXPECT_EQ(v.kind, DiscoveryVerdict::Kind::fatal);
  EXPECT_NE(v.message.find("peers beyond N"), std::string::npos) << v.message;
  EXPECT_NE(v.message.find("10.0.0.8"), std::string::npos) << v.message;

  round.service = ok({"10.0.0.1", "10.0.0.2", "10.0.0.3"});
  v = evaluate_discovery(kSpec, named(1, "10.0.0.7"), round);  // our record is stale
  EXPECT_EQ(v.kind, DiscoveryVerdict::Kind::waiting);
  EXPECT_NE(v.message.find("is not in the records"), std::string::npos) << v.message;

  v = evaluate_discovery(kSpec, named(3, "10.0.0.4"), round);
  EXPECT_EQ(v.kind, DiscoveryVerdict::Kind::fatal);
  EXPECT_NE(v.message.find("a peer beyond N"), std::string::npos) << v.message;
}

TEST(Discovery, BySortedAddress) {
  PodIdentity self;
  self.hostname = "web-abcde";
  self.ip = "10.0.0.10";
  DiscoveryRound round{ok({"10.0.0.9", "10.0.0.10"}), {}};
  auto v = evaluate_discovery(kSpec, self, round);
  EXPECT_EQ(v.kind, DiscoveryVerdict::Kind::waiting);
  EXPECT_NE(v.message.find("2/3 peers"), std::string::npos);

  round.service = ok({"10.0.0.10", "10.0.0.9", "10.0.0.2"});
  v = evaluate_discovery(kSpec, self, round);
  ASSERT_EQ(v.kind, DiscoveryVerdict::Kind::complete) << v.message;
  EXPECT_EQ(v.membership.canonical(), "0=10.0.0.2,1=10.0.0.9,2=10.0.0.10");  // numeric order
  EXPECT_EQ(v.membership.own_index, 2);

  self.ip = "10.0.0.11";
  v = evaluate_discovery(kSpec, self, round);
  EXPECT_EQ(v.kind, DiscoveryVerdict::Kind::waiting);
  EXPECT_NE(v.message.find("10.0.0.11 is not in the records"), std::string::npos);

  round.service = ok({"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"});
  EXPECT_EQ(evaluate_discovery(kSpec, self, round).kind, DiscoveryVerdict::Kind::fatal);
}

TEST(ClosestFlag, SuggestsTheNearestSpelling) {
  const std::vector<std::string> known{"--np", "-np", "--transport", "--timeout", "--timeline",
                                       "--verbose", "--hostfile", "-H"};
  EXPECT_EQ(closest_flag("--transprot", known), "--transport");
  EXPECT_EQ(closest_flag("--timeot", known), "--timeout");
  EXPECT_EQ(closest_flag("--verbos", known), "--verbose");
  EXPECT_EQ(closest_flag("--host-file", known), "--hostfile");
  EXPECT_EQ(closest_flag("-nP", known), "-np");
  EXPECT_EQ(closest_flag("--x", {}), "");
}

// Parses `args` (in command-line order) into a fresh app with the tunables' flags; returns the
// CLI11 error, or "" when parsing succeeded.
std::string parse_tunables(Tunables& tunables, std::vector<std::string> args) {
  CLI::App app{"test"};
  tunables.add_to(app);
  std::reverse(args.begin(), args.end());
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return "";
}

// Issue #22.4: a bad tunable value is a usage error while the flags are read (exit 2), naming
// the flag, its variable and what it takes; before, it was found later and exited 1.
TEST(Tunables, FlagsAreCheckedByTheLibrarysParserAsTheyAreRead) {
  Tunables tunables;
  const auto error = parse_tunables(tunables, {"--algo", "butterfly"});
  EXPECT_NE(error.find("--algo"), std::string::npos) << error;
  EXPECT_NE(error.find("RINGFUSE_ALGO"), std::string::npos) << error;
  EXPECT_NE(error.find("one of auto, ring, tree, rhd"), std::string::npos) << error;
  for (const auto& bad :
       {std::vector<std::string>{"--timeout", "0"}, {"--fusion-threshold", "2T"},
        {"--log-level", "loud"}, {"--host-addr", "8.8.8.8"}, {"--fusion-lookahead", "-1"},
        {"--start-timeout", "soon"}}) {
    Tunables fresh;
    EXPECT_NE(parse_tunables(fresh, bad), "") << bad[0] << " " << bad[1];
  }
}

TEST(Tunables, EveryTunableHasAFlagThatSetsItsVariable) {
  Tunables tunables;
  ASSERT_EQ(parse_tunables(tunables, {"--fusion-lookahead", "8", "--start-timeout", "7.5",
                                      "--host-addr", "127.0.0.3", "--log-level", "debug",
                                      "--algo", "ring"}),
            "");
  EXPECT_EQ(tunables.variables(),
            (std::map<std::string, std::string>{{"RINGFUSE_FUSION_LOOKAHEAD", "8"},
                                                {"RINGFUSE_CONNECT_TIMEOUT_S", "7.5"},
                                                {"RINGFUSE_HOST_ADDR", "127.0.0.3"},
                                                {"RINGFUSE_LOG_LEVEL", "debug"},
                                                {"RINGFUSE_ALGO", "ring"}}));
  EXPECT_EQ(tunables.options().connect_timeout, std::chrono::milliseconds(7500));
  EXPECT_EQ(tunables.options().engine.fusion_lookahead, 8u);
  EXPECT_EQ(tunables.inconsistency(), std::nullopt);

  Tunables contradicting;
  ASSERT_EQ(parse_tunables(contradicting, {"--stall-timeout", "30", "--stall-abort", "10"}), "");
  const auto problem = contradicting.inconsistency();
  ASSERT_TRUE(problem.has_value());
  EXPECT_NE(problem->find("--stall-abort (10 s) is below --stall-timeout (30 s)"),
            std::string::npos)
      << *problem;
}

}  // namespace
