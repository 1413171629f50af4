"""DistributedDataParallel over "ringfuse" gives the parameters DDP over gloo gives: the same
model, data and seed, trained side by side in one job (a gloo sub-group beside the ringfuse
default group), plain, with the fp16-compression communication hook, and with no_sync()
accumulation. Bit for bit: at two ranks each reduced element is a + b on either backend.

Runs under `ringfuse-run -np 2` with RINGFUSE_TEST_C10D=1; bootstraps over tcp:// (torch's
TCPStore) on a port rank 0 picks and announces through ringfuse.torch."""

import contextlib
import datetime
import os

import pytest
import torch

if not os.environ.get("RINGFUSE_TEST_C10D"):
    pytest.skip("run by the python_distributed tests (RINGFUSE_TEST_C10D=1)",
                allow_module_level=True)

import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks  # noqa: E402
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

import ringfuse.distributed  # noqa: E402,F401  (registers the backend)
import ringfuse.torch as hvd  # noqa: E402
from free_port import free_port  # noqa: E402


@pytest.fixture(scope="module")
def groups():
    port = hvd.broadcast_object(free_port() if hvd.rank() == 0 else None, root_rank=0)
    dist.init_process_group("ringfuse", init_method=f"tcp://127.0.0.1:{port}",
                            rank=hvd.rank(), world_size=hvd.size(),
                            timeout=datetime.timedelta(seconds=60))
    gloo = dist.new_group(backend="gloo")
    yield {"ringfuse": dist.group.WORLD, "gloo": gloo}
    dist.destroy_process_group()


def train(group, hook=None, no_sync_every=0, steps=6, hook_state=None):
    torch.manual_seed(7)  # the same initial model everywhere; DDP broadcasts rank 0's anyway
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 10))
    ddp = DistributedDataParallel(model, process_group=group, bucket_cap_mb=0.001)
    if hook:
        ddp.register_comm_hook(hook_state(group) if hook_state else group, hook)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    data = torch.Generator().manual_seed(100 + dist.get_rank())
    for step in range(steps):
        inputs = torch.randn(8, 1, 8, 8, generator=data)
        labels = torch.randint(0, 10, (8,), generator=data)
        accumulate = no_sync_every and (step + 1) % no_sync_every != 0
        with ddp.no_sync() if accumulate else contextlib.nullcontext():
            F.cross_entropy(ddp(inputs), labels).backward()
        if not accumulate:
            optimizer.step()
            optimizer.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("hook,no_sync_every", [
    (None, 0),
    (default_hooks.fp16_compress_hook, 0),
    (None, 3),
], ids=["plain", "fp16_hook", "no_sync"])
def test_ddp_matches_gloo(groups, hook, no_sync_every):
    ours = train(groups["ringfuse"], hook, no_sync_every)
    reference = train(groups["gloo"], hook, no_sync_every)
    for mine, theirs in zip(ours, reference):
        assert torch.equal(mine, theirs), (mine - theirs).abs().max()
    # and the ranks agree with each other
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, [p.sum().item() for p in ours])
    assert all(g == gathered[0] for g in gathered)


def test_ddp_with_powersgd_matches_gloo(groups):
    # PowerSGD's hook starts a collective inside a future's callback and waits for it there;
    # with every bucket (bucket_cap_mb=0.001) several such callbacks wait at once. The group's
    # lane ran callbacks in the thread that held it, and this hung in the first compressed step.
    def state(group):
        return powerSGD_hook.PowerSGDState(process_group=group, matrix_approximation_rank=1,
                                           start_powerSGD_iter=2, random_seed=5)

    ours = train(groups["ringfuse"], powerSGD_hook.powerSGD_hook, hook_state=state)
    reference = train(groups["gloo"], powerSGD_hook.powerSGD_hook, hook_state=state)
    for mine, theirs in zip(ours, reference):
        assert torch.equal(mine, theirs), (mine - theirs).abs().max()
