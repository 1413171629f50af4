#!/usr/bin/env python3
"""DistributedDataParallel on the "ringfuse" backend against DDP on Gloo, in the same run:
step time and time spent in communication, for a small CNN on Fashion-MNIST and resnet18 on
synthetic data (issue #21's targets: step time never worse than Gloo's, communication time
<= 0.5x Gloo's).

    ringfuse-run -np 2 /usr/bin/python3 perf/ddp_vs_gloo.py
    ringfuse-run -np 4 /usr/bin/python3 perf/ddp_vs_gloo.py --models cnn --steps 30

The world group is on ringfuse and a group of the same ranks on gloo; each model is wrapped in
DDP twice (same initial weights), once over each group, and the two take turns, so that load
from elsewhere falls on both alike: step by step (`--alternate step`, the default), or in
rounds of `--steps` steps each (`--alternate round`, what this script did before the fifteenth
session: on this project's VM the machine's speed changes within a round, which moved the step
ratio of one run by up to 20 %). Communication is timed by a comm hook
that does what DDP's default does (divide the bucket by the world size, all-reduce it): per
bucket, from the hook's call to its future's completion, summed over the step ("comm_ms"), and
the span from the first bucket's launch to the last completion ("span_ms"), and, per bucket
from the moment the last rank launched it to its completion here ("ready_ms", summed): comm_ms
without the wait for slower ranks, which on shared cores is most of it. Rank 0 prints its
medians over the timed steps, every rank's comm_ms and ready_ms, and the load average;
`--per-bucket` adds every rank's median ready_ms of each bucket, in launch order.
`--gloo-only` puts the world group on Gloo too (its rows are named "gloo-world"): Gloo's times
with no ringfuse group in the process, whose idle threads could change them.
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import ringfuse.distributed

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                                "python"))
from ddp_fashion_mnist import read_idx  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
FASHION_LABELS = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"


def cnn_workload(batch_size, rank):
    """The CNN of examples/python/ddp_fashion_mnist.py on this rank's shard of Fashion-MNIST."""
    def model():
        return nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
    if os.path.exists(FASHION_MNIST):
        images = ((read_idx(FASHION_MNIST)[:6000].float() / 255 - 0.286) / 0.353).unsqueeze(1)
        labels = read_idx(FASHION_LABELS)[:6000].long()
    else:  # same shapes, so the timing is the same
        images, labels = torch.randn(6000, 1, 28, 28), torch.randint(0, 10, (6000,))

    def batch(step):
        start = ((step * dist.get_world_size() + rank) * batch_size) % (len(images) - batch_size)
        return images[start:start + batch_size], labels[start:start + batch_size]
    return model, batch


def resnet18_workload(batch_size, image_size):
    import torchvision.models
    data = torch.randn(batch_size, 3, image_size, image_size)
    target = torch.randint(0, 1000, (batch_size,))
    return torchvision.models.resnet18, lambda step: (data, target)


def timed_allreduce(state, bucket):
    """The comm hook (torch wants a function): `state` is the TimedAllreduce."""
    return state.launch(bucket)


class TimedAllreduce:
    """DDP's default communication (bucket / world size, then all-reduce), timed per bucket."""

    def __init__(self, group):
        self.group = group
        self.size = dist.get_world_size(group)
        self.ready_per_bucket = []  # per step (warm-up first): ready seconds of each bucket
        self.reset()

    def reset(self):
        self.launched, self.finished, self.durations = [], [], []

    def launch(self, bucket):
        started = time.perf_counter()
        self.launched.append(started)
        tensor = bucket.buffer().div_(self.size)
        future = self.group.allreduce([tensor]).get_future()

        def done(fut):
            now = time.perf_counter()
            self.finished.append(now)
            self.durations.append(now - started)
            return fut.value()[0]
        return future.then(done)


def after_last_launch(hook, gloo):
    """Per bucket, from the moment the last rank launched it to its completion here, summed:
    the communication itself, without the wait for slower ranks that comm_ms includes.
    Launch times are CLOCK_MONOTONIC (perf_counter), one clock for every rank of a host;
    they are gathered over gloo, outside the timed step."""
    mine = torch.tensor(hook.launched, dtype=torch.float64)
    everyone = [torch.empty_like(mine) for _ in range(dist.get_world_size(gloo))]
    dist.all_gather(everyone, mine, group=gloo)
    last = torch.stack(everyone).max(dim=0).values.tolist()
    per_bucket = [max(0.0, done - launched) for done, launched in zip(hook.finished, last)]
    hook.ready_per_bucket.append(per_bucket)
    return sum(per_bucket)


