#!/usr/bin/env python3
"""Synthetic data-parallel training benchmark (in the style of Horovod's): a torchvision model on
random images, img/s per rank and in total.

    ringfuse-run -np 2 /usr/bin/python3 examples/python/synthetic_benchmark.py --model resnet18
    ringfuse-run -np 2 /usr/bin/python3 examples/python/synthetic_benchmark.py --model resnet18 --ddp
    ringfuse-run -np 2 /usr/bin/python3 examples/python/synthetic_benchmark.py --model resnet18 --compare

The second line runs the same training on torch's DistributedDataParallel over Gloo instead of
ringfuse.torch, for a side-by-side comparison. The third trains both in one run, on two copies of
the model with the same initial weights, alternating round by round (which one goes first
alternates too), so that whatever else the machine does falls on both alike; it prints each
round's img/s of both and the median of their per-round ratios. Models come from Debian's
python3-torchvision with random weights (nothing is downloaded).
"""

import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision.models


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="a torchvision.models name")
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-warmup-batches", type=int, default=2)
    parser.add_argument("--num-batches-per-iter", type=int, default=5)
    parser.add_argument("--num-iters", type=int, default=5)
    parser.add_argument("--fp16-allreduce", action="store_true",
                        help="ringfuse.torch: gradients travel as float16")
    parser.add_argument("--ddp", action="store_true",
                        help="torch DistributedDataParallel over Gloo instead of ringfuse.torch")
    parser.add_argument("--compare", action="store_true",
                        help="both ringfuse.torch and DDP over Gloo, alternating round by round")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per rank (0: cores / local ranks)")
    return parser.parse_args()


class Ringfuse:
    """ringfuse.torch's Horovod API."""

    def __init__(self, model, args):
        import ringfuse.torch as hvd
        self.hvd = hvd
        hvd.init()
        self.rank, self.size, self.local_size = hvd.rank(), hvd.size(), hvd.local_size()
        compression = hvd.Compression.fp16 if args.fp16_allreduce else hvd.Compression.none
        self.model = model
        self.optimizer = hvd.DistributedOptimizer(
            torch.optim.SGD(model.parameters(), lr=0.01),
            named_parameters=model.named_parameters(), compression=compression)
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(self.optimizer, root_rank=0)

    def mean(self, value, name):
        return self.hvd.allreduce(torch.tensor(value), name=name).item()

    def close(self):
        self.hvd.shutdown()


class Ddp:
    """torch.distributed + DistributedDataParallel over Gloo, for comparison (env://, from the
    launcher's MASTER_ADDR and MASTER_PORT)."""

    def __init__(self, model, args):
        import torch.distributed as dist
        self.dist = dist
        self.rank = int(os.environ.get("RANK", 0))
        self.size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_size = int(os.environ.get("LOCAL_WORLD_SIZE", self.size))
        dist.init_process_group("gloo")
        self.model = torch.nn.parallel.DistributedDataParallel(model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)

    def mean(self, value, name):
        t = torch.tensor(value)
        self.dist.all_reduce(t)
        # Kept until close(): torch 1.13's Gloo worker drops its reference after wait() returns,
        # and a tensor whose last reference it holds needs the GIL to die, which the main
        # thread holds while it tears the group down at exit (a deadlock seen once here).
        self._reduced.append(t)
        return (t / self.size).item()

    _reduced = []

    def close(self):
        self.dist.barrier()
        self.dist.destroy_process_group()


def set_up(args):
    """The model, its runner (ringfuse.torch or DDP), the torch threads per rank and one
    synthetic batch: what this benchmark and perf/step_cpu.py both train on."""
    model, runners, threads, data, target = set_up_runners(args, [Ddp if args.ddp else Ringfuse])
    return model, runners[0], threads, data, target


