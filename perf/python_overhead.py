#!/usr/bin/env python3
"""Python overhead per enqueued tensor (issue #20's target: <= 10 us): a step of N small
all-reduces enqueued through ringfuse.torch (allreduce_async_, as DistributedOptimizer does)
against the same step through the extension directly (ringfuse._core, C++ behind pybind11),
in the same run.

    ringfuse-run -np 2 /usr/bin/python3 perf/python_overhead.py --tensors 1000 --steps 20

Prints, on rank 0, the median enqueue time per tensor and step time for both. Measure on a
quiet machine: other processes on the cores show up directly in these microseconds.
"""

import argparse
import statistics
import time

import torch

import ringfuse.torch as hvd


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=1000)
    parser.add_argument("--elements", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    hvd.init()
    tensors = [torch.ones(args.elements) for _ in range(args.tensors)]
    names = ["grad.%d" % i for i in range(args.tensors)]
    session = hvd.mpi_ops._session

    def python_step():
        started = time.perf_counter()
        handles = [hvd.allreduce_async_(t, name=n) for t, n in zip(tensors, names)]
        enqueued = time.perf_counter()
        for h in handles:
            hvd.synchronize(h)
        return enqueued - started, time.perf_counter() - started

    def core_step():
        started = time.perf_counter()
        handles = [session.allreduce(n, t, "avg") for t, n in zip(tensors, names)]
        enqueued = time.perf_counter()
        for h in handles:
            h.wait()
        return enqueued - started, time.perf_counter() - started

    results = {}
    for label, step in (("ringfuse.torch", python_step), ("ringfuse._core", core_step)):
        step()  # warm-up: the response cache learns the names
        samples = [step() for _ in range(args.steps)]
        results[label] = (statistics.median(s[0] for s in samples) / args.tensors * 1e6,
                          statistics.median(s[1] for s in samples) * 1e3)
    if hvd.rank() == 0:
        for label, (per_tensor_us, step_ms) in results.items():
            print("%-15s enqueue %6.2f us/tensor, step %7.2f ms (%d tensors of %d floats, %d ranks)"
                  % (label, per_tensor_us, step_ms, args.tensors, args.elements, hvd.size()))
        ratio = results["ringfuse.torch"][1] / results["ringfuse._core"][1]
        print("step ratio ringfuse.torch / ringfuse._core: %.2f" % ratio)
    hvd.shutdown()


if __name__ == "__main__":
    main()
