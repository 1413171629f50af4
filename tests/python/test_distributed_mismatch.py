"""Ranks that call different collectives through torch.distributed on the "ringfuse" backend:
every rank gets one error naming what each rank sent (the engine's mismatch diagnosis), never
a hang or a wrong result, and the group keeps working for the next collective.

Each test mismatches one thing (shape, dtype, operator, root, the collective itself) on a
group of every rank of its own, and each rank checks its own message. Runs under
`ringfuse-run -np N` with RINGFUSE_TEST_C10D=1 (CTest: python_distributed_np2, _np3)."""

import datetime
import os

import pytest
import torch

if not os.environ.get("RINGFUSE_TEST_C10D"):
    pytest.skip("run by the python_distributed tests (RINGFUSE_TEST_C10D=1)",
                allow_module_level=True)

import torch.distributed as dist  # noqa: E402

import ringfuse.distributed  # noqa: E402,F401  (registers the backend)
from conftest import c10d_world  # noqa: E402


world = c10d_world("ringfuse", "mismatch")

# Long enough for a loaded machine, short enough that a hang (the old behaviour) fails the test
# in seconds rather than at CTest's limit.
GROUP_TIMEOUT = datetime.timedelta(seconds=15)


def who(ranks):
    """How the engine names a set of ranks: "rank 2" or "ranks {0,1}"."""
    return f"rank {ranks[0]}" if len(ranks) == 1 else "ranks {" + ",".join(map(str, ranks)) + "}"


def expect_mismatch(call, parts):
    """Runs call(group) on a fresh group of every rank: it must fail with "does not match
    across ranks: " followed by `parts` (what each set of ranks sent, in rank order), on this
    rank, prefixed by this rank; then the group must still all-reduce correctly."""
    rank, size = dist.get_rank(), dist.get_world_size()
    group = dist.new_group(list(range(size)), timeout=GROUP_TIMEOUT)
    with pytest.raises(RuntimeError) as failure:
        work = call(group)
        if work is not None:
            work.wait()
    message = str(failure.value)
    expected = "does not match across ranks: " + "; ".join(
        f"{who(ranks)}: {sent}" for ranks, sent in parts)
    assert expected in message, message
    assert message.startswith(f"rank {rank}: "), message
    after = torch.ones(4)
    dist.all_reduce(after, group=group)
    assert torch.equal(after, torch.full((4,), float(size)))
    dist.destroy_process_group(group)


def everyone_but_zero():
    return list(range(1, dist.get_world_size()))


def test_shapes_differ():
    rank, size = dist.get_rank(), dist.get_world_size()
    expect_mismatch(
        lambda group: dist.all_reduce(torch.ones(10 + rank), group=group, async_op=True),
        [([r], f"f32[{10 + r}] sum") for r in range(size)])


def test_dtypes_differ():
    rank = dist.get_rank()
    dtype = torch.float32 if rank == 0 else torch.float64
    expect_mismatch(
        lambda group: dist.all_reduce(torch.ones(10, dtype=dtype), group=group),
        [([0], "f32[10] sum"), (everyone_but_zero(), "f64[10] sum")])


def test_operators_differ():
    rank = dist.get_rank()
    op = dist.ReduceOp.SUM if rank == 0 else dist.ReduceOp.MAX
    expect_mismatch(
        lambda group: dist.all_reduce(torch.ones(10), op=op, group=group),
        [([0], "f32[10] sum"), (everyone_but_zero(), "f32[10] max")])


def test_roots_differ():
    rank = dist.get_rank()
    root = 0 if rank == 0 else 1
    expect_mismatch(
        lambda group: dist.broadcast(torch.ones(10), src=root, group=group),
        [([0], "f32[10] broadcast root 0"), (everyone_but_zero(), "f32[10] broadcast root 1")])


def test_collectives_differ():
    rank = dist.get_rank()

    def call(group):
        if rank == 0:
            return dist.all_reduce(torch.ones(10), group=group)
        return dist.broadcast(torch.ones(10), src=0, group=group)

    expect_mismatch(call, [([0], "'allreduce' f32[10] sum"),
                           (everyone_but_zero(), "'broadcast' f32[10] broadcast root 0")])


def test_all_gather_sizes_differ():
    rank, size = dist.get_rank(), dist.get_world_size()
    n = 10 if rank == 0 else 12

    def call(group):
        outputs = [torch.empty(n) for _ in range(size)]
        return dist.all_gather(outputs, torch.ones(n), group=group)

    expect_mismatch(call, [([0], "f32[1,10] allgather"),
                           (everyone_but_zero(), "f32[1,12] allgather")])


def test_a_small_and_a_large_tensor_differ():
    # Rank 0's small all-reduce runs in its calling thread, the others' large one on their
    # group's worker: the agreement check still names both, on every rank.
    rank = dist.get_rank()
    n = 10 if rank == 0 else 100_000
    expect_mismatch(
        lambda group: dist.all_reduce(torch.ones(n), group=group, async_op=True),
        [([0], "f32[10] sum"), (everyone_but_zero(), "f32[100000] sum")])
