#!/usr/bin/env python3
"""Latency of a small all-reduce through torch.distributed on the "ringfuse" backend against
our C++ blocking all-reduce, in the same run, with the time in between itemised (issue #21's
target: dist.all_reduce of 4 KiB <= 2x the C++ blocking latency).

    ringfuse-run -np 2 /usr/bin/python3 perf/c10d_latency.py --bytes 4096 --iters 2000

Every rank runs the same rows in the same order, in --rounds interleaved rounds (each row takes
its turn in every round, so that the machine's swings fall on all rows alike); rank 0 prints,
per row, the median and p90 wall time per call over all rounds and the process CPU time per
call (all threads: the caller, the group's worker, the engine thread), and the target's ratio
within each round. Rows:

  C++ blocking        Context::allreduce through ringfuse._core (GIL released; pybind11 only)
  C++ engine          Engine::allreduce + flush + Work::wait through ringfuse._core
  pg.allreduce        the ringfuse process group called directly, Work.wait(): no torch wrapper
  dist.all_reduce     torch's Python wrapper on top: what scripts call
    enqueue           dist.all_reduce(async_op=True) until it returns
    wait              then work.wait()
  future.wait()       dist.all_reduce(async_op=True).get_future().wait(): the collective run by
                      the group's worker, as DDP's communication hooks have it (nobody waits on
                      the Work itself)
  torch no-op         dist.all_reduce on a group this rank is not in: torch's wrapper returns
                      before any backend
  no-op group         dist.all_reduce on a group of every rank whose process group does nothing
                      (a ProcessGroup subclass defined here, returning a finished Work): torch's
                      wrapper, its dispatcher and one call into a backend, the floor of any
                      backend's dist.all_reduce
  ringfuse of one     dist.all_reduce on a "ringfuse" group of this rank alone: the floor plus
                      everything our process group does per call, with no peer to talk to
  gloo                dist.all_reduce on a gloo group of the same ranks, for reference

The machine's load average is printed with the table: on a loaded machine every row that
sleeps and wakes threads swings, so compare rows of one run, not runs.
"""

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist

import ringfuse.distributed
import ringfuse.torch as hvd


class Row:
    """One row's per-call wall times (over every round) and process CPU time."""

    def __init__(self):
        self.samples = []
        self.cpu = 0.0
        self.round_medians = []

    def measure(self, call, iters, warmup):
        for _ in range(warmup):
            call()
        dist.barrier()
        samples = []
        cpu_started = time.process_time()
        for _ in range(iters):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
        self.cpu += time.process_time() - cpu_started
        self.samples += samples
        self.round_medians.append(statistics.median(samples))

    def summary(self, with_cpu=True):
        ordered = sorted(self.samples)
        cpu = self.cpu / len(ordered) * 1e6 if with_cpu else float("nan")
        return (statistics.median(ordered) * 1e6, ordered[int(len(ordered) * 0.9)] * 1e6, cpu)


class NoOpProcessGroup(dist.ProcessGroup):
    """A backend whose all-reduce does nothing and returns a Work that is already finished."""

    def __init__(self, rank, size):
        super().__init__(rank, size)
        done = torch.futures.Future()
        done.set_result(None)
        self._done = torch._C._distributed_c10d._create_work_from_future(done)

    def allreduce(self, tensors, opts=None):
        return self._done

    def getBackendName(self):
        return "noop"


