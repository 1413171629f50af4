"""Errors on every rank, shutdown and re-init, Python threads under load."""

import signal
import threading
import time

import pytest
import torch

import ringfuse.torch as hvd
from ringfuse import _core


# allreduce_async_ by name with the default op is DistributedOptimizer's path, which skips
# pybind11's dispatcher (_core.allreduce_average): the same errors and life cycle as the rest.
def start_allreduce(tensor, name, in_place, **kwargs):
    if in_place:
        return hvd.allreduce_async_(tensor, name=name)
    return hvd.allreduce_async(tensor, name=name, **kwargs)


@pytest.mark.parametrize("in_place", [False, True], ids=["new tensor", "in place"])
def test_mismatched_shapes_fail_every_rank_with_the_tensor_name(in_place):
    shape = (3 + hvd.rank(),)
    with pytest.raises(hvd.HorovodInternalError) as failure:
        hvd.synchronize(start_allreduce(torch.ones(shape), "grad.mismatch", in_place))
    message = str(failure.value)
    assert "grad.mismatch" in message, message
    assert "rank %d" % hvd.rank() in message, message
    # The engine goes on: the next collective works.
    assert torch.equal(hvd.allreduce(torch.ones(2), op=hvd.Sum), torch.full((2,), float(hvd.size())))


def test_mismatched_dtypes_fail_every_rank():
    dtype = torch.float32 if hvd.rank() == 0 else torch.float64
    with pytest.raises(hvd.HorovodInternalError, match="dtype.mismatch"):
        hvd.allreduce(torch.ones(4, dtype=dtype), name="dtype.mismatch")


def test_bad_root_is_refused_before_anything_is_enqueued():
    with pytest.raises(ValueError, match="root"):
        hvd.broadcast(torch.ones(2), root_rank=hvd.size())
    with pytest.raises(ValueError, match="root_rank"):
        hvd.broadcast(torch.ones(2), root_rank="0")


