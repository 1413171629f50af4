"""torch.distributed's new_group on the "ringfuse" backend: sub-groups built on their members only,
used beside the world group, checked against references computed here.

Runs under `ringfuse-run -np N` with RINGFUSE_TEST_C10D=1 (CTest: python_distributed_np*), like
test_distributed.py; the world group bootstraps from a file:// store of its own."""

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


world = c10d_world("ringfuse", "groups")


def data(rank, n=10, dtype=torch.float32):
    return (torch.arange(n, dtype=torch.float64) * (rank + 1) + rank).to(dtype)


def check_group(group, members):
    """all_reduce, broadcast (from the last member) and all_gather over `group`, whose global
    ranks are `members`, against the values every member contributes."""
    rank = dist.get_rank()
    if rank not in members:
        assert group == dist.GroupMember.NON_GROUP_MEMBER
        return
    assert dist.get_world_size(group) == len(members)
    assert dist.get_rank(group) == members.index(rank)
    assert group.name().lower() == "ringfuse"

    tensor = data(rank)
    dist.all_reduce(tensor, group=group)
    torch.testing.assert_close(tensor, sum(data(r) for r in members))

    tensor = data(rank, dtype=torch.int64)
    dist.broadcast(tensor, src=members[-1], group=group)
    assert torch.equal(tensor, data(members[-1], dtype=torch.int64))

    gathered = [torch.empty(10) for _ in members]
    dist.all_gather(gathered, data(rank), group=group)
    for got, member in zip(gathered, members):
        assert torch.equal(got, data(member))


def test_group_of_the_first_two():
    size = dist.get_world_size()
    group = dist.new_group([0, 1])
    check_group(group, [0, 1])
    tensor = torch.ones(1)
    dist.all_reduce(tensor)  # the world still agrees afterwards, non-members included
    assert tensor.item() == size


def test_odd_and_even_ranks():
    size = dist.get_world_size()
    evens = list(range(0, size, 2))
    odds = list(range(1, size, 2))
    # Every rank calls new_group for both, in the same order (torch's rule).
    even_group = dist.new_group(evens)
    odd_group = dist.new_group(odds)
    check_group(even_group, evens)
    check_group(odd_group, odds)


def test_group_and_world_interleaved():
    rank, size = dist.get_rank(), dist.get_world_size()
    members = [size - 1, 0]  # torch sorts them: group rank i is global rank sorted(members)[i]
    group = dist.new_group(members)
    everyone = dist.new_group()  # the same ranks as the world, a group of its own
    members = sorted(members)

    world_sum = data(rank)
    pending = [dist.all_reduce(world_sum, async_op=True)]
    if rank in members:
        group_sum = data(rank, 6)
        pending.append(dist.all_reduce(group_sum, group=group, async_op=True))
    all_sum = data(rank, 4, torch.float64)
    pending.append(dist.all_reduce(all_sum, group=everyone, async_op=True))
    world_max = data(rank, 3)
    pending.append(dist.all_reduce(world_max, op=dist.ReduceOp.MAX, async_op=True))
    for work in pending:
        work.wait()

    torch.testing.assert_close(world_sum, sum(data(r) for r in range(size)))
    torch.testing.assert_close(all_sum, sum(data(r, 4, torch.float64) for r in range(size)))
    torch.testing.assert_close(world_max, data(size - 1, 3))
    if rank in members:
        torch.testing.assert_close(group_sum, sum(data(r, 6) for r in members))
        check_group(group, members)
    check_group(everyone, list(range(size)))
    dist.barrier()


def test_many_groups_in_turn():
    """Groups made one after another live side by side on one host (each its own connections
    and shared-memory segments), and a destroyed one leaves the others working."""
    size = dist.get_world_size()
    groups = [dist.new_group([0, 1]) for _ in range(3)]
    for group in groups:
        check_group(group, [0, 1])
    dist.destroy_process_group(groups[1])
    check_group(groups[0], [0, 1])
    check_group(groups[2], [0, 1])
    dist.all_reduce(torch.ones(size))


def test_all_reduce_in_a_group_of_one_is_finished_when_the_call_returns():
    # A group of one has no peer to check with or wait for: its all_reduce is done before the
    # call returns, also with async_op=True, and leaves the tensor as it was (SUM, AVG, ...).
    rank, size = dist.get_rank(), dist.get_world_size()
    alone = [dist.new_group([r]) for r in range(size)][rank]  # new_group is collective
    for op in (dist.ReduceOp.SUM, dist.ReduceOp.AVG, dist.ReduceOp.MAX):
        tensor = data(rank, n=256)
        work = dist.all_reduce(tensor, op=op, group=alone, async_op=True)
        assert work.is_completed()
        work.wait()
        assert torch.equal(tensor, data(rank, n=256))
    # What no group may do, a group of one may not either.
    with pytest.raises(RuntimeError, match="avg of bool is not defined"):
        dist.all_reduce(torch.ones(4, dtype=torch.bool), op=dist.ReduceOp.AVG, group=alone)
    dist.all_reduce(data(rank), group=alone)  # and the group is still usable
    dist.barrier()


