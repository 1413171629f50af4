"""torch.distributed's point-to-point on the "ringfuse" backend: send/recv, isend/irecv, recv
from any source, tags and batch_isend_irecv, checked against the values the senders used.

Runs under `ringfuse-run -np N` with RINGFUSE_TEST_C10D=1 (CTest: python_distributed_np*)."""

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


world = c10d_world("ringfuse", "p2p")


def payload(sender, n=5, tag=0, dtype=torch.float32):
    return (torch.arange(n, dtype=torch.float64) + 100 * sender + 10 * tag).to(dtype)


def neighbours():
    rank, size = dist.get_rank(), dist.get_world_size()
    return rank, size, (rank + 1) % size, (rank - 1) % size


def test_blocking_ring():
    rank, size, next_rank, prev_rank = neighbours()
    received = torch.empty(5)
    # Even ranks send first, odd ones receive first: correct with any buffering.
    if rank % 2 == 0:
        dist.send(payload(rank), dst=next_rank)
        dist.recv(received, src=prev_rank)
    else:
        dist.recv(received, src=prev_rank)
        dist.send(payload(rank), dst=next_rank)
    assert torch.equal(received, payload(prev_rank))


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bfloat16,
                                   torch.complex64, torch.bool])
def test_receive_posted_before_send_on_both_sides(dtype):
    """Both ranks of every pair post irecv first, then isend: no rank waits for another."""
    rank, size, next_rank, prev_rank = neighbours()
    n = 1 << 20 if dtype == torch.float32 else 33  # 4 MiB: more than any socket buffer
    received = torch.empty(n, dtype=dtype)
    receive = dist.irecv(received, src=prev_rank)
    send = dist.isend(payload(rank, n, dtype=dtype), dst=next_rank)
    receive.wait()
    send.wait()
    assert torch.equal(received, payload(prev_rank, n, dtype=dtype))


def test_tags_are_matched_not_ordered():
    rank, size, next_rank, prev_rank = neighbours()
    sends = [dist.isend(payload(rank, tag=tag), dst=next_rank, tag=tag) for tag in (1, 2, 3)]
    for tag in (3, 1, 2):  # the other order than sent
        received = torch.empty(5)
        dist.recv(received, src=prev_rank, tag=tag)
        assert torch.equal(received, payload(prev_rank, tag=tag)), tag
    for work in sends:
        work.wait()
    # Messages with one tag between one pair arrive in the order they were sent.
    sends = [dist.isend(payload(rank, tag=k), dst=next_rank, tag=7) for k in range(4)]
    for k in range(4):
        received = torch.empty(5)
        dist.recv(received, src=prev_rank, tag=7)
        assert torch.equal(received, payload(prev_rank, tag=k))
    for work in sends:
        work.wait()


def test_recv_from_any_source():
    rank, size = dist.get_rank(), dist.get_world_size()
    if rank == 0:
        sources = []
        for _ in range(size - 1):
            received = torch.empty(5)
            source = dist.recv(received)  # recvAnysource: torch returns the sender
            assert torch.equal(received, payload(source)), source
            sources.append(source)
        assert sorted(sources) == list(range(1, size))
        work = dist.irecv(torch.empty(5), tag=1)  # the Work says who sent, too
        work.wait()
        assert work._source_rank() == size - 1
    else:
        dist.send(payload(rank), dst=0)
        if rank == size - 1:
            dist.send(payload(rank, tag=1), dst=0, tag=1)
    dist.barrier()


def test_batch_isend_irecv_ring():
    rank, size, next_rank, prev_rank = neighbours()
    from_prev, from_next = torch.empty(6), torch.empty(6)
    ops = [dist.P2POp(dist.irecv, from_prev, prev_rank),
           dist.P2POp(dist.irecv, from_next, next_rank),
           dist.P2POp(dist.isend, payload(rank, 6, tag=1), next_rank),
           dist.P2POp(dist.isend, payload(rank, 6, tag=2), prev_rank)]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    if size == 2:  # prev and next are the same rank: its two messages arrive in send order
        assert torch.equal(from_prev, payload(next_rank, 6, tag=1))
        assert torch.equal(from_next, payload(next_rank, 6, tag=2))
    else:
        assert torch.equal(from_prev, payload(prev_rank, 6, tag=1))
        assert torch.equal(from_next, payload(next_rank, 6, tag=2))