def engine_allreduce(session, tensor):
    handle = session.allreduce("latency", tensor, "sum")
    session.flush()  # as the process group does: no quiet timer for a lone collective
    handle.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=4096)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5,
                        help="the rows take turns this many times (iters and warmup are split)")
    args = parser.parse_args()

    hvd.init()
    session = hvd.mpi_ops._session
    dist.init_process_group("ringfuse", init_method=ringfuse.distributed.init_method())
    rank, size = dist.get_rank(), dist.get_world_size()
    pg = dist.distributed_c10d._get_default_group()
    gloo = dist.new_group(list(range(size)), backend="gloo")
    # A group without this rank (a world of one has none): torch's wrapper stops at once.
    outside = dist.new_group([(rank + 1) % size]) if size > 1 else None
    if "NOOP" not in dist.Backend._plugins:
        dist.Backend.register_backend(
            "noop", lambda store, group_rank, group_size, timeout: NoOpProcessGroup(group_rank,
                                                                                  group_size))
    noop = dist.new_group(list(range(size)), backend="noop")
    # new_group is collective over every rank, also for the groups a rank is not in.
    alone = [dist.new_group([r], backend="ringfuse") for r in range(size)][rank]
    tensor = torch.ones(args.bytes // 4, dtype=torch.float32)

    pending = []

    def enqueue():
        pending.append(dist.all_reduce(tensor, async_op=True))

    def wait():
        pending.pop().wait()

    rows = [
        ("C++ blocking", lambda: session.context_allreduce(tensor, "sum")),
        ("C++ engine", lambda: engine_allreduce(session, tensor)),
        ("pg.allreduce", lambda: pg.allreduce([tensor]).wait()),
        ("dist.all_reduce", lambda: dist.all_reduce(tensor)),
        ("future.wait()",
         lambda: dist.all_reduce(tensor, async_op=True).get_future().wait()),
    ]
    if outside is not None:
        rows.append(("torch no-op", lambda: dist.all_reduce(tensor, group=outside)))
    rows += [
        ("no-op group", lambda: dist.all_reduce(tensor, group=noop)),
        ("ringfuse of one", lambda: dist.all_reduce(tensor, group=alone)),
        ("gloo", lambda: dist.all_reduce(tensor, group=gloo)),
    ]
    # Every row takes its turn in every round, so that a change of the machine's speed during
    # the run (this VM's swings within seconds) falls on all rows alike.
    results = {name: Row() for name, _ in rows}
    enqueue_row, wait_row = Row(), Row()
    per_round, warmup = max(1, args.iters // args.rounds), max(20, args.warmup // args.rounds)
    for _ in range(args.rounds):
        for name, call in rows:
            results[name].measure(call, per_round, warmup)
        # enqueue and wait of one call, timed apart.
        enqueue_s, wait_s = [], []
        for i in range(warmup + per_round):
            started = time.perf_counter()
            enqueue()
            enqueued = time.perf_counter()
            wait()
            if i >= warmup:
                enqueue_s.append(enqueued - started)
                wait_s.append(time.perf_counter() - enqueued)
        enqueue_row.samples += enqueue_s
        wait_row.samples += wait_s
    table = {name: row.summary() for name, row in results.items()}
    table["  enqueue"] = enqueue_row.summary(with_cpu=False)
    table["  wait"] = wait_row.summary(with_cpu=False)
    order = ["C++ blocking", "C++ engine", "pg.allreduce", "dist.all_reduce", "  enqueue",
             "  wait"] + [name for name, _ in rows[4:]]
    round_ratios = [d / c for d, c in zip(results["dist.all_reduce"].round_medians,
                                           results["C++ blocking"].round_medians)]

    if rank == 0:
        load = os.getloadavg()
        print(f"# all-reduce of {args.bytes} bytes (f32[{tensor.numel()}] sum), {size} ranks, "
              f"{per_round * args.rounds} calls per row in {args.rounds} interleaved rounds; "
              f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"{'row':<18} {'median_us':>10} {'p90_us':>10} {'cpu_us/call':>12}")
        for name in order:
            median, p90, cpu = table[name]
            print(f"{name:<18} {median:>10.2f} {p90:>10.2f} {cpu:>12.2f}")
        blocking = table["C++ blocking"][0]
        print(f"dist.all_reduce / C++ blocking: {table['dist.all_reduce'][0] / blocking:.2f}x "
              f"(target <= 2x); per round: {', '.join(f'{r:.2f}' for r in round_ratios)}; "
              f"the no-op group alone: {table['no-op group'][0] / blocking:.2f}x")
    dist.destroy_process_group()
    hvd.shutdown()


if __name__ == "__main__":
    main()
