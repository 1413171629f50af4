"""Horovod process sets in ringfuse.torch: add_process_set / remove_process_set /
init(process_sets=...), and process_set= on the collectives, against references computed here.

Every rank runs every test (members or not): registering and removing a set is collective over
the world, as in Horovod."""

import json

import pytest
import torch

import ringfuse.torch as hvd
from conftest import rank_data


def values(rank, n=6, dtype=torch.float32):
    return (torch.arange(n, dtype=torch.float64) * (rank + 1) + rank).to(dtype)


@pytest.fixture
def cleanup():
    """Sets a test registered are removed afterwards, also when it failed."""
    registered = []
    yield registered
    for process_set in registered:
        hvd.remove_process_set(process_set)


def test_overlapping_sets_with_interleaved_collectives(cleanup):
    if hvd.size() < 3:
        pytest.skip("needs 3 ranks for two overlapping sets")
    rank = hvd.rank()
    first = hvd.add_process_set([0, 1])
    second = hvd.add_process_set(hvd.ProcessSet([2, 1]))
    cleanup.extend([first, second])
    assert first.ranks == [0, 1] and second.ranks == [1, 2]
    assert first.process_set_id != second.process_set_id
    assert first.size() == 2 and second.size() == 2
    assert first.included() == (rank in (0, 1)) and second.included() == (rank in (1, 2))
    assert first.rank() == ([0, 1].index(rank) if rank in (0, 1) else -1)
    assert second.rank() == ([1, 2].index(rank) if rank in (1, 2) else -1)

    # Rank 1 has collectives pending on both sets and the world at once; unnamed ones are
    # named per set, so the members agree although the other ranks call fewer of them.
    handles = []
    for _ in range(3):
        if first.included():
            handles.append(("first", hvd.allreduce_async(values(rank), op=hvd.Sum,
                                                         process_set=first)))
        if second.included():
            handles.append(("second", hvd.allreduce_async(values(rank), op=hvd.Sum,
                                                          process_set=second)))
        handles.append(("world", hvd.allreduce_async(values(rank), op=hvd.Sum)))
    expected = {"first": values(0) + values(1), "second": values(1) + values(2),
                "world": sum(values(r) for r in range(hvd.size()))}
    for which, handle in reversed(handles):
        torch.testing.assert_close(hvd.synchronize(handle), expected[which])

    for process_set in (first, second):
        if not process_set.included():
            continue
        members = process_set.ranks
        gathered = hvd.allgather(values(rank, n=rank + 1).view(-1, 1), process_set=process_set)
        torch.testing.assert_close(gathered,
                                   torch.cat([values(r, n=r + 1) for r in members]).view(-1, 1))
        root = members[-1]  # a global rank, as in Horovod
        torch.testing.assert_close(hvd.broadcast(values(rank), root, process_set=process_set),
                                   values(root))
        hvd.barrier(process_set=process_set)


def test_every_collective_on_a_set(cleanup):
    rank, size = hvd.rank(), hvd.size()
    members = [0, size - 1]
    subset = hvd.add_process_set(members)
    cleanup.append(subset)
    if not subset.included():
        return
    me = members.index(rank)

    t = rank_data((4, 3), torch.float32, rank)
    torch.testing.assert_close(hvd.allreduce(t, process_set=subset),
                               sum(rank_data((4, 3), torch.float32, r) for r in members) / 2)
    in_place = t.clone()
    hvd.allreduce_(in_place, op=hvd.Max, process_set=subset)
    torch.testing.assert_close(in_place, torch.stack(
        [rank_data((4, 3), torch.float32, r) for r in members]).max(0).values)
    grouped = hvd.grouped_allreduce([t, t.double()], op=hvd.Sum, process_set=subset)
    reference = sum(rank_data((4, 3), torch.float32, r) for r in members)
    torch.testing.assert_close(grouped[0], reference)
    torch.testing.assert_close(grouped[1], reference.double())

    pieces = hvd.grouped_allgather([values(rank, n=2), values(rank, n=3)], process_set=subset)
    torch.testing.assert_close(pieces[0], torch.cat([values(r, n=2) for r in members]))
    torch.testing.assert_close(pieces[1], torch.cat([values(r, n=3) for r in members]))

    out = values(rank)
    hvd.broadcast_(out, root_rank=members[0], process_set=subset)
    torch.testing.assert_close(out, values(members[0]))

    # alltoall: block j goes to the set's j-th member; with splits, one row to member 0 and
    # two to member 1.
    rows = torch.tensor([[rank, 0], [rank, 1], [rank, 1]], dtype=torch.float32)
    received, splits = hvd.alltoall(rows, splits=[1, 2], process_set=subset)
    assert splits.tolist() == [me + 1, me + 1]
    expected = torch.cat([torch.tensor([[r, me]] * (me + 1), dtype=torch.float32)
                          for r in members])
    torch.testing.assert_close(received, expected)
    even = hvd.alltoall(torch.tensor([float(rank * 10), float(rank * 10 + 1)]),
                        process_set=subset)
    torch.testing.assert_close(even, torch.tensor([float(r * 10 + me) for r in members]))

    block = torch.arange(4, dtype=torch.float32).view(4, 1) + rank
    torch.testing.assert_close(hvd.reducescatter(block, op=hvd.Sum, process_set=subset),
                               sum(torch.arange(4, dtype=torch.float32).view(4, 1) + r
                                   for r in members)[2 * me:2 * me + 2])
    uneven = hvd.reducescatter(torch.ones(3, 2), op=hvd.Sum, process_set=subset)
    assert uneven.shape == ((2, 2) if me == 0 else (1, 2))  # Horovod's uneven split
    grouped_rs = hvd.grouped_reducescatter([torch.ones(2), torch.ones(4)], op=hvd.Average,
                                           process_set=subset)
    assert [g.tolist() for g in grouped_rs] == [[1.0], [1.0, 1.0]]

    # Autograd: the backward of a set's allreduce is the set's allreduce.
    x = torch.ones(3, requires_grad=True)
    hvd.allreduce(x * (rank + 1), op=hvd.Sum, process_set=subset).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), float(2 * (rank + 1))))
    y = torch.ones(2, 2, requires_grad=True)
    (hvd.allgather(y, process_set=subset) * 3).sum().backward()
    torch.testing.assert_close(y.grad, torch.full((2, 2), 6.0))

    assert hvd.broadcast_object({"from": rank}, root_rank=members[-1],
                                process_set=subset) == {"from": members[-1]}
    assert hvd.allgather_object(rank * 7, process_set=subset) == [r * 7 for r in members]
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, float(rank))
    hvd.broadcast_parameters(model.state_dict(), root_rank=members[-1], process_set=subset)
    assert torch.equal(model.weight, torch.full((2, 3), float(members[-1])))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1 * (rank + 1), momentum=0.9)
    hvd.broadcast_optimizer_state(optimizer, root_rank=members[0], process_set=subset)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (members[0] + 1))
    hvd.barrier(process_set=subset)


