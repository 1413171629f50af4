#include "pod_zero_store.hpp"

#include <fmt/format.h>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {

std::unique_ptr<rendezvous::TcpStoreClient> connect_to_pod_zero_store(
    const Membership& membership, std::uint16_t port, std::chrono::milliseconds timeout,
    const std::string& secret, std::chrono::milliseconds start_timeout) {
  const std::string& store_ip = membership.pod_ips.front();
  try {
    return std::make_unique<rendezvous::TcpStoreClient>(store_ip, port, timeout, secret);
  } catch (const rendezvous::StoreClosingError& e) {
    if (membership.own_index == 0) throw;
    // Pod 0 was there and has gone: the job it started (or gave up) ended without this pod.
    throw Error(ErrorKind::peer_failure,
                fmt::format("pod 0's store is gone: the job gave up or finished before this pod "
                            "joined; {} served it at {}:{} and has shut it down ({}); its log "
                            "says why (kubectl logs): if it names a missing pod, start the pods "
                            "closer together or raise --start-timeout",
                            membership.describe(0), store_ip, port, e.what()));
  } catch (const Error& e) {
    if (membership.own_index == 0 || e.kind() != ErrorKind::timeout) throw;
    // Never answered: pod 0 is the pod that has not joined (or gave up before this pod
    // started), and the message says so by its name and address.
    throw Error(ErrorKind::timeout,
                fmt::format("{} has not joined after {} s: it serves this job's store at {}:{}, "
                            "which did not answer ({}); is its ringfuse-run running? see its "
                            "events and log (kubectl describe pod, kubectl logs); if it gave up "
                            "on a missing pod before this pod started, its log names that pod",
                            membership.describe(0),
                            std::chrono::duration_cast<std::chrono::seconds>(start_timeout).count(),
                            store_ip, port, e.what()));
  }
}

}  // namespace ringfuse::launcher
