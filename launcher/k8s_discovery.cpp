#include "k8s_discovery.hpp"

#include <algorithm>
#include <map>
#include <random>
#include <thread>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

using Clock = std::chrono::steady_clock;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

std::string pod_name(const PodIdentity& self, int index) {
  return self.name_base + "-" + std::to_string(index);
}

DiscoveryVerdict fatal(std::string message) {
  DiscoveryVerdict v;
  v.kind = DiscoveryVerdict::Kind::fatal;
  v.message = std::move(message);
  return v;
}

DiscoveryVerdict by_name(const DiscoverySpec& spec, const PodIdentity& self,
                         const DiscoveryRound& round) {
  const int own = *self.index;
  DiscoveryVerdict v;
  std::map<std::string, int> owner;  // address -> index
  int found = 0;
  for (int k = 0; k < spec.pods; ++k) {
    const DnsAnswer& answer = round.by_name.at(static_cast<std::size_t>(k));
    if (answer.status != DnsAnswer::Status::ok) {
      v.missing.push_back(k);
      continue;
    }
    if (answer.addresses.size() > 1) {
      return fatal("duplicate ordinal " + std::to_string(k) + ": " +
                   pod_fqdn(pod_name(self, k), spec.service, spec.ns) + " resolves to " +
                   join(answer.addresses) + "; two pods claim index " + std::to_string(k) +
                   " (a second job or a leftover pod with the same name?)");
    }
    const std::string& address = answer.addresses.front();
    if (const auto [it, fresh] = owner.emplace(address, k); !fresh) {
      return fatal(pod_name(self, it->second) + " and " + pod_name(self, k) +
                   " both resolve to " + address + "; every pod needs its own address");
    }
    ++found;
  }
  if (!v.missing.empty()) {
    v.message = std::to_string(found) + "/" + std::to_string(spec.pods) + " peers";
    return v;
  }
  const std::string& own_record = round.by_name[static_cast<std::size_t>(own)].addresses.front();
  if (!self.ip.empty() && own_record != self.ip) {
    v.message = "this pod (" + self.hostname + ", POD_IP " + self.ip + ") is not in the records: " +
                pod_fqdn(self.hostname, spec.service, spec.ns) + " resolves to " + own_record +
                " (a stale record of an earlier pod?)";
    return v;
  }
  if (round.service.status == DnsAnswer::Status::ok) {
    std::vector<std::string> beyond;
    for (const auto& address : round.service.addresses) {
      if (!owner.contains(address)) beyond.push_back(address);
    }
    if (!beyond.empty()) {
      return fatal("peers beyond N: " + service_fqdn(spec.service, spec.ns) + " also lists " +
                   join(beyond) + ", which is none of " + pod_name(self, 0) + ".." +
                   pod_name(self, spec.pods - 1) + "; -np / --nproc-per-pod say " +
                   std::to_string(spec.pods) + " pods: fix -np or the replica count");
    }
  }
  v.kind = DiscoveryVerdict::Kind::complete;
  v.membership.own_index = own;
  for (int k = 0; k < spec.pods; ++k) {
    v.membership.pod_ips.push_back(round.by_name[static_cast<std::size_t>(k)].addresses.front());
    v.membership.pod_names.push_back(pod_name(self, k));
  }
  return v;
}

DiscoveryVerdict by_address(const DiscoverySpec& spec, const PodIdentity& self,
                            const DiscoveryRound& round) {
  DiscoveryVerdict v;
  const std::string service = service_fqdn(spec.service, spec.ns);
  std::vector<std::string> seen;
  if (round.service.status == DnsAnswer::Status::ok) seen = round.service.addresses;
  sort_addresses(seen);
  const int count = static_cast<int>(seen.size());
  if (count > spec.pods) {
    return fatal("peers beyond N: " + service + " lists " + std::to_string(count) +
                 " addresses (" + join(seen) + ") but -np / --nproc-per-pod say " +
                 std::to_string(spec.pods) + " pods: fix -np or the replica count");
  }
  if (count < spec.pods) {
    v.message = std::to_string(count) + "/" + std::to_string(spec.pods) + " peers in " + service +
                (seen.empty() ? " (" + round.service.describe() + ")" : " (" + join(seen) + ")");
    return v;
  }
  const auto own = std::find(seen.begin(), seen.end(), self.ip);
  if (own == seen.end()) {
    v.message = "this pod's address " + self.ip + " is not in the records of " + service + " (" +
                join(seen) + ")";
    return v;
  }
  v.kind = DiscoveryVerdict::Kind::complete;
  v.membership.pod_ips = seen;
  v.membership.own_index = static_cast<int>(own - seen.begin());
  return v;
}

}  // namespace

