#!/usr/bin/env python3
"""One DDP-sized bucket (25 MiB of f32 by default) all-reduced while a compute thread keeps
this rank's core busy, as backward does when DDP launches a bucket: the "ringfuse" process
group against gloo on the same ranks, alternating in rounds, so that the machine's load falls
on both alike. Per all-reduce: wall time from the last rank's call to this rank's completion
(the ranks' calls are lined up by a barrier first), and the CPU time of the process's
threads other than the caller and the compute thread (the backends' own threads), with their
context switches (voluntary + involuntary).

    ringfuse-run -np 2 /usr/bin/python3 perf/bucket_under_load.py
    ringfuse-run -np 4 /usr/bin/python3 perf/bucket_under_load.py --rounds 3 --iters 5
"""

import argparse
import os
import statistics
import threading
import time

import torch
import torch.distributed as dist

import ringfuse.distributed


def other_threads(exclude):
    """CPU seconds and context switches of this process's threads not in `exclude`."""
    cpu, switches = 0.0, 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) in exclude:
            continue
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                cpu += int(f.read().split()[0]) / 1e9
            with open(f"/proc/self/task/{tid}/status") as f:
                for line in f:
                    if "ctxt_switches" in line:  # voluntary_ and nonvoluntary_
                        switches += int(line.split()[-1])
        except OSError:
            continue
    return cpu, switches


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=8, help="all-reduces per backend a round")
    args = parser.parse_args()

    torch.set_num_threads(1)
    dist.init_process_group("ringfuse", init_method=ringfuse.distributed.init_method())
    rank, size = dist.get_rank(), dist.get_world_size()
    groups = {"ringfuse": dist.distributed_c10d._get_default_group(),
              "gloo": dist.new_group(list(range(size)), backend="gloo")}
    tensor = torch.ones(int(args.mib * (1 << 20)) // 4)

    stop = threading.Event()
    compute_tid = []

    def compute():  # backward's stand-in: matrix products, GIL released inside
        compute_tid.append(threading.get_native_id())
        a = torch.randn(256, 256)
        while not stop.is_set():
            a = torch.tanh(a @ a)

    worker = threading.Thread(target=compute, daemon=True)
    worker.start()
    while not compute_tid:
        time.sleep(0.001)
    exclude = {threading.get_native_id(), compute_tid[0]}

    results = {name: ([], [], []) for name in groups}
    for _ in range(args.rounds):
        for name, group in groups.items():
            for i in range(args.iters + 1):
                dist.barrier(group=groups["gloo"])
                cpu0, sw0 = other_threads(exclude)
                called = time.perf_counter()
                dist.all_reduce(tensor, group=group)
                done = time.perf_counter()
                cpu1, sw1 = other_threads(exclude)
                last_call = torch.tensor([called], dtype=torch.float64)
                dist.all_reduce(last_call, op=dist.ReduceOp.MAX, group=groups["gloo"])
                if i == 0:
                    continue  # warm-up
                wall, cpu, switches = results[name]
                wall.append(done - last_call.item())
                cpu.append(cpu1 - cpu0)
                switches.append(sw1 - sw0)
    stop.set()
    worker.join()

    summary = torch.tensor([[statistics.median(results[n][k]) for k in range(3)]
                            for n in groups], dtype=torch.float64)
    everyone = [torch.empty_like(summary) for _ in range(size)]
    dist.all_gather(everyone, summary, group=groups["gloo"])
    if rank == 0:
        load = os.getloadavg()
        print(f"# {args.mib:g} MiB all-reduce beside a busy compute thread, {size} ranks, "
              f"{args.rounds} rounds x {args.iters}; load average {load[0]:.2f}; medians per "
              f"rank (rank 0 / rank 1 / ...)")
        print(f"{'backend':<9} {'ms after last call':>24} {'comm threads CPU ms':>24} "
              f"{'switches':>18}")
        for j, name in enumerate(groups):
            cols = ["/".join(f"{everyone[r][j][k].item() * scale:.{digits}f}"
                             for r in range(size))
                    for k, scale, digits in ((0, 1e3, 1), (1, 1e3, 1), (2, 1, 0))]
            print(f"{name:<9} {cols[0]:>24} {cols[1]:>24} {cols[2]:>18}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
