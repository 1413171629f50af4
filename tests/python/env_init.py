#!/usr/bin/env python3
"""Under ringfuse-run, torch.distributed's default rendezvous (env://) works as under torchrun:
`init_process_group(BACKEND)` with no init_method meets at MASTER_ADDR:MASTER_PORT, where rank 0
serves a torch TCPStore; then one all_reduce, checked on every rank. The exit status decides.

    ringfuse-run -np N -- python3 env_init.py gloo|ringfuse [loop]

With "loop" the ranks then go on all-reducing (60 s at most, after printing "looping"), for
the tests of what ranks do when their launcher goes away.
"""

import datetime
import os
import sys
import time

import torch
import torch.distributed as dist

import ringfuse.distributed  # noqa: F401  (registers "ringfuse")


def main():
    backend = sys.argv[1]
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=60))
    rank, size = dist.get_rank(), dist.get_world_size()
    reduced = torch.full((1009,), float(rank + 1))
    dist.all_reduce(reduced)
    want = size * (size + 1) / 2
    if not torch.equal(reduced, torch.full_like(reduced, want)):
        sys.exit(f"rank {rank}: all_reduce over {backend} gave {reduced[:4].tolist()}, "
                 f"want {want} everywhere")
    print(f"rank {rank}: {backend} from env:// at {os.environ['MASTER_ADDR']}:"
          f"{os.environ['MASTER_PORT']}: all_reduce of {size} ranks right", flush=True)
    if sys.argv[2:] == ["loop"]:
        print(f"rank {rank}: looping", flush=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dist.all_reduce(reduced)
            time.sleep(0.01)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