def set_up_runners(args, kinds):
    """One runner of each kind, each on its own copy of the same model (same seed, so the same
    initial weights), copied before any runner wraps it."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(num_classes=1000)
    copies = [model] + [copy.deepcopy(model) for _ in kinds[1:]]
    runners = [kind(m, args) for kind, m in zip(kinds, copies)]
    threads = args.threads or max(1, (os.cpu_count() or 1) // runners[0].local_size)
    torch.set_num_threads(threads)
    data = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    target = torch.randint(0, 1000, (args.batch_size,))
    return model, runners, threads, data, target


def training_step(runner, data, target):
    def step():
        runner.optimizer.zero_grad()
        F.cross_entropy(runner.model(data), target).backward()
        runner.optimizer.step()
    return step


def timed_rate(step, args):
    """img/s per rank over one round of --num-batches-per-iter steps."""
    started = time.perf_counter()
    for _ in range(args.num_batches_per_iter):
        step()
    return args.batch_size * args.num_batches_per_iter / (time.perf_counter() - started)


def mean_and_deviation(rates):
    mean = sum(rates) / len(rates)
    return mean, 1.96 * (sum((r - mean) ** 2 for r in rates) / len(rates)) ** 0.5


def rank_zero_log(runner):
    """print(), flushed, on the runner's rank 0 only."""
    def log(text):
        if runner.rank == 0:
            print(text, flush=True)
    return log


def describe(runner, args):
    if isinstance(runner, Ddp):
        return "DDP over Gloo"
    return "ringfuse.torch" + (" (fp16 allreduce)" if args.fp16_allreduce else "")


def main():
    args = parse_args()
    if args.compare:
        return compare(args)
    _, runner, threads, data, target = set_up(args)
    step = training_step(runner, data, target)
    log = rank_zero_log(runner)
    log("Model: %s, batch size %d per rank, %d ranks, %s, %d threads per rank"
        % (args.model, args.batch_size, runner.size, describe(runner, args), threads))
    for _ in range(args.num_warmup_batches):
        step()
    rates = []
    for i in range(args.num_iters):
        rate = timed_rate(step, args)
        log("Iter #%d: %.1f img/sec per rank" % (i, rate))
        rates.append(rate)
    mean, deviation = mean_and_deviation(rates)
    mean = runner.mean(mean, "benchmark.rate")
    log("Img/sec per rank: %.1f +-%.1f" % (mean, deviation))
    log("Total img/sec on %d rank(s): %.1f +-%.1f"
        % (runner.size, runner.size * mean, runner.size * deviation))
    runner.close()


def compare(args):
    _, runners, threads, data, target = set_up_runners(args, [Ringfuse, Ddp])
    ringfuse, ddp = runners
    steps = [training_step(runner, data, target) for runner in runners]
    names = [describe(runner, args) for runner in runners]
    log = rank_zero_log(ringfuse)
    log("Model: %s, batch size %d per rank, %d ranks, %s and %s alternating, %d threads per rank"
        % (args.model, args.batch_size, ringfuse.size, names[0], names[1], threads))
    for step in steps:
        for _ in range(args.num_warmup_batches):
            step()
    rates = [[], []]
    for i in range(args.num_iters):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            rates[which].append(timed_rate(steps[which], args))
    # Every rank's rates, averaged over the ranks round by round (over ringfuse.torch).
    rates = ringfuse.hvd.allreduce(torch.tensor(rates, dtype=torch.float64),
                                   name="benchmark.rates").tolist()
    ratios = [a / b for a, b in zip(*rates)]
    for i, (a, b, ratio) in enumerate(zip(*rates, ratios)):
        log("Round #%d: %s %.1f, %s %.1f img/sec per rank (%s first), ratio %.3f"
            % (i, names[0], a, names[1], b, names[0] if i % 2 == 0 else names[1], ratio))
    for name, round_rates in zip(names, rates):
        mean, deviation = mean_and_deviation(round_rates)
        log("Total img/sec on %d rank(s), %s: %.1f +-%.1f"
            % (ringfuse.size, name, ringfuse.size * mean, ringfuse.size * deviation))
    log("%s / %s: median of the rounds' ratios %.3f (min %.3f, max %.3f); %s ahead or level in "
        "%d of %d rounds" % (names[0], names[1], statistics.median(ratios), min(ratios),
                             max(ratios), names[0], sum(r >= 1 for r in ratios), len(ratios)))
    ddp.close()
    ringfuse.close()


if __name__ == "__main__":
    main()
