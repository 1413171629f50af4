"""`dist.new_group(ranks, backend="ringfuse")` when the default group is gloo: the sub-group runs on
Ringfuse, the world on gloo, interleaved.

Runs under `ringfuse-run -np N` with RINGFUSE_TEST_C10D=1 (CTest: python_distributed_np*)."""

import os

import pytest
import torch

if not os.environ.get("RINGFUSE_TEST_C10D"):
    pytest.skip("run by the python_distributed tests (RINGFUSE_TEST_C10D=1)",
                allow_module_level=True)

import torch.distributed as dist  # noqa: E402

import ringfuse.distributed  # noqa: E402,F401  (registers the backend)
from conftest import c10d_world  # noqa: E402


world = c10d_world("gloo", "gloo-world")


def data(rank, n=10):
    return torch.arange(n, dtype=torch.float32) * (rank + 1) + rank


def test_ringfuse_group_under_a_gloo_world():
    rank, size = dist.get_rank(), dist.get_world_size()
    assert dist.get_backend() == "gloo"
    members = [0, size - 1]
    group = dist.new_group(members, backend="ringfuse")
    everyone = dist.new_group(backend="ringfuse")
    pending = None
    if rank not in members:
        assert group == dist.GroupMember.NON_GROUP_MEMBER
    else:
        assert dist.get_backend(group).lower() == "ringfuse"
        group_sum = data(rank)
        pending = dist.all_reduce(group_sum, group=group, async_op=True)
    world_sum = data(rank)
    dist.all_reduce(world_sum)  # on gloo, while the ringfuse group's all_reduce may still run
    torch.testing.assert_close(world_sum, sum(data(r) for r in range(size)))
    if pending is not None:
        pending.wait()
        torch.testing.assert_close(group_sum, data(0) + data(size - 1))
        tensor = data(rank)
        dist.broadcast(tensor, src=size - 1, group=group)
        assert torch.equal(tensor, data(size - 1))

    all_sum = data(rank, 7)
    dist.all_reduce(all_sum, group=everyone)  # on ringfuse
    torch.testing.assert_close(all_sum, sum(data(r, 7) for r in range(size)))
    gathered = [torch.empty(10) for _ in range(size)]
    dist.all_gather(gathered, data(rank), group=everyone)
    assert all(torch.equal(gathered[r], data(r)) for r in range(size))