std::string Membership::canonical() const {
  std::string out;
  for (std::size_t k = 0; k < pod_ips.size(); ++k) {
    if (k > 0) out += ',';
    out.append(std::to_string(k)).append("=").append(pod_ips[k]);
  }
  return out;
}

std::string Membership::describe(std::size_t index) const {
  const std::string name =
      index < pod_names.size() ? pod_names[index] : "pod " + std::to_string(index);
  return index < pod_ips.size() ? name + " (" + pod_ips[index] + ")" : name;
}

DiscoveryVerdict evaluate_discovery(const DiscoverySpec& spec, const PodIdentity& self,
                                    const DiscoveryRound& round) {
  if (self.index) {
    if (*self.index >= spec.pods) {
      return fatal("this pod is " + self.hostname + " (index " + std::to_string(*self.index) +
                   " from " + self.index_source + ") but -np / --nproc-per-pod say " +
                   std::to_string(spec.pods) + " pods (indices 0.." +
                   std::to_string(spec.pods - 1) + "): a peer beyond N; fix -np or the replicas");
    }
    return by_name(spec, self, round);
  }
  return by_address(spec, self, round);
}

Membership discover_pods(const DiscoverySpec& spec, const PodIdentity& self, DnsResolver& dns,
                         Clock::time_point deadline,
                         const std::function<void(const std::string&)>& progress) {
  std::mt19937 random(std::random_device{}());
  auto delay = std::chrono::milliseconds(200);
  const auto started = Clock::now();
  std::map<int, Clock::time_point> missing_since;
  std::string last_message;
  auto last_report = Clock::time_point{};
  std::string waiting_for;
  while (true) {
    DiscoveryRound round;
    round.service = dns.lookup_a(service_fqdn(spec.service, spec.ns));
    if (self.index) {
      for (int k = 0; k < spec.pods; ++k) {
        round.by_name.push_back(dns.lookup_a(pod_fqdn(pod_name(self, k), spec.service, spec.ns)));
      }
    }
    DiscoveryVerdict verdict = evaluate_discovery(spec, self, round);
    if (verdict.kind == DiscoveryVerdict::Kind::complete) return verdict.membership;
    if (verdict.kind == DiscoveryVerdict::Kind::fatal) {
      throw Error(ErrorKind::invalid_config, verdict.message);
    }
    const auto now = Clock::now();
    std::string message = verdict.message;
    std::string detail = message;  // the same without durations, to notice changes
    if (!verdict.missing.empty()) {
      std::vector<std::string> names;
      for (const int k : verdict.missing) {
        const auto since = missing_since.try_emplace(k, now).first->second;
        const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(now - since).count();
        const auto what = round.by_name[static_cast<std::size_t>(k)].describe();
        names.push_back(pod_name(self, k) + " (" + what + " for " + std::to_string(seconds) + " s)");
        detail.append(" ").append(pod_name(self, k)).append(what);
      }
      message += ": missing " + join(names);
    }
    for (auto it = missing_since.begin(); it != missing_since.end();) {
      it = std::find(verdict.missing.begin(), verdict.missing.end(), it->first) ==
                   verdict.missing.end()
               ? missing_since.erase(it)
               : std::next(it);
    }
    waiting_for = message;
    if (detail != last_message || now - last_report >= std::chrono::seconds(5)) {
      progress(message);
      last_message = detail;
      last_report = now;
    }
    if (now >= deadline) {
      const auto waited = std::chrono::duration_cast<std::chrono::seconds>(now - started).count();
      throw Error(ErrorKind::timeout,
                  "gave up on discovery after " + std::to_string(waited) + " s (--start-timeout): " +
                      waiting_for + "; check that every pod runs and that the headless Service " +
                      service_fqdn(spec.service, spec.ns) +
                      " has publishNotReadyAddresses: true");
    }
    // Backoff with jitter, so pods that started together do not query in lockstep.
    std::uniform_real_distribution<double> jitter(0.75, 1.25);
    auto sleep = std::chrono::milliseconds(static_cast<long long>(delay.count() * jitter(random)));
    sleep = std::min(sleep, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
    std::this_thread::sleep_for(std::max(sleep, std::chrono::milliseconds(0)));
    delay = std::min(delay * 3 / 2, std::chrono::milliseconds(2000));
  }
}

}  // namespace ringfuse::launcher
