"""A rank that dies in the middle of DDP training, with no launcher to stop the others (ranks
started from torchrun's variables alone, as a PyTorchJob starts its pods): every other rank's
backward pass raises within seconds, naming the lost rank, and its interpreter then exits
cleanly, instead of waiting out the group's timeout. Exits nonzero on any failure.

Without RANK this script is its own launcher: it starts three ranks with torchrun's variables
and a free port; rank 1 ends itself with os._exit(7) at step 3 (CTest:
python_peer_crash_without_launcher)."""

import datetime
import os
import subprocess
import sys
import time

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

import ringfuse.distributed  # noqa: F401  (registers the backend)
import torch.distributed as dist
from free_port import free_port

CRASH_STEP = 3
TIMEOUT_S = 60       # the group's timeout: what a missed failure would wait out
REPORTED_WITHIN_S = 20


def main():
    dist.init_process_group("ringfuse", timeout=datetime.timedelta(seconds=TIMEOUT_S))
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(100, 50), nn.ReLU(),
                                                  nn.Linear(50, 10)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(1000):
        if rank == 1 and step == CRASH_STEP:
            os._exit(7)  # no shutdown of anything: as a crash or an OOM kill
        started = time.monotonic()
        try:
            optimizer.zero_grad()
            model(torch.randn(8, 100)).sum().backward()
            optimizer.step()
        except RuntimeError as error:
            took = time.monotonic() - started
            message = str(error)
            print(f"rank {rank}: step {step} failed after {took:.1f} s: {message}", flush=True)
            if "lost rank" not in message or "rank 1" not in message:
                sys.exit(f"rank {rank}: the error does not name the lost rank 1")
            if took > REPORTED_WITHIN_S:
                sys.exit(f"rank {rank}: the failure took {took:.1f} s to surface")
            return  # and the interpreter must exit, with the group torn down
    sys.exit(f"rank {rank}: trained on although rank 1 died at step {CRASH_STEP}")


def launch(size=3):
    port = free_port(span=2)
    ranks = []
    for rank in range(size):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        ranks.append(subprocess.Popen([sys.executable, __file__], env=env))
    statuses = []
    for rank, process in enumerate(ranks):
        try:
            statuses.append(process.wait(timeout=TIMEOUT_S + 30))
        except subprocess.TimeoutExpired:
            for other in ranks:
                other.kill()
            print(f"rank {rank} still runs {TIMEOUT_S + 30} s on: it hangs", flush=True)
            return 1
    print(f"exit statuses: {statuses} (want [0, 7, 0])", flush=True)
    return 0 if statuses == [0, 7, 0] else 1


if __name__ == "__main__":
    if "RANK" in os.environ:
        main()
    else:
        sys.exit(launch())