def test_group_timeout_is_named_in_its_error():
    """A collective that only rank 0 calls fails after the timeout given to new_group, and the
    error says that timeout (not only RINGFUSE_TIMEOUT_S, which c10d groups do not use) in the
    words torch's own tests look for (" timeout "). The group is not used again."""
    rank = dist.get_rank()
    group = dist.new_group(list(range(dist.get_world_size())),
                           timeout=datetime.timedelta(seconds=1))
    if rank == 0:
        with pytest.raises(RuntimeError) as failure:
            dist.barrier(group)
        message = str(failure.value)
        assert "rank 0: " in message and "barrier" in message
        assert " timeout given to init_process_group or new_group: 1000 ms" in message
    dist.destroy_process_group(group)
    dist.barrier()


def last_two_ranks_group(timeout_s):
    """new_group of the world's last two ranks (global ranks 1 and 2 of three): their group
    ranks (0 and 1) differ from their global ranks, which errors must name."""
    size = dist.get_world_size()
    return dist.new_group([size - 2, size - 1], timeout=datetime.timedelta(seconds=timeout_s))


@pytest.mark.skipif(int(os.environ.get("WORLD_SIZE", "1")) < 3,
                    reason="needs a group whose group ranks differ from its global ranks (N >= 3)")
def test_sub_group_timeout_names_global_ranks_and_the_group():
    """Global rank 2 (group rank 1 of new_group([1, 2])) calls a barrier its peer never calls:
    the error names rank 2 and the group, not group rank 1."""
    rank, size = dist.get_rank(), dist.get_world_size()
    group = last_two_ranks_group(1)
    if rank == size - 1:
        with pytest.raises(RuntimeError) as failure:
            dist.barrier(group)
        message = str(failure.value)
        assert message.startswith(f"rank {rank}: "), message
        assert f"new_group([{size - 2}, {size - 1}])" in message, message
        assert "barrier" in message and "timeout" in message, message
    dist.destroy_process_group(group)
    dist.barrier()


@pytest.mark.skipif(int(os.environ.get("WORLD_SIZE", "1")) < 3,
                    reason="needs a group whose group ranks differ from its global ranks (N >= 3)")
def test_sub_group_receive_names_the_global_peer():
    """A receive in new_group([1, 2]) from global rank 1 that never sends: the error names both
    ends by their global ranks (rank 2 waiting on rank 1) and the group."""
    rank, size = dist.get_rank(), dist.get_world_size()
    group = last_two_ranks_group(1)
    if rank == size - 1:
        with pytest.raises(RuntimeError) as failure:
            dist.recv(torch.empty(4), src=size - 2, group=group)
        message = str(failure.value)
        assert message.startswith(f"rank {rank}: "), message
        assert f"from rank {size - 2}" in message, message
        assert f"new_group([{size - 2}, {size - 1}])" in message, message
    dist.destroy_process_group(group)
    dist.barrier()


def test_a_new_group_names_its_timeline_files_by_global_rank(tmp_path_factory):
    # RINGFUSE_TIMELINE names one file per rank. A new_group is a world of its own whose ranks
    # are group ranks: named by those, global rank 1 (rank 0 of new_group([1, ...])) would
    # write NAME.0.json, global rank 0's file. It writes NAME.1.json.
    rank, size = dist.get_rank(), dist.get_world_size()
    store = dist.distributed_c10d._get_default_store()
    if rank == 0:
        store.set("timeline-dir", str(tmp_path_factory.mktemp("timeline")))
    path = os.path.join(store.get("timeline-dir").decode(), "t.json")
    os.environ["RINGFUSE_TIMELINE"] = path  # read when a group is made
    try:
        members = list(range(1, size))
        group = dist.new_group(members)
        if rank in members:
            tensors = [data(rank), data(rank, 3)]
            dist.all_reduce_coalesced(tensors, group=group)  # on the group's engine
            torch.testing.assert_close(tensors[0], sum(data(r) for r in members))
    finally:
        del os.environ["RINGFUSE_TIMELINE"]
    dist.barrier()
    written = sorted(os.listdir(os.path.dirname(path)))
    # The world group was made without RINGFUSE_TIMELINE: only the group's members write.
    assert written == sorted(f"t.{r}.json" for r in members), written
