"""The "ringfuse" backend from torchrun's environment alone (env://: RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as a training script meets it, then a collective that only rank 0 calls: Work.wait with
a timeout raises on rank 0 with the rank and the collective, and the Work then fails (rank 1
leaves) instead of hanging. Exits nonzero on any failure.

Without RANK this script is its own launcher: it starts two ranks with torchrun's variables
and a free port, as torchrun --standalone would (CTest: python_distributed_torchrun), so that
the failure case is checked without torchrun's agent in between. Debian's torchrun itself
(torch 1.13 under Python 3.11) starts workers only with `--redirects 1 --tee 1`; the real
torchrun runs the DDP example in python_example_ddp_under_torchrun (under_torchrun.py)."""

import datetime
import os
import subprocess
import sys

import torch
import torch.distributed as dist

import ringfuse.distributed  # noqa: F401  (registers the backend)
from free_port import free_port


def expect_error(call, *fragments):
    try:
        call()
    except RuntimeError as error:
        missing = [f for f in fragments if f not in str(error)]
        if missing:
            sys.exit(f"error lacks {missing}: {error}")
        return str(error)
    sys.exit(f"expected an error containing {fragments}")


def main():
    dist.init_process_group("ringfuse", timeout=datetime.timedelta(seconds=20))
    rank, size = dist.get_rank(), dist.get_world_size()
    tensor = torch.full((1000,), float(rank + 1))
    dist.all_reduce(tensor)
    assert torch.equal(tensor, torch.full((1000,), float(size * (size + 1) // 2))), tensor[:4]

    store = dist.distributed_c10d._get_default_store()
    if rank == 0:
        # No other rank joins. 128 KiB: above the size the group runs in the calling thread
        # (which would block here until the group's timeout), so it goes to the group's worker
        # and the call returns at once, as async_op promises for it.
        work = dist.all_reduce(torch.ones(32768), async_op=True)
        expect_error(lambda: work.wait(datetime.timedelta(seconds=1)),
                     "rank 0", "allreduce of Float[32768]", "not finished after 1000 ms")
        store.set("checked", "1")
        print(expect_error(work.wait, "rank 0"), flush=True)  # fails once rank 1 has left
    else:
        store.wait(["checked"])
    print(f"rank {rank}: ok", flush=True)


def launch(size=2):
    port = free_port(span=2)  # torch's store, and after it the "ringfuse" backend's
    ranks = []
    for rank in range(size):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        ranks.append(subprocess.Popen([sys.executable, __file__], env=env))
    statuses = [rank.wait(timeout=100) for rank in ranks]
    print(f"exit statuses: {statuses}", flush=True)
    return 0 if all(status == 0 for status in statuses) else 1


if __name__ == "__main__":
    if "RANK" in os.environ:
        main()
    else:
        sys.exit(launch())
