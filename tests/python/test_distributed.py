"""torch.distributed over the "ringfuse" backend: every collective against references computed
here, the Work/future contract DDP relies on, and what is refused.

Runs under `ringfuse-run -np N` with RINGFUSE_TEST_C10D=1 (CTest: python_distributed_np*); the
plain python_pytest runs skip it, since their ranks already hold a world of their own. The
group bootstraps from a file:// store named after the job, as any init_method would."""

import datetime
import os
import threading
import time

import pytest
import torch

if not os.environ.get("RINGFUSE_TEST_C10D"):
    pytest.skip("run by the python_distributed tests (RINGFUSE_TEST_C10D=1)",
                allow_module_level=True)

import torch.distributed as dist  # noqa: E402
from torch._C._distributed_c10d import BarrierOptions  # noqa: E402

import ringfuse.distributed  # noqa: E402,F401  (registers the backend)
from conftest import c10d_world  # noqa: E402


group = c10d_world("ringfuse", "collectives")


def ranks():
    return dist.get_rank(), dist.get_world_size()


def data(rank, n=10, dtype=torch.float32):
    return (torch.arange(n, dtype=torch.float64) * (rank + 1) + rank).to(dtype)


def test_backend_name():
    assert dist.get_backend().lower() == "ringfuse"


