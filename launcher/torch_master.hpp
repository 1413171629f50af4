// MASTER_ADDR and MASTER_PORT under ringfuse-run: where torch.distributed's env:// rendezvous
// meets, so that `dist.init_process_group(...)` with no init_method works as under torchrun.
// env:// makes rank 0 serve a torch TCPStore on MASTER_PORT and the other ranks dial
// MASTER_ADDR:MASTER_PORT. The launcher's own store speaks another protocol, so these name
// rank 0's host and a port free there, never the launcher's store.
#pragma once

#include <cstdint>
#include <string>

namespace ringfuse::launcher {

struct TorchMaster {
  std::string host;
  std::uint16_t port = 0;
};

/// A TCP port that no socket on this host is bound to now (IPv4 or IPv6), drawn at random from
/// below the kernel's ephemeral range (net.ipv4.ip_local_port_range): no socket bound to port 0
/// and no outgoing connection takes such a port in the seconds before rank 0's TCPStore binds
/// it. Throws Error(system) when none of a few hundred tries is free.
std::uint16_t free_port_for_rank_zero();

}  // namespace ringfuse::launcher
