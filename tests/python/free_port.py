"""Ports for the servers tests start (torch's TCPStore, torchrun's rendezvous)."""

import random
import socket


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _binds(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(span=1):
    """A loopback TCP port free a moment ago, with span - 1 free ports after it, chosen at
    random below the kernel's ephemeral range: a port from bind(0) is an ephemeral one, which
    any process's bind(0) or outgoing connection may take once the probe closes it, before the
    test's server binds it (tests run side by side under CTest). Below that range only another
    test choosing the same port at random can."""
    high = _ephemeral_low() - span
    if high > 10000:
        for _ in range(200):
            port = random.randint(10000, high)
            if all(_binds(port + i) for i in range(span)):
                return port
    with socket.socket() as probe:  # a machine without such room
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
