#!/usr/bin/env python3
"""Where the CPU of a data-parallel training step goes, per thread: the training step of
examples/python/synthetic_benchmark.py (same runners, same arguments, `--ddp` for
DistributedDataParallel over Gloo), with each thread's CPU time, voluntary and involuntary
context switches per step, and the wall time of the step's phases. On a shared machine
wall-clock img/s says more about the neighbours than about the code; CPU time per step does
not (much):

    ringfuse-run -np 2 -- /usr/bin/python3 perf/step_cpu.py --model resnet18 --batch-size 16 \\
        --num-warmup-batches 2 --num-batches-per-iter 2 --num-iters 3 [--ddp]

With ringfuse.torch, rank 0 also prints the engine's negotiation cycles, backend calls and
fused tensors per step. `sync` is optimizer.synchronize() (ringfuse.torch; DDP waits inside backward), `tail` the
time from the first layer's gradient (the last of backward) to the gradients being averaged.
"""

import os
import sys
import time

import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                                "python"))
from synthetic_benchmark import parse_args, set_up  # noqa: E402


def thread_times():
    """{tid: (name, cpu seconds, voluntary, involuntary switches)} of this process."""
    threads = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/schedstat" % tid) as f:
                cpu_ns = int(f.read().split()[0])
            with open("/proc/self/task/%s/status" % tid) as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines()
                              if ":\t" in line)
        except OSError:
            continue  # the thread ended
        threads[int(tid)] = (status["Name"].strip(), cpu_ns / 1e9,
                             int(status["voluntary_ctxt_switches"]),
                             int(status["nonvoluntary_ctxt_switches"]))
    return threads


def main():
    args = parse_args()
    model, runner, threads, data, target = set_up(args)

    phases = dict.fromkeys(("forward", "backward", "sync", "step", "tail"), 0.0)
    last_gradient = [0.0]
    first_parameter = next(model.parameters())  # its gradient is the last of backward
    first_parameter.register_hook(lambda g: last_gradient.__setitem__(0, time.perf_counter()))

    def step():
        runner.optimizer.zero_grad()
        t0 = time.perf_counter()
        loss = F.cross_entropy(runner.model(data), target)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if not args.ddp:
            runner.optimizer.synchronize()
        t3 = time.perf_counter()
        if args.ddp:
            runner.optimizer.step()
        else:
            with runner.optimizer.skip_synchronize():
                runner.optimizer.step()
        t4 = time.perf_counter()
        for name, seconds in (("forward", t1 - t0), ("backward", t2 - t1), ("sync", t3 - t2),
                              ("step", t4 - t3), ("tail", t3 - last_gradient[0])):
            phases[name] += seconds

    for _ in range(args.num_warmup_batches):
        step()
    phases.update(dict.fromkeys(phases, 0.0))
    steps = args.num_iters * args.num_batches_per_iter
    engine_stats = (lambda: {}) if args.ddp else runner.hvd.mpi_ops._require_session().stats
    stats_before = engine_stats()
    before, started = thread_times(), time.perf_counter()
    for _ in range(steps):
        step()
    after, wall = thread_times(), time.perf_counter() - started
    stats_after = engine_stats()

    main_tid = os.getpid()  # the main thread's id is the process id
    lines = []
    total = 0.0
    for tid, (name, cpu, voluntary, involuntary) in sorted(after.items()):
        _, cpu0, voluntary0, involuntary0 = before.get(tid, (name, 0.0, 0, 0))
        total += cpu - cpu0
        if cpu - cpu0 >= 0.001 * steps:
            lines.append("  %-6s tid %-7d %-15s %7.1f ms  %6.1f vol  %6.1f invol"
                         % ("main" if tid == main_tid else "", tid, name,
                            1000 * (cpu - cpu0) / steps, (voluntary - voluntary0) / steps,
                            (involuntary - involuntary0) / steps))
    print("rank %d, %s, %d torch threads: wall %.0f ms, CPU %.0f ms per step; phases (ms): %s"
          "\n  per thread and step:\n%s"
          % (runner.rank, "DDP over Gloo" if args.ddp else "ringfuse.torch", threads,
             1000 * wall / steps, 1000 * total / steps,
             " ".join("%s %.1f" % (k, 1000 * v / steps) for k, v in phases.items()),
             "\n".join(lines)), flush=True)
    if stats_after:
        print("rank %d, engine per step: %s" % (runner.rank, " ".join(
            "%s %.1f" % (k, (stats_after[k] - stats_before[k]) / steps)
            for k in ("cycles", "collectives", "fused_tensors"))), flush=True)
    runner.close()


if __name__ == "__main__":
    main()
