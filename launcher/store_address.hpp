// Which address of this host the ranks on another host are told to reach the store at
// (RINGFUSE_STORE_ADDR). This host's name is no answer: on Debian and many images it resolves
// to 127.0.1.1 through /etc/hosts, and every remote rank would dial its own loopback. Like
// mpirun and torchrun's agents, we ask the kernel which of our addresses routes to each host.
#pragma once

#include <chrono>
#include <string>

namespace ringfuse::launcher {

/// The address of this host that `host` reaches it at, for ranks on `host`: `store_addr`
/// (--store-addr) when given; 127.0.0.1 for this host and loopback hosts; else the source
/// address of the route to `host` (resolved through DNS within `lookup_timeout` when it is a
/// name), or this host's name when that resolves to a non-loopback address. Throws
/// Error(invalid_argument) saying what to do (--store-addr) when only a loopback address is
/// known for a remote host.
std::string store_address_for(const std::string& host, const std::string& store_addr,
                              std::chrono::milliseconds lookup_timeout);

}  // namespace ringfuse::launcher