def stage_function(stage):
    torch.manual_seed(100 + stage)
    layer = torch.nn.Linear(8, 8)
    return lambda x: torch.tanh(layer(x)).detach()


def test_pipeline_of_stages():
    """Stage s computes f_s on what stage s-1 sent and passes it on; in every step a middle
    stage sends the previous micro-batch on while it receives the next (batch_isend_irecv)."""
    rank, size = dist.get_rank(), dist.get_world_size()
    stages = [stage_function(s) for s in range(size)]
    micro_batches = [torch.randn(4, 8, generator=torch.Generator().manual_seed(m))
                     for m in range(5)]
    outputs = []
    outgoing = None
    for step in range(len(micro_batches) + 1):
        ops, incoming = [], None
        if outgoing is not None and rank < size - 1:
            ops.append(dist.P2POp(dist.isend, outgoing, rank + 1))
        if rank > 0 and step < len(micro_batches):
            incoming = torch.empty(4, 8)
            ops.append(dist.P2POp(dist.irecv, incoming, rank - 1))
        for work in dist.batch_isend_irecv(ops) if ops else []:
            work.wait()
        outgoing = None
        if step < len(micro_batches):
            x = micro_batches[step] if rank == 0 else incoming
            outgoing = stages[rank](x)
            if rank == size - 1:
                outputs.append(outgoing)
    if rank == size - 1:
        for m, output in enumerate(outputs):
            expected = micro_batches[m]
            for f in stages:
                expected = f(expected)
            torch.testing.assert_close(output, expected)
        assert len(outputs) == len(micro_batches)


def test_transfers_beside_collectives():
    rank, size, next_rank, prev_rank = neighbours()
    received = torch.empty(5)
    receive = dist.irecv(received, src=prev_rank, tag=5)
    total = torch.ones(3)
    dist.all_reduce(total)  # runs while the receive is pending
    send = dist.isend(payload(rank, tag=5), dst=next_rank, tag=5)
    receive.wait()
    send.wait()
    assert torch.equal(received, payload(prev_rank, tag=5))
    assert torch.equal(total, torch.full((3,), float(size)))


def test_short_receive_fails_and_the_message_waits():
    rank, size, next_rank, prev_rank = neighbours()
    send = dist.isend(payload(rank, 8), dst=next_rank, tag=9)
    with pytest.raises(RuntimeError, match="8|32") as failure:
        dist.recv(torch.empty(2), src=prev_rank, tag=9)
    assert "rank %d" % rank in str(failure.value)
    received = torch.empty(8)
    dist.recv(received, src=prev_rank, tag=9)  # the message is still there, whole
    assert torch.equal(received, payload(prev_rank, 8))
    send.wait()


def test_bad_arguments_are_refused_at_once():
    rank, size = dist.get_rank(), dist.get_world_size()
    with pytest.raises(RuntimeError, match="not contiguous"):
        dist.isend(torch.zeros(4, 4).t(), dst=(rank + 1) % size)
    with pytest.raises(RuntimeError, match="negative"):
        dist.isend(torch.zeros(1), dst=(rank + 1) % size, tag=-3)


def test_send_recv_in_a_sub_group():
    rank, size = dist.get_rank(), dist.get_world_size()
    members = [0, size - 1]
    group = dist.new_group(members)
    if rank == 0:
        dist.send(payload(0), dst=size - 1, group=group)  # global ranks, as torch takes them
    elif rank == size - 1:
        received = torch.empty(5)
        dist.recv(received, src=0, group=group)
        assert torch.equal(received, payload(0))
    dist.barrier()


def test_wait_with_a_timeout_names_the_transfer():
    rank, size, next_rank, prev_rank = neighbours()
    pending = dist.irecv(torch.empty(3), src=next_rank, tag=99)  # nobody sends tag 99
    with pytest.raises(RuntimeError, match=r"recv of Float\[3\] from rank %d \(tag 99\): not "
                                           r"finished after 200 ms" % next_rank):
        pending.wait(datetime.timedelta(milliseconds=200))
    assert not pending.is_completed()
    # A rank that finished its wait first must not leave (the module's group is destroyed next)
    # while its neighbour still waits: that receive would fail with "rank N has left" instead.
    dist.barrier()
