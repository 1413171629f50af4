// Ports for the servers tests start (stores, DNS servers, health endpoints).
#pragma once

#include <cstdint>

namespace ringfuse::testing {

/// A loopback port that was free a moment ago for `type` (SOCK_STREAM or SOCK_DGRAM), with
/// `span` - 1 free ports after it, chosen at random below the kernel's ephemeral range
/// (net.ipv4.ip_local_port_range). A port from bind(0) is an ephemeral one: once the probe
/// closes it, any process's bind(0) or outgoing connection may get it before the test's
/// server binds it (tests run side by side under CTest). Below that range only another
/// test choosing the same port at random can take it.
std::uint16_t free_port(int type, int span = 1);

/// Whether a socket of `type` can bind 127.0.0.1:`port` now.
bool port_binds(int type, int port);

}  // namespace ringfuse::testing