def test_distributed_optimizer_and_sync_batch_norm_over_a_set(cleanup):
    rank, size = hvd.rank(), hvd.size()
    members = list(range(1, size))  # every rank but 0
    subset = hvd.add_process_set(members)
    cleanup.append(subset)

    def model_and_optimizer(process_set):
        torch.manual_seed(7)
        model = torch.nn.Linear(4, 1)
        optimizer = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.5),
                                             named_parameters=model.named_parameters(),
                                             process_set=process_set)
        return model, optimizer

    if not subset.included():
        with pytest.raises(ValueError, match="rank 0 is not in process set"):
            model_and_optimizer(subset)
        return

    def batch(r):
        g = torch.Generator().manual_seed(50 + r)
        return torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)

    model, optimizer = model_and_optimizer(subset)
    x, y = batch(rank)
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()

    # The same step on one process: the members' batches together (equal sizes: the mean of
    # their gradients is the gradient of the whole batch).
    torch.manual_seed(7)
    reference = torch.nn.Linear(4, 1)
    xs, ys = zip(*[batch(r) for r in members])
    torch.nn.functional.mse_loss(reference(torch.cat(xs)), torch.cat(ys)).backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.5 * p.grad
    for mine, expected in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(mine, expected)

    # SyncBatchNorm over the set: the statistics of the members' batches together.
    norm = hvd.SyncBatchNorm(4, process_set=subset)
    out = norm(x)
    whole = torch.cat(xs)
    expected = (x - whole.mean(0)) / torch.sqrt(whole.var(0, unbiased=False) + norm.eps)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_remove_then_add_again():
    rank, size = hvd.rank(), hvd.size()
    members = [0, 1] if size > 1 else [0]
    subset = hvd.add_process_set(members)
    with pytest.raises(ValueError, match="duplicate process set"):
        hvd.add_process_set(list(reversed(members)))
    if subset.included():
        torch.testing.assert_close(hvd.allreduce(values(rank), op=hvd.Sum, process_set=subset),
                                   sum(values(r) for r in members))
    assert hvd.remove_process_set(subset) is True
    assert subset.process_set_id is None and subset.size() is None
    assert hvd.remove_process_set(subset) is False
    assert hvd.remove_process_set(hvd.global_process_set) is False
    with pytest.raises(ValueError, match="is not registered"):
        hvd.allreduce(values(rank), process_set=subset)

    again = hvd.add_process_set(subset)  # the same object, registered anew
    assert again is subset and subset.process_set_id is not None
    if subset.included():
        torch.testing.assert_close(hvd.allreduce(values(rank), op=hvd.Sum, process_set=subset,
                                                 name="after.readd"),
                                   sum(values(r) for r in members))
    assert hvd.remove_process_set(subset)
    # The world goes on.
    torch.testing.assert_close(hvd.allreduce(torch.ones(2), op=hvd.Sum),
                               torch.full((2,), float(size)))