def test_refused_with_clear_errors_on_every_rank():
    with pytest.raises(ValueError, match="Adasum"):
        hvd.allreduce(torch.ones(2), op=hvd.Adasum)
    with pytest.raises(ValueError, match="bool tensor has no Average"):
        hvd.allreduce(torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="do not apply to a bool"):
        hvd.allreduce(torch.ones(2, dtype=torch.bool), op=hvd.Sum, prescale_factor=2.0)
    with pytest.raises(TypeError, match="cannot be reduced"):
        hvd.allreduce(torch.ones(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="is not registered"):
        hvd.allreduce(torch.ones(2), process_set=hvd.ProcessSet([0]))
    with pytest.raises(ValueError, match="distinct ranks of the world"):
        hvd.add_process_set([0, hvd.size()])
    with pytest.raises(ValueError, match="splits add up"):
        hvd.alltoall(torch.ones(2), splits=[3] + [0] * (hvd.size() - 1))
    with pytest.raises(ValueError, match="divide"):
        hvd.alltoall(torch.ones(hvd.size() + 1))
    # Nothing above was enqueued: the ranks still agree.
    assert torch.equal(hvd.allreduce(torch.ones(1), op=hvd.Sum), torch.full((1,), float(hvd.size())))


def test_library_errors_carry_kind_and_rank():
    with pytest.raises(hvd.HorovodInternalError) as failure:
        hvd.allgather(torch.ones(2, 1 + hvd.rank()), name="gather.mismatch")
    error = failure.value
    assert error.kind == "invalid_argument" and error.rank == hvd.rank(), vars(error)
    for r in range(hvd.size()):  # the message says what each rank sent
        assert "rank %d: f32[2,%d] allgather" % (r, r + 1) in str(error), str(error)
    assert isinstance(error.__cause__, _core.RingfuseError)


def test_shutdown_then_init_again():
    hvd.shutdown()
    assert not hvd.is_initialized()
    with pytest.raises(ValueError, match="not been initialized"):
        hvd.rank()
    hvd.init()
    hvd.init()  # idempotent
    assert hvd.is_initialized()
    assert torch.equal(hvd.allreduce(torch.ones(3), op=hvd.Sum),
                       torch.full((3,), float(hvd.size())))


def test_a_rank_that_shut_down_is_named_at_once_by_add_process_set():
    """A rank that shuts down in a program that goes on will never add a set: the others say so
    within a second instead of waiting out the connect timeout (60 s) for it."""
    if hvd.size() < 2:
        pytest.skip("needs 2 ranks")
    last = hvd.size() - 1
    if hvd.rank() == last:
        hvd.shutdown()
    else:
        started = time.monotonic()
        with pytest.raises(hvd.HorovodInternalError,
                           match=r"rank %d shut Ringfuse down \(destroyed its Context" % last):
            hvd.add_process_set([0, last])
        assert time.monotonic() - started < 10
        hvd.shutdown()
    # Initialised again, the world does not take that for a rank that shut down.
    hvd.init()
    subset = hvd.add_process_set([0, last])
    if subset.included():
        assert torch.equal(hvd.allreduce(torch.ones(2), op=hvd.Sum, process_set=subset),
                           torch.full((2,), 2.0))
    assert hvd.remove_process_set(subset)


@pytest.mark.parametrize("in_place", [False, True], ids=["new tensor", "in place"])
def test_shutdown_with_pending_collectives_fails_them(in_place):
    # The Context's barrier (not the engine's) keeps the others from shutting down before rank
    # 0 enqueued: a peer that already left would (rightly) make the enqueue itself fail.
    if hvd.rank() == 0:
        # Only rank 0 enqueues: the collective can never complete; shutdown must end it.
        handle = start_allreduce(torch.ones(4), "never.matched", in_place)
        hvd.mpi_ops._session.context_barrier()
        hvd.shutdown()
        with pytest.raises(hvd.HorovodInternalError, match="shut"):
            hvd.synchronize(handle)
        with pytest.raises(ValueError, match="already synchronized"):
            hvd.synchronize(handle)
    else:
        hvd.mpi_ops._session.context_barrier()
        hvd.shutdown()
    hvd.init()
    hvd.barrier()


def test_python_threads_under_load():
    """Several Python threads enqueue and wait at once (waits release the GIL) while the main
    thread polls; every result is right."""
    errors = []
    results = {}
    # This engine matches collectives in the order each rank enqueues them, so the threads
    # take turns to enqueue (in the same order on every rank), then all wait at once.
    turn = [0]
    turns = threading.Condition()

    def worker(index):
        try:
            with turns:
                turns.wait_for(lambda: turn[0] == index)
                handles = [hvd.allreduce_async(torch.full((64,), float(index + i)), op=hvd.Sum,
                                               name="thread.%d.%d" % (index, i))
                           for i in range(50)]
                turn[0] += 1
                turns.notify_all()
            results[index] = [hvd.synchronize(h) for h in handles]
        except Exception as e:  # reported below, on the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert sorted(results) == [0, 1, 2, 3]
    for index, outs in results.items():
        for i, out in enumerate(outs):
            assert torch.all(out == (index + i) * hvd.size())


def test_waiting_thread_does_not_block_other_python_threads():
    """While one thread waits in synchronize() (GIL released), another thread keeps running
    Python code and finishes its own collective."""
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    if hvd.rank() == 0:
        import time
        time.sleep(0.3)  # the other ranks wait for rank 0 meanwhile
    out = hvd.allreduce(torch.ones(2), op=hvd.Sum, name="slow.rank0")
    stop.set()
    t.join()
    assert torch.all(out == hvd.size())
    assert len(ticks) > 10


@pytest.mark.parametrize("in_place", [False, True], ids=["new tensor", "in place"])
def test_a_signal_interrupts_a_wait_and_the_handle_stays_usable(in_place):
    """Waiting releases the GIL but still runs Python's signal handlers (Ctrl-C works); the
    interrupted handle can be synchronized again."""
    if hvd.rank() == 0:
        def expire(signum, frame):
            raise TimeoutError("alarm")
        previous = signal.signal(signal.SIGALRM, expire)
        handle = start_allreduce(torch.full((2,), float(hvd.size())), "late.match", in_place,
                                 op=hvd.Average)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        try:
            with pytest.raises(TimeoutError, match="alarm"):
                hvd.synchronize(handle)  # the others enqueue only after a second
        finally:
            signal.signal(signal.SIGALRM, previous)
        out = hvd.synchronize(handle)
    else:
        time.sleep(1.0)
        out = hvd.allreduce(torch.full((2,), float(hvd.size())), name="late.match")
    assert torch.equal(out, torch.full((2,), float(hvd.size())))


def test_importing_ringfuse_torch_registers_the_torch_distributed_backend():
    # In a fresh interpreter: this one may have imported ringfuse.distributed already.
    import subprocess
    import sys

    check = ("import torch.distributed as dist, ringfuse.torch; "
             "assert 'RINGFUSE' in dist.Backend._plugins, dist.Backend._plugins")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_horovods_elastic_training_is_refused_saying_what_to_do():
    with pytest.raises(AttributeError, match="no elastic training .*restart it from a checkpoint"):
        hvd.elastic.run  # noqa: B018  (the attribute access is the test)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_function'"):
        hvd.no_such_function  # noqa: B018
