#!/usr/bin/env python3
"""DDP with torch's PowerSGD communication hook on "ringfuse", then the interpreter's exit: the
hook starts collectives inside futures' callbacks and waits for them there (this hung the
group's lane), and those callbacks, Python closures, are released by the group's worker
threads as the script ends (this killed a rank with SIGABRT in 3 of 5 exits: a thread cannot
take the GIL once the interpreter is finalizing). The exit status decides; CTest runs it a few
times, as the exit is a race.

    ringfuse-run -np 2 -- python3 powersgd_exit.py
"""

import datetime
import sys

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

import ringfuse.distributed  # noqa: F401  (registers "ringfuse")


def main():
    dist.init_process_group("ringfuse", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    ddp = DistributedDataParallel(model, bucket_cap_mb=0.001)
    state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=1,
                                        start_powerSGD_iter=2, random_seed=5)
    ddp.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    data = torch.Generator().manual_seed(rank)
    for _ in range(5):
        optimizer.zero_grad()
        ddp(torch.randn(4, 32, generator=data)).sum().backward()
        optimizer.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    rank_zero = flat.clone()
    dist.broadcast(rank_zero, 0)
    if not torch.equal(flat, rank_zero):
        sys.exit(f"rank {rank}: parameters differ from rank 0's after PowerSGD steps")
    print(f"rank {rank}: 5 PowerSGD steps, parameters equal on every rank", flush=True)
    # No destroy_process_group(), as many scripts: the group ends with the interpreter.


if __name__ == "__main__":
    main()
