#!/usr/bin/python3
"""An alpha-beta cost model of Ringfuse's all-reduces (perf/MODEL.md), standard library only.

    perf/alpha_beta_model.py fit [--small-max=BYTES] RUN.json ...  # alpha, beta from N=2 runs
    perf/alpha_beta_model.py validate                      # predicted vs measured, namespace runs
    perf/alpha_beta_model.py scale                         # ring/tree/rhd/hierarchical, 8..4096

A message of m bytes between two ranks costs alpha + m * beta. beta is the inverse of the rate
one rank's flow gets: min(K * flow cap, link / (flows sharing the host's link)), K the
connections per peer (RINGFUSE_SOCKETS_PER_PEER). Each algorithm is written as the steps
Ringfuse's code takes (comm/src/algo/): which message sizes, over which links, how many ranks of
a host cross the network at once. Reductions are folded into beta (they overlap the receive in
256 KiB pieces).
"""
import json
import math
import sys
from dataclasses import dataclass

LOCAL = 8  # ranks per host in the scale tables


@dataclass
class Net:
    """One kind of link: per-message latency (s) and rates (bytes/s)."""
    alpha: float
    link: float       # what a host can send, all flows together
    flow: float       # what one TCP connection gets (the cloud's per-flow cap); inf: none
    streams: int = 1  # connections per peer

    def beta(self, sharing: int = 1, message: float = math.inf) -> float:
        """Seconds per byte of a `message` from one rank when `sharing` ranks of a host cross
        at once. A message uses as many connections as tcp_mesh.cpp's StripeLayout cuts it into:
        one below 512 KiB, else one per 256 KiB up to K."""
        stripes = self.streams if message == math.inf else (
            1 if message < 512 * 1024 else min(self.streams, int(message // (256 * 1024))))
        return 1.0 / min(stripes * self.flow, self.link / sharing)


def ring(n: int, s: float, net: Net, shm: Net, local: int) -> float:
    """ring.cpp: reduce-scatter + all-gather, 2(n-1) steps of s/n; ranks in host order, so in
    each step one rank per host sends across (the last of its host to the next host's first)."""
    if n == 1:
        return 0.0
    m = s / n
    cross = n > local
    step = max(shm.alpha + m * shm.beta(), (net.alpha + m * net.beta(1, m)) if cross else 0.0)
    return 2 * (n - 1) * step


def tree(n: int, s: float, net: Net, shm: Net, local: int) -> float:
    """tree: binomial reduce to rank 0 then binomial broadcast, whole buffer each step; steps
    at distance >= local cross hosts, with at most one sender per host."""
    t = 0.0
    d = 1
    while d < n:
        link = net if d >= local else shm
        t += link.alpha + s * link.beta(1, s)
        d *= 2
    return 2 * t


def rhd(n: int, s: float, net: Net, shm: Net, local: int, near_first: bool = False) -> float:
    """rhd.cpp: fold the ranks beyond the largest power of two (a whole-buffer send and back),
    recursive halving from distance p/2 down to 1 (near_first: from 1 up, Gloo's order),
    doubling back. At distance >= local every rank of a host crosses at once: they share the
    link."""
    p = 1 << int(math.log2(n))
    t = 0.0
    if n > p:
        link = net if n > local else shm
        t += 2 * (link.alpha + s * link.beta(1, s))
    distances = []
    d = p // 2
    while d >= 1:
        distances.append(d)
        d //= 2
    if near_first:
        distances.reverse()
    m = s / 2
    for d in distances:
        crossing = d >= local
        link = net if crossing else shm
        sharing = min(local, n) if crossing else 1
        t += 2 * (link.alpha + m * link.beta(sharing, m))  # halving step and its doubling twin
        m /= 2
    return t


def choose(s: float, n: int) -> str:
    """comm/src/algo/choose.cpp, as it is."""
    if s <= 32 * 1024:
        return "tree"
    if s <= 1024 * 1024:
        return "rhd"
    return "ring"


FLAT = {"ring": ring, "tree": tree, "rhd": rhd}


def hierarchical(n: int, s: float, net: Net, shm: Net, local: int, cross_algo: str = "auto") -> float:
    """hierarchical.cpp: ring reduce-scatter on the host (shm), all-reduce of this rank's s/local
    among the hosts (every local rank's group at once: `local` flows share the link), ring
    all-gather on the host. The cross step's algorithm is choose.cpp's for s/local unless given."""
    hosts = n // local
    m = s / local
    on_host = 2 * (local - 1) * (shm.alpha + m * shm.beta())
    shared = Net(net.alpha, net.link / local, net.flow, net.streams)
    algo = choose(m, hosts) if cross_algo == "auto" else cross_algo
    return on_host + FLAT[algo](hosts, m, shared, shared, 1)


def auto(n: int, s: float, net: Net, shm: Net, local: int) -> tuple[str, float]:
    """What RINGFUSE_ALGO=auto runs: hierarchical from 64 KiB across equal hosts, else
    choose.cpp's flat algorithm."""
    if n > local and s >= 64 * 1024:
        m = s / local
        return f"hier+{choose(m, n // local)}", hierarchical(n, s, net, shm, local)
    a = choose(s, n)
    return a, FLAT[a](n, s, net, shm, local)


def busbw(n: int, s: float, t: float) -> float:
    return s / t * 2 * (n - 1) / n if t > 0 else float("inf")


# ---- parameters, fitted from this machine's measurements (perf/MODEL.md says how) ----------
# Shared memory between two ranks: `fit perf/results/run2/ar-n2-shm-{small,large}.json`.
SHM = Net(alpha=7.7e-6, link=4.21e9, flow=math.inf)
# TCP over loopback between two ranks: `fit perf/results/run2/ar-n2-tcp-{small,large}.json`.
LOOPBACK = Net(alpha=27.2e-6, link=0.988e9, flow=math.inf)
# The namespace hosts of perf/cloud_shaped.sh: link and per-flow cap set by tc; alpha from the
# 4-32 KiB N=2 runs across two namespace hosts (those sizes fit in htb's 64 KiB burst):
# `fit --small-max=32768 perf/results/cloud/n2-link800-flow100-small-s1.json`.
SHAPED_ALPHA = 16.0e-6


def shaped(streams: int, link_mbit: float = 800, flow_mbit: float = 100) -> Net:
    return Net(alpha=SHAPED_ALPHA, link=link_mbit * 1e6 / 8, flow=flow_mbit * 1e6 / 8,
               streams=streams)


def line(pts: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares y = a + b x."""
    k = len(pts)
    sx = sum(x for x, _ in pts)
    sy = sum(y for _, y in pts)
    sxx = sum(x * x for x, _ in pts)
    sxy = sum(x * y for x, y in pts)
    b = (k * sxy - sx * sy) / (k * sxx - sx * sx)
    return (sy - b * sx) / k, b


def fit(paths: list[str], small_max: int = 64 * 1024) -> tuple[float, float]:
    """alpha and beta of the N=2 ringfuse rows of JSON runs: every N=2 all-reduce is two
    messages in a row (tree: s and s; ring and rhd: s/2 and s/2), so alpha is half the
    intercept of time over size for sizes up to `small_max`, and beta the slope from 1 MiB up
    (ring: time = 2 alpha + s beta)."""
    pts = []
    for path in paths:
        with open(path) as f:
            run = json.load(f)
        assert run["nranks"] == 2, f"{path}: fit wants N=2 runs"
        pts += [(r["size"], r["time_us"] * 1e-6) for r in run["rows"]
                if r.get("ours") and r.get("time_us")]
    small = [p for p in pts if p[0] <= small_max]
    large = [p for p in pts if p[0] >= 1 << 20]
    alpha = line(small)[0] / 2 if len(small) >= 2 else float("nan")
    beta = line(large)[1] if len(large) >= 2 else float("nan")
    return alpha, beta


def scale_tables() -> None:
    sizes = [64 * 1024, 1 << 20, 16 << 20, 256 << 20]
    worlds = [8, 64, 512, 4096]
    for title, net in [("loopback TCP's alpha and beta per host link (1 connection)", LOOPBACK),
                       ("shaped: link 800 Mbit/s, flow cap 100 Mbit/s, 1 connection per peer",
                        shaped(1)),
                       ("shaped: link 800 Mbit/s, flow cap 100 Mbit/s, 8 connections per peer",
                        shaped(8))]:
        print(f"\n### {title}\n")
        print("| N | size | ring | tree | rhd | hier (ring across) | hier (rhd across) | auto runs | auto's time | best |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
        for n in worlds:
            for s in sizes:
                t = {a: FLAT[a](n, s, net, SHM, LOCAL) for a in FLAT}
                t["hier-ring"] = hierarchical(n, s, net, SHM, LOCAL, "ring") if n > LOCAL else math.inf
                t["hier-rhd"] = hierarchical(n, s, net, SHM, LOCAL, "rhd") if n > LOCAL else math.inf
                chosen, chosen_t = auto(n, s, net, SHM, LOCAL)
                best = min(t, key=t.get)
                cells = " | ".join(fmt_t(t[a]) for a in ["ring", "tree", "rhd", "hier-ring", "hier-rhd"])
                print(f"| {n} | {fmt_s(s)} | {cells} | {chosen} | {fmt_t(chosen_t)} | {best} |")


def crossover() -> None:
    """Below which cross-host slice (s/local) rhd beats ring across P hosts, with the fold."""
    print("\n### hierarchical cross step: ring vs rhd, slice m = s/8, loopback alpha/beta shared by 8\n")
    print("| hosts P | m where ring overtakes rhd | choose.cpp switches at |")
    print("| ---: | ---: | ---: |")
    shared = Net(LOOPBACK.alpha, LOOPBACK.link / LOCAL, LOOPBACK.flow)
    for p in [2, 3, 6, 8, 48, 64, 384, 512]:
        lo = None
        for e in range(10, 34):
            m = float(1 << e)
            if ring(p, m, shared, shared, 1) < rhd(p, m, shared, shared, 1):
                lo = m
                break
        print(f"| {p} | {fmt_s(lo) if lo else 'never (rhd always faster)'} | 1M |")


def fmt_s(s: float) -> str:
    for unit, div in [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]:
        if s >= div:
            return f"{s / div:g}{unit}"
    return f"{s:g}"


def fmt_t(t: float) -> str:
    if t == math.inf:
        return "-"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.1f} ms"
    return f"{t * 1e6:.0f} us"


def validate(paths: list[str]) -> None:
    """Predicted vs measured for the namespace runs of perf/cloud_shaped.sh, named
    n<N>[-<HOSTS>x<SLOTS>]-link<L>-flow<F>-s<K>.json; ranks of one host meet over TCP on its
    (unshaped) loopback."""
    print("| run | N | size | impl, algorithm | predicted busbw MB/s | measured | measured / predicted |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for path in paths:
        with open(path) as f:
            run = json.load(f)
        n = run["nranks"]
        name = path.rsplit("/", 1)[-1].removesuffix(".json")
        fields = dict((p[:4], p) for p in name.split("-"))
        k = int(name.rsplit("-s", 1)[1])
        local = int(name.split("-")[1].split("x")[1]) if "x" in name.split("-")[1] else 1
        link = float(fields["link"][4:])
        flow = float(fields["flow"][4:])
        for r in run["rows"]:
            if not r.get("time_us"):
                continue
            s = r["size"]
            ours = r.get("ours")
            net = shaped(k if ours else 1, link, flow)
            if ours and local > 1 and s >= 64 * 1024:
                label = f"ringfuse hier+{choose(s / local, n // local)}, K={k}"
                pred = hierarchical(n, s, net, LOOPBACK, local)
            elif ours:
                label = f"ringfuse {choose(s, n)}, K={k}"
                pred = FLAT[choose(s, n)](n, s, net, LOOPBACK, local)
            elif r["algo"] == "ring_chunked":
                label, pred = "gloo ring_chunked", ring(n, s, net, LOOPBACK, local)
            elif r["algo"] == "halving_doubling":
                label = "gloo halving_doubling"
                pred = rhd(n, s, net, LOOPBACK, local, near_first=True)
            else:
                continue
            meas = busbw(n, s, r["time_us"] * 1e-6)
            p = busbw(n, s, pred)
            print(f"| {name} | {n} | {fmt_s(s)} | {label} | {p / 1e6:.1f} | {meas / 1e6:.1f} | "
                  f"{meas / p:.2f} |")


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "fit":
        args = sys.argv[2:]
        small_max = 64 * 1024
        if args and args[0].startswith("--small-max="):
            small_max = int(args.pop(0).split("=", 1)[1])
        a, b = fit(args, small_max)
        print(f"alpha = {a * 1e6:.1f} us, beta = 1/({1 / b / 1e9:.3f} GB/s)")
    elif len(sys.argv) >= 2 and sys.argv[1] == "validate":
        validate(sys.argv[2:])
    elif len(sys.argv) >= 2 and sys.argv[1] == "scale":
        scale_tables()
        crossover()
    else:
        print(__doc__)


if __name__ == "__main__":
    main()