def test_small_collective_waited_at_once_is_right_every_time():
    # A synchronous dist.all_reduce waits at once: the waiting thread runs it (no hand-off).
    rank, size = ranks()
    dist.barrier()
    for _ in range(20):
        tensor = torch.full((1024,), float(rank + 1))
        work = dist.all_reduce(tensor, async_op=True)
        work.wait()
        assert work.is_completed()
        assert work.get_future().done()
        torch.testing.assert_close(tensor, torch.full((1024,), float(size * (size + 1) // 2)))


def test_small_async_collective_returns_before_its_peers_join():
    # As with Gloo, async_op=True returns at once, also for a small collective: rank 0 tells
    # the others (through the store) to start theirs only after its own call returned. Run in
    # the calling thread, rank 0's call would wait for peers that wait for it.
    rank, size = ranks()
    store = dist.distributed_c10d._get_default_store()
    total = float(size * (size + 1) // 2)
    for step in range(5):
        tensor = torch.full((256,), float(rank + 1))
        key = f"small-async-returned-{step}"
        if rank == 0:
            work = dist.all_reduce(tensor, async_op=True)
            store.set(key, "1")
        else:
            store.wait([key], datetime.timedelta(seconds=10))
            work = dist.all_reduce(tensor, async_op=True)
        work.wait()
        torch.testing.assert_close(tensor, torch.full((256,), total))


def test_small_async_collective_nobody_waits_for_still_runs():
    # The worker starts a small collective no one waits on (a future, a poll): here rank 0
    # only polls is_completed() until it is done.
    rank, size = ranks()
    tensor = torch.full((64,), float(rank + 1))
    work = dist.all_reduce(tensor, async_op=True)
    if rank == 0:
        deadline = time.monotonic() + 10
        while not work.is_completed():
            assert time.monotonic() < deadline, "a polled small all_reduce never started"
            time.sleep(0.001)
    work.wait()
    torch.testing.assert_close(tensor, torch.full((64,), float(size * (size + 1) // 2)))


def test_future_callbacks_on_the_worker_keep_its_python_thread_state():
    # torch's callbacks of a collective's future (DDP's communication hooks) run on the group's
    # worker, which keeps one Python thread state for its life (python_thread_state.hpp): a
    # threading.local set by one callback is there for the next on that thread, as on any
    # Python thread. Without it, each callback got a state of its own, made and dropped.
    rank, size = ranks()
    local = threading.local()
    seen = []  # per callback off this thread: (its thread, what the local held there)

    def record(fut):
        if threading.get_ident() != main:
            seen.append((threading.get_ident(), getattr(local, "thread", None)))
            local.thread = threading.get_ident()
        return fut.value()

    main = threading.get_ident()
    for step in range(12):
        tensor = torch.full((1 << 16,), float(rank + 1))  # 256 KiB: the worker runs it
        if rank == step % size:
            time.sleep(0.02)  # the others attach their callbacks before it can finish
        chained = dist.all_reduce(tensor, async_op=True).get_future().then(record)
        torch.testing.assert_close(chained.wait()[0], torch.full((1 << 16,),
                                                                 float(size * (size + 1) // 2)))
    assert len(seen) >= 6, f"only {len(seen)} of 12 callbacks ran on the group's worker"
    met = set()
    for thread, held in seen:
        assert held == (thread if thread in met else None), (
            f"a threading.local set on worker thread {thread} held {held} in its next callback")
        met.add(thread)


def test_order_kept_when_large_and_small_collectives_interleave():
    # A large all-reduce goes to the group's worker; a small one behind it must wait for it,
    # though the lane is free to run small ones inline: the small PRODUCT reads the large SUM's
    # result. Rank 0 waits for the large one first (so its small one runs inline), the others
    # do not (theirs queue): inline or not is each rank's own choice, the order is everyone's.
    rank, size = ranks()
    total = float(size * (size + 1) // 2)
    for _ in range(5):
        large = torch.full((1 << 20,), float(rank + 1))  # 4 MiB
        first = dist.all_reduce(large, async_op=True)
        if rank == 0:
            first.wait()
        head = large[:16]  # a view of the large tensor's memory
        second = dist.all_reduce(head, op=dist.ReduceOp.PRODUCT, async_op=True)
        third = dist.all_reduce(torch.ones(8), async_op=True)
        for work in (first, second, third):
            work.wait()
        torch.testing.assert_close(head, torch.full((16,), total ** size))
        torch.testing.assert_close(large[16:], torch.full(((1 << 20) - 16,), total))
        torch.testing.assert_close(third.result()[0], torch.full((8,), float(size)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int32, torch.int64,
                                   torch.float16, torch.bfloat16])
@pytest.mark.parametrize("op", ["SUM", "MAX", "MIN", "PRODUCT"])
def test_all_reduce(dtype, op):
    rank, size = ranks()
    tensor = data(rank, dtype=dtype)
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    everyone = torch.stack([data(r, dtype=dtype).double() for r in range(size)])
    expected = {"SUM": everyone.sum(0), "MAX": everyone.max(0).values,
                "MIN": everyone.min(0).values, "PRODUCT": everyone.prod(0)}[op]
    torch.testing.assert_close(tensor.double(), expected, rtol=1e-2, atol=0)


def test_all_reduce_non_contiguous_and_future():
    rank, size = ranks()
    tensor = data(rank, 12).view(3, 4).t()  # a transposed view: not contiguous
    work = dist.all_reduce(tensor, async_op=True)
    chained = work.get_future().then(lambda fut: fut.value()[0] * 2)
    work.wait()
    expected = sum(data(r, 12) for r in range(size)).view(3, 4).t()
    torch.testing.assert_close(tensor, expected)
    torch.testing.assert_close(chained.wait(), expected * 2)


def test_process_group_allreduce_takes_torchs_three_forms():
    # The group binds ProcessGroup.allreduce itself (no operator dispatch): the forms torch's
    # binding takes must all still work, each returning a torch Work that holds the result.
    rank, size = ranks()
    pg = dist.distributed_c10d._get_default_group()
    total = float(size * (size + 1) // 2)
    opts = dist.AllreduceOptions()
    opts.reduceOp = dist.ReduceOp.MAX
    calls = [
        (lambda t: pg.allreduce([t]), total),                          # tensors, default opts
        (lambda t: pg.allreduce([t], opts), float(size)),              # tensors, opts
        (lambda t: pg.allreduce([t], dist.ReduceOp.MIN), 1.0),         # tensors, op
        (lambda t: pg.allreduce([t], op=dist.ReduceOp.PRODUCT), float(
            torch.arange(1, size + 1).prod())),                        # tensors, op=
        (lambda t: pg.allreduce(t), total),                            # one tensor, default op
        (lambda t: pg.allreduce(t, dist.ReduceOp.MAX), float(size)),   # one tensor, op
    ]
    for call, expected in calls:
        tensor = torch.full((5,), float(rank + 1))
        work = call(tensor)
        assert isinstance(work, dist.Work)
        work.wait()
        torch.testing.assert_close(tensor, torch.full((5,), expected))
        torch.testing.assert_close(work.result()[0], torch.full((5,), expected))
    with pytest.raises(TypeError):
        pg.allreduce("not a tensor")


def test_the_profiler_sees_all_reduce_as_torchs_dispatch_records_it():
    # The group's allreduce binding skips c10d's operator dispatch, which is what records the
    # c10d::allreduce_ event torch.profiler shows: the binding must record it itself.
    _, size = ranks()
    tensor = torch.ones(8)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        dist.all_reduce(tensor)
    names = [event.name for event in profile.events()]
    assert "c10d::allreduce_" in names, names
    torch.testing.assert_close(tensor, torch.full((8,), float(size)))


def test_all_reduce_coalesced():
    rank, size = ranks()
    tensors = [data(rank, 3), data(rank, 5)]
    dist.all_reduce_coalesced(tensors)
    torch.testing.assert_close(tensors[0], sum(data(r, 3) for r in range(size)))
    torch.testing.assert_close(tensors[1], sum(data(r, 5) for r in range(size)))


@pytest.mark.parametrize("root", [0, 1])
def test_broadcast(root):
    rank, _ = ranks()
    tensor = data(rank).to(torch.bool) if root else data(rank)
    dist.broadcast(tensor, src=root)
    expected = data(root).to(torch.bool) if root else data(root)
    assert torch.equal(tensor, expected)


def test_all_gather_and_into_tensor():
    rank, size = ranks()
    outputs = [torch.empty(10) for _ in range(size)]
    dist.all_gather(outputs, data(rank))
    for r in range(size):
        assert torch.equal(outputs[r], data(r))
    flat = torch.empty(10 * size)
    dist.all_gather_into_tensor(flat, data(rank))
    assert torch.equal(flat, torch.cat([data(r) for r in range(size)]))


def test_all_gather_coalesced():
    rank, size = ranks()
    inputs = [data(rank, 2, torch.int64), data(rank, 3, torch.int64)]
    outputs = [[torch.empty(2, dtype=torch.int64), torch.empty(3, dtype=torch.int64)]
               for _ in range(size)]
    dist.all_gather_coalesced(outputs, inputs)
    for r in range(size):
        assert torch.equal(outputs[r][0], data(r, 2, torch.int64))
        assert torch.equal(outputs[r][1], data(r, 3, torch.int64))


def test_all_gather_object():
    rank, size = ranks()
    gathered = [None] * size
    dist.all_gather_object(gathered, {"rank": rank})
    assert gathered == [{"rank": r} for r in range(size)]


def test_reduce_scatter_and_tensor():
    rank, size = ranks()
    output = torch.empty(4)
    dist.reduce_scatter(output, [data(rank, 4) + j for j in range(size)])
    torch.testing.assert_close(output, sum(data(r, 4) + rank for r in range(size)))
    output = torch.empty(4)
    dist.reduce_scatter_tensor(output, data(rank, 4 * size))
    expected = sum(data(r, 4 * size) for r in range(size))[4 * rank:4 * rank + 4]
    torch.testing.assert_close(output, expected)


def test_all_to_all_single_uneven():
    rank, size = ranks()
    # Rank r sends j+1 rows to rank j, each row [r, j].
    input_splits = [j + 1 for j in range(size)]
    rows = [torch.tensor([[rank, j]] * (j + 1), dtype=torch.float32) for j in range(size)]
    output_splits = [rank + 1] * size
    output = torch.empty(sum(output_splits), 2)
    dist.all_to_all_single(output, torch.cat(rows), output_splits, input_splits)
    expected = torch.cat([torch.tensor([[r, rank]] * (rank + 1), dtype=torch.float32)
                          for r in range(size)])
    assert torch.equal(output, expected)


def test_all_to_all_list():
    rank, size = ranks()
    inputs = [torch.full((j + 1,), float(rank * 10 + j)) for j in range(size)]
    outputs = [torch.empty(rank + 1) for _ in range(size)]
    dist.all_to_all(outputs, inputs)
    for r in range(size):
        assert torch.equal(outputs[r], torch.full((rank + 1,), float(r * 10 + rank)))


def test_reduce_gather_scatter():
    rank, size = ranks()
    root = size - 1
    tensor = data(rank)
    dist.reduce(tensor, dst=root)
    if rank == root:
        torch.testing.assert_close(tensor, sum(data(r) for r in range(size)))
    else:
        assert torch.equal(tensor, data(rank))  # non-roots keep their input
    gathered = [torch.empty(10) for _ in range(size)] if rank == root else None
    dist.gather(data(rank), gathered, dst=root)
    if rank == root:
        for r in range(size):
            assert torch.equal(gathered[r], data(r))
    output = torch.empty(10)
    dist.scatter(output, [data(r) * 3 for r in range(size)] if rank == root else None, src=root)
    assert torch.equal(output, data(rank) * 3)


def sparse_rows(rank, size):
    """Rank r holds r + 1 rows of a (size + 1) x 2 matrix, row 0 on every rank and its last
    row twice (uncoalesced), so the ranks' nnz differ and their indices overlap."""
    rows = list(range(rank + 1)) + [rank]
    values = torch.tensor([[float(rank + 1), float(i)] for i in range(len(rows))])
    return torch.sparse_coo_tensor(torch.tensor([rows]), values, (size + 1, 2))


def test_sparse_all_reduce_sums_every_rank_rows():
    rank, size = ranks()
    tensor = sparse_rows(rank, size)
    dist.all_reduce(tensor)
    expected = sum(sparse_rows(r, size).to_dense() for r in range(size))
    assert tensor.is_sparse
    torch.testing.assert_close(tensor.to_dense(), expected)


def test_sparse_all_reduce_refuses_other_ops():
    rank, size = ranks()
    with pytest.raises(RuntimeError, match="sparse tensor can only be reduced with SUM"):
        dist.all_reduce(sparse_rows(rank, size), op=dist.ReduceOp.MAX)


def test_barrier_ignores_device_ids_on_cpu():
    dist.barrier()
    # torch's dist.barrier() refuses device_ids for every backend but NCCL before calling the
    # group, so the group is asked directly, as NCCL-minded code paths do.
    options = BarrierOptions()
    options.device_ids = [0]
    dist.distributed_c10d._get_default_group().barrier(options).wait()


def bits(rank, n=64, dtype=torch.int32):
    """Rank `rank`'s bit patterns: every byte value turns up, and ranks differ in every bit."""
    patterns = (torch.arange(n, dtype=torch.int64) * 37 + rank * 101) % 256
    if dtype == torch.bool:
        return patterns % 3 == 0
    return patterns.to(dtype) * (1 if dtype in (torch.int8, torch.uint8) else 257)


BITWISE = {"BAND": torch.bitwise_and, "BOR": torch.bitwise_or, "BXOR": torch.bitwise_xor}


def bitwise_reference(op, values):
    result = values[0].clone()
    for value in values[1:]:
        result = BITWISE[op](result, value)
    return result


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64,
                                   torch.bool])
@pytest.mark.parametrize("op", ["BAND", "BOR", "BXOR"])
def test_all_reduce_bitwise(dtype, op):
    """As Gloo and MPI: bitwise and, or and exclusive or of integer and bool tensors."""
    rank, size = ranks()
    tensor = bits(rank, dtype=dtype)
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    assert torch.equal(tensor, bitwise_reference(op, [bits(r, dtype=dtype) for r in range(size)]))


def test_reduce_and_reduce_scatter_bitwise():
    rank, size = ranks()
    root = size - 1
    tensor = bits(rank)
    dist.reduce(tensor, dst=root, op=dist.ReduceOp.BOR)
    if rank == root:
        assert torch.equal(tensor, bitwise_reference("BOR", [bits(r) for r in range(size)]))
    else:
        assert torch.equal(tensor, bits(rank))
    output = torch.empty(8, dtype=torch.int64)
    dist.reduce_scatter_tensor(output, bits(rank, 8 * size, torch.int64), op=dist.ReduceOp.BXOR)
    everyone = bitwise_reference("BXOR", [bits(r, 8 * size, torch.int64) for r in range(size)])
    assert torch.equal(output, everyone[8 * rank:8 * rank + 8])


def test_bitwise_op_on_floats_is_refused_on_every_rank():
    with pytest.raises(RuntimeError, match="band of f32 is not defined .* integer"):
        dist.all_reduce(torch.ones(2), op=dist.ReduceOp.BAND)
    dist.all_reduce(torch.ones(2))  # the group is still usable


def test_unsupported_op_is_refused():
    # PREMUL_SUM comes with a factor only NCCL's groups take (torch's _make_nccl_premul_sum).
    with pytest.raises(RuntimeError, match="reduce op not supported"):
        dist.all_reduce(torch.ones(2), op=dist._make_nccl_premul_sum(2.0))
    dist.all_reduce(torch.ones(2))  # the group is still usable


# CUDA tensors go to the group's engine, which runs them on its own NCCL communicator (on this
# rank's GPU: cuda:(local rank modulo the visible devices)). Debian's torch is built without
# CUDA, so these run only where torch has CUDA and a GPU is visible.
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"needs a CUDA build of torch and a visible GPU (torch {torch.__version__}, "
           f"built with CUDA {torch.version.cuda})")


def this_rank_gpu():
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


@needs_cuda
@pytest.mark.parametrize("op", ["SUM", "MAX", "AVG"])
def test_cuda_all_reduce(op):
    rank, size = ranks()
    tensor = data(rank).to(this_rank_gpu())
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    everyone = torch.stack([data(r) for r in range(size)])
    expected = {"SUM": everyone.sum(0), "MAX": everyone.max(0).values,
                "AVG": everyone.mean(0)}[op]
    torch.testing.assert_close(tensor.cpu(), expected)


@needs_cuda
def test_cuda_broadcast_and_all_gather():
    rank, size = ranks()
    gpu = this_rank_gpu()
    tensor = data(rank).to(gpu)
    dist.broadcast(tensor, src=size - 1)
    torch.testing.assert_close(tensor.cpu(), data(size - 1))
    gathered = [torch.empty(10, device=gpu) for _ in range(size)]
    dist.all_gather(gathered, data(rank).to(gpu))
    for r, got in enumerate(gathered):
        torch.testing.assert_close(got.cpu(), data(r))
