#!/usr/bin/env python3
"""Python overhead per enqueued tensor (issue #20's target: <= 10 us, and a fused step of 1,000
small tensors from Python within 1.5x the same step from C++): a step of N small all-reduces
enqueued through ringfuse.torch (allreduce_async_, as DistributedOptimizer does), through the
extension directly (ringfuse._core, C++ behind pybind11), and from C++ (the extension's
step_from_cpp: Engine::allreduce by name for each tensor, then a wait for each, no Python in
between), on the same engine and tensors, the three alternating step by step in one run.

    ringfuse-run -np 2 /usr/bin/python3 perf/python_overhead.py --tensors 1000 --steps 20

Prints, on rank 0, the median enqueue time per tensor and step time of each. Measure on a
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

    def cpp_step():
        return session.step_from_cpp(names, tensors, "avg")

    steps = (("ringfuse.torch", python_step), ("ringfuse._core", core_step), ("C++", cpp_step))
    samples = {label: [] for label, _ in steps}
    for label, step in steps:
        step()  # warm-up: the response cache learns the names
    for _ in range(args.steps):
        for label, step in steps:  # alternating, so a disturbance hits every row alike
            samples[label].append(step())
    if hvd.rank() == 0:
        results = {}
        for label, values in samples.items():
            results[label] = (statistics.median(s[0] for s in values) / args.tensors * 1e6,
                              statistics.median(s[1] for s in values) * 1e3)
            per_tensor_us, step_ms = results[label]
            print("%-15s enqueue %6.2f us/tensor, step %7.2f ms (%d tensors of %d floats, %d ranks)"
                  % (label, per_tensor_us, step_ms, args.tensors, args.elements, hvd.size()))
        python, core, cpp = (results[label][1] for label, _ in steps)
        print("step ratio ringfuse.torch / ringfuse._core: %.2f" % (python / core))
        print("step ratio ringfuse.torch / C++: %.2f (target <= 1.5)" % (python / cpp))
        pairs = [p[1] / c[1] for p, c in zip(samples["ringfuse.torch"], samples["C++"])]
        print("median of the per-step ratios ringfuse.torch / C++: %.2f" % statistics.median(pairs))
    hvd.shutdown()


if __name__ == "__main__":
    main()