def test_non_member_is_refused_on_every_rank(cleanup):
    rank, size = hvd.rank(), hvd.size()
    if size < 2:
        pytest.skip("needs 2 ranks")
    # Set r holds every rank but r: each rank is the non-member of one set.
    sets = [hvd.add_process_set([m for m in range(size) if m != r]) for r in range(size)]
    cleanup.extend(sets)
    mine = sets[rank]
    pattern = "rank %d is not in process set %d" % (rank, mine.process_set_id)
    calls = {
        "allreduce": lambda: hvd.allreduce(torch.ones(2), process_set=mine),
        "grouped_allreduce": lambda: hvd.grouped_allreduce([torch.ones(2)], process_set=mine),
        "allgather": lambda: hvd.allgather(torch.ones(2), process_set=mine),
        "grouped_allgather": lambda: hvd.grouped_allgather([torch.ones(2)], process_set=mine),
        "broadcast": lambda: hvd.broadcast(torch.ones(2), mine.ranks[0], process_set=mine),
        "alltoall": lambda: hvd.alltoall(torch.ones(size - 1), process_set=mine),
        "reducescatter": lambda: hvd.reducescatter(torch.ones(size - 1), process_set=mine),
        "grouped_reducescatter": lambda: hvd.grouped_reducescatter([torch.ones(size - 1)],
                                                                   process_set=mine),
        "barrier": lambda: hvd.barrier(process_set=mine),
        "broadcast_object": lambda: hvd.broadcast_object(1, mine.ranks[0], process_set=mine),
        "allgather_object": lambda: hvd.allgather_object(1, process_set=mine),
        "broadcast_parameters": lambda: hvd.broadcast_parameters(
            [torch.ones(1)], mine.ranks[0], process_set=mine),
    }
    for what, call in calls.items():
        with pytest.raises(ValueError, match=pattern):
            call()
            pytest.fail("%s on a set without this rank did not raise" % what)
    assert mine.included() is False and mine.rank() == -1

    # Nothing was enqueued: the members of the other sets still agree, and so does the world.
    for process_set in sets:
        if process_set.included():
            torch.testing.assert_close(
                hvd.allreduce(torch.ones(1), op=hvd.Sum, process_set=process_set),
                torch.full((1,), float(size - 1)))
    # A root outside the set is refused as such (set `other` holds this rank, not `other`).
    other = (rank + 1) % size
    with pytest.raises(ValueError, match="root_rank %d is not in process set" % other):
        hvd.broadcast(torch.ones(1), other, process_set=sets[other])


def test_static_process_sets_at_init():
    size = hvd.size()
    hvd.shutdown()
    static = hvd.ProcessSet(range(size))
    tail = hvd.ProcessSet([size - 1])
    try:
        hvd.init(process_sets=[static, tail])
        assert static.process_set_id is not None and tail.process_set_id is not None
        torch.testing.assert_close(hvd.allreduce(torch.ones(2), op=hvd.Sum, process_set=static),
                                   torch.full((2,), float(size)))
        if tail.included():
            torch.testing.assert_close(hvd.allreduce(torch.ones(2), op=hvd.Sum,
                                                     process_set=tail), torch.ones(2))
    finally:
        hvd.shutdown()
    assert static.process_set_id is None  # a session's sets end with it
    hvd.init(process_sets="dynamic")
    assert hvd.global_process_set.ranks == list(range(size))


def test_timeline_holds_the_sets_collectives(tmp_path, cleanup):
    """start_timeline covers the process sets, as Horovod's timeline does: one file per rank,
    where a set's collectives have a process row ("pid") of their own, named after the set and
    its global ranks, and the global set's stay on pid = rank."""
    rank = hvd.rank()
    members = [0, hvd.size() - 1]  # at N = 3 rank 1 is outside it
    process_set = hvd.add_process_set(members)
    cleanup.append(process_set)
    hvd.start_timeline(str(tmp_path / "timeline.json"))
    if process_set.included():
        hvd.allreduce(torch.ones(4), op=hvd.Sum, name="timeline.in_set", process_set=process_set)
    hvd.allreduce(torch.ones(4), op=hvd.Sum, name="timeline.global")
    hvd.stop_timeline()

    events = json.loads((tmp_path / ("timeline.%d.json" % rank)).read_text())
    process_names = {event["pid"]: event["args"]["name"] for event in events
                     if event.get("name") == "process_name"}

    def pids(name, tid):
        return [event["pid"] for event in events
                if event.get("ph") == "X" and event.get("name") == name and event["tid"] == tid]

    assert pids("QUEUE timeline.global", 2) == [rank]
    assert rank not in process_names
    if not process_set.included():
        assert pids("QUEUE timeline.in_set", 2) == []
        return
    queued = pids("QUEUE timeline.in_set", 2)
    assert len(queued) == 1 and queued[0] != rank, events
    pid = queued[0]
    assert process_names.get(pid) == "process set %d (global ranks %s)" % (
        process_set.process_set_id, ",".join(str(r) for r in members)), process_names
    assert pids("ALLREDUCE timeline.in_set", 4) == [pid]
    named_rows = {event["tid"] for event in events
                  if event.get("name") == "thread_name" and event["pid"] == pid}
    assert named_rows == {1, 2, 3, 4}