def run(name, model, hook, batch, steps, optimizer, gloo, first_step=0):
    times, comm, span, ready = [], [], [], []
    for step in range(first_step, first_step + steps):
        hook.reset()
        started = time.perf_counter()
        data, target = batch(step)
        loss = F.cross_entropy(model(data), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
        comm.append(sum(hook.durations))
        span.append(max(hook.finished) - min(hook.launched) if hook.finished else 0.0)
        ready.append(after_last_launch(hook, gloo))
    return times, comm, span, ready


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet18")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--alternate", choices=("step", "round"), default="step",
                        help="take turns between the backends every step or every round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cnn-batch", type=int, default=64)
    parser.add_argument("--resnet-batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--per-bucket", action="store_true",
                        help="also print each bucket's median ready_ms, every rank")
    parser.add_argument("--gloo-only", action="store_true",
                        help="the world group on gloo too: Gloo against itself, no ringfuse group")
    args = parser.parse_args()

    torch.set_num_threads(1)  # ranks share the cores: one compute thread each, on both sides
    ours = "gloo-world" if args.gloo_only else "ringfuse"
    dist.init_process_group("gloo" if args.gloo_only else "ringfuse",
                            init_method=ringfuse.distributed.init_method())
    rank, size = dist.get_rank(), dist.get_world_size()
    groups = {ours: dist.distributed_c10d._get_default_group(),
              "gloo": dist.new_group(list(range(size)), backend="gloo")}

    rows = []
    for model_name in args.models.split(","):
        if model_name == "cnn":
            make, batch = cnn_workload(args.cnn_batch, rank)
        elif model_name == "resnet18":
            make, batch = resnet18_workload(args.resnet_batch, args.image_size)
        else:
            raise SystemExit(f"unknown model {model_name!r}: cnn or resnet18")
        runs = {}
        for backend, group in groups.items():
            torch.manual_seed(0)
            model = DistributedDataParallel(make(), process_group=group)
            hook = TimedAllreduce(group)
            model.register_comm_hook(hook, timed_allreduce)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            run(backend, model, hook, batch, args.warmup, optimizer, groups["gloo"])
            runs[backend] = (model, hook, optimizer, [], [], [], [])
        turns = [(first, args.steps) for first in range(0, args.rounds * args.steps, args.steps)]
        if args.alternate == "step":
            turns = [(step, 1) for step in range(args.rounds * args.steps)]
        for first_step, steps in turns:
            for backend, (model, hook, optimizer, times, comm, span, ready) in runs.items():
                dist.barrier()
                t, c, s, r = run(backend, model, hook, batch, steps, optimizer,
                                 groups["gloo"], first_step)
                times += t
                comm += c
                span += s
                ready += r
        for backend, (model, hook, optimizer, times, comm, span, ready) in runs.items():
            buckets = len(hook.durations)
            if args.per_bucket:
                # DDP may rebuild its buckets after the first step: only steps like the last.
                timed = [step for step in hook.ready_per_bucket[args.warmup:]
                         if len(step) == buckets]
                medians = [statistics.median(step[i] for step in timed) * 1e3
                           for i in range(buckets)]
                print(f"rank {rank} {model_name} {backend} ready_ms per bucket: "
                      + " / ".join(f"{m:.1f}" for m in medians), flush=True)
            rows.append((model_name, backend, statistics.median(times) * 1e3,
                         statistics.median(comm) * 1e3, statistics.median(span) * 1e3, buckets,
                         statistics.median(ready) * 1e3))

    # Every rank's medians: rank 0's comm_ms depends on where it launches among the ranks
    # (the first to launch waits for the last), the mean over ranks does not.
    mine = torch.tensor([[row[3], row[6]] for row in rows], dtype=torch.float64)
    per_rank = [torch.empty_like(mine) for _ in range(size)]
    dist.all_gather(per_rank, mine, group=groups["gloo"])
    if rank == 0:
        load = os.getloadavg()
        print(f"# DDP, {size} ranks, {args.rounds} rounds x {args.steps} steps per backend, "
              f"taking turns every {args.alternate}; "
              f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"{'model':<9} {'backend':<10} {'step_ms':>9} {'comm_ms':>9} {'span_ms':>9} "
              f"{'buckets':>8} {'ready_ms':>9}")
        for model_name, backend, step, comm, span, buckets, ready in rows:
            print(f"{model_name:<9} {backend:<10} {step:>9.2f} {comm:>9.2f} {span:>9.2f} "
                  f"{buckets:>8} {ready:>9.2f}")
        mean_comm = {}
        for i, (model_name, backend, *_) in enumerate(rows):
            comms = [r[i][0].item() for r in per_rank]
            readies = [r[i][1].item() for r in per_rank]
            mean_comm[(model_name, backend)] = statistics.mean(comms)
            print(f"{model_name:<9} {backend:<10} per rank: comm_ms "
                  f"{' / '.join(f'{c:.1f}' for c in comms)}, ready_ms "
                  f"{' / '.join(f'{r:.1f}' for r in readies)}")
        by = {(m, b): (s, c, r) for m, b, s, c, _, _, r in rows}
        for model_name in args.models.split(","):
            first, gloo = by[(model_name, ours)], by[(model_name, "gloo")]
            mean_ratio = mean_comm[(model_name, ours)] / mean_comm[(model_name, "gloo")]
            print(f"{model_name}: step {ours}/gloo {first[0] / gloo[0]:.2f} (target <= 1), "
                  f"comm {ours}/gloo {first[1] / gloo[1]:.2f} (target <= 0.5; mean over "
                  f"ranks {mean_ratio:.2f}), after the last launch {first[2] / gloo[2]:.2f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
