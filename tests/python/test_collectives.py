"""ringfuse.torch's collectives against references computed here from every rank's data."""

import pytest
import torch

import ringfuse.torch as hvd
from conftest import rank_data

# bool reduces too, as logic (test_engine_features.py).
REDUCIBLE = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
             torch.uint8, torch.int16, torch.int32, torch.int64]
# Moved by broadcast/allgather/alltoall: complex64 as bytes, the others in their own dtype.
MOVABLE = REDUCIBLE + [torch.bool, torch.complex64]
OPS = {hvd.Sum: "sum", hvd.Average: "avg", hvd.Min: "min", hvd.Max: "max",
       hvd.Product: "prod"}
SHAPES = [(), (1,), (17,), (3, 5), (2, 3, 4)]


def everyone(shape, dtype, **kw):
    return [rank_data(shape, dtype, r, **kw) for r in range(hvd.size())]


def reference(tensors, op):
    stacked = torch.stack([t.double() for t in tensors])
    dtype = tensors[0].dtype
    if op == hvd.Sum:
        out = stacked.sum(0)
    elif op == hvd.Average:
        out = stacked.sum(0)
        out = out / len(tensors) if dtype.is_floating_point else \
            torch.div(out, len(tensors), rounding_mode="trunc")
    elif op == hvd.Min:
        out = stacked.min(0).values
    elif op == hvd.Max:
        out = stacked.max(0).values
    else:
        out = stacked.prod(0)
    return out.to(dtype)


def tolerance(dtype):
    return {torch.float16: 1e-2, torch.bfloat16: 5e-2}.get(dtype, 1e-6)


def assert_close(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if expected.dtype.is_floating_point:
        tol = tolerance(expected.dtype)
        torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)
    else:
        assert torch.equal(actual, expected), (actual, expected)


@pytest.mark.parametrize("dtype", REDUCIBLE, ids=str)
@pytest.mark.parametrize("op", list(OPS), ids=lambda o: OPS[o])
def test_allreduce_every_dtype_and_op(dtype, op):
    for shape in SHAPES:
        mine = everyone(shape, dtype)
        expected = reference(mine, op)
        source = mine[hvd.rank()].clone()
        out = hvd.allreduce(source, op=op)
        assert_close(out, expected)
        assert torch.equal(source, mine[hvd.rank()]), "allreduce changed its input"
        inplace = mine[hvd.rank()].clone()
        assert hvd.allreduce_(inplace, op=op) is inplace
        assert_close(inplace, expected)


def test_allreduce_scaling_and_deprecated_average():
    mine = everyone((10,), torch.float32)
    total = reference(mine, hvd.Sum)
    out = hvd.allreduce(mine[hvd.rank()], op=hvd.Sum, prescale_factor=0.5, postscale_factor=3.0)
    assert_close(out, total * 1.5)
    with pytest.warns(DeprecationWarning):
        avg = hvd.allreduce(mine[hvd.rank()], average=True)
    assert_close(avg, total / hvd.size())


def test_allreduce_async_handles_poll_and_many_in_flight():
    tensors = [torch.full((i + 1,), float(hvd.rank() + i)) for i in range(200)]
    handles = [hvd.allreduce_async(t, op=hvd.Sum, name="many.%d" % i)
               for i, t in enumerate(tensors)]
    for i, h in enumerate(handles):
        out = hvd.synchronize(h)
        expected = sum(r + i for r in range(hvd.size()))
        assert torch.all(out == expected)
    with pytest.raises(ValueError):
        hvd.poll(handles[0])  # already synchronized
    h = hvd.allreduce_async_(torch.ones(3), name="polled")
    while not hvd.poll(h):
        pass
    assert torch.all(hvd.synchronize(h) == 1)


def test_named_in_place_average_is_what_the_optimizer_sends():
    """allreduce_async_ by name with the default op (Average), as DistributedOptimizer sends
    every gradient (the path without pybind11's dispatcher): the caller's own tensor comes
    back averaged, in any order of synchronize, polls work, scaling applies, and a handle is
    forgotten once synchronized."""
    size, mine = hvd.size(), float(hvd.rank() + 1)
    total = sum(range(1, size + 1))
    tensors = {dtype: torch.full((5,), mine, dtype=dtype)
               for dtype in (torch.float32, torch.float64, torch.float16, torch.int32)}
    handles = {dtype: hvd.allreduce_async_(t, name="opt.%s" % dtype)
               for dtype, t in tensors.items()}
    parameter = torch.nn.Parameter(torch.full((3,), mine))
    parameter_handle = hvd.allreduce_async_(parameter, name="opt.parameter")
    scaled = torch.full((4,), mine)
    scaled_handle = hvd.allreduce_async_(scaled, name="opt.scaled", prescale_factor=4,
                                         postscale_factor=0.5)
    while not hvd.poll(scaled_handle):
        pass
    for dtype in reversed(list(handles)):
        out = hvd.synchronize(handles[dtype])
        assert out is tensors[dtype]
        expected = total / size if dtype.is_floating_point else total // size
        assert torch.equal(out, torch.full((5,), expected, dtype=dtype)), (dtype, out)
    assert hvd.synchronize(parameter_handle) is parameter
    assert torch.equal(parameter.data, torch.full((3,), total / size))
    assert hvd.synchronize(scaled_handle) is scaled
    assert torch.equal(scaled, torch.full((4,), 2.0 * total / size))
    with pytest.raises(ValueError, match="already synchronized"):
        hvd.synchronize(scaled_handle)
    with pytest.raises(ValueError, match="already synchronized"):
        hvd.poll(handles[torch.float32])


def test_in_place_collectives_write_the_callers_memory():
    """No copies: an in-place allreduce of a slice changes the tensor it is a view of."""
    base = torch.zeros(8)
    window = base[2:5]
    window.fill_(hvd.rank() + 1.0)
    hvd.allreduce_(window, op=hvd.Sum)
    expected = torch.zeros(8)
    expected[2:5] = sum(r + 1.0 for r in range(hvd.size()))
    assert torch.equal(base, expected)


def test_allreduce_noncontiguous_in_place():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * (hvd.rank() + 1)
    view = base.t()
    assert not view.is_contiguous()
    hvd.allreduce_(view, op=hvd.Sum)
    factor = sum(r + 1 for r in range(hvd.size()))
    assert torch.equal(base, torch.arange(12, dtype=torch.float32).reshape(3, 4) * factor)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bfloat16],
                         ids=str)
def test_grouped_allreduce(dtype):
    shapes = [(3,), (2, 2), (), (7,)]
    groups = [everyone(s, dtype) for s in shapes]
    outs = hvd.grouped_allreduce([g[hvd.rank()] for g in groups], op=hvd.Sum)
    for out, g in zip(outs, groups):
        assert_close(out, reference(g, hvd.Sum))
    inplace = [g[hvd.rank()].clone() for g in groups]
    hvd.grouped_allreduce_(inplace, op=hvd.Max)
    for out, g in zip(inplace, groups):
        assert_close(out, reference(g, hvd.Max))


@pytest.mark.parametrize("dtype", MOVABLE, ids=str)
def test_allgather_uneven_rows(dtype):
    mine = [rank_data((r + 1, 3), dtype, r) for r in range(hvd.size())]
    out = hvd.allgather(mine[hvd.rank()])
    assert_close(out, torch.cat(mine)) if dtype != torch.complex64 else \
        torch.testing.assert_close(out, torch.cat(mine))
    scalar = hvd.allgather(torch.tensor(float(hvd.rank())))
    assert torch.equal(scalar, torch.arange(hvd.size(), dtype=torch.float32))
    empty = hvd.allgather(torch.zeros((0, 2), dtype=torch.float32))
    assert empty.shape == (0, 2)


def test_grouped_allgather():
    outs = hvd.grouped_allgather([torch.full((2,), hvd.rank()), torch.full((1, 2), 7.0)])
    assert torch.equal(outs[0], torch.arange(hvd.size()).repeat_interleave(2))
    assert outs[1].shape == (hvd.size(), 2)


@pytest.mark.parametrize("dtype", MOVABLE, ids=str)
def test_broadcast_every_root(dtype):
    for root in range(hvd.size()):
        mine = everyone((4, 3), dtype)
        out = hvd.broadcast(mine[hvd.rank()], root_rank=root)
        assert torch.equal(out, mine[root])
        assert torch.equal(mine[hvd.rank()], rank_data((4, 3), dtype, hvd.rank()))
        inplace = mine[hvd.rank()].clone()
        hvd.broadcast_(inplace, root_rank=root)
        assert torch.equal(inplace, mine[root])


@pytest.mark.parametrize("dtype", MOVABLE, ids=str)
def test_alltoall_even(dtype):
    n = hvd.size()
    mine = [rank_data((2 * n, 3), dtype, r) for r in range(n)]
    out = hvd.alltoall(mine[hvd.rank()])
    me = hvd.rank()
    expected = torch.cat([mine[r][2 * me:2 * me + 2] for r in range(n)])
    assert torch.equal(out, expected)
    out, received = hvd.alltoall(mine[hvd.rank()], splits=[2] * n)
    assert torch.equal(out, expected)
    assert received.tolist() == [2] * n


@pytest.mark.parametrize("dtype", REDUCIBLE, ids=str)
@pytest.mark.parametrize("op", [hvd.Sum, hvd.Average], ids=["sum", "avg"])
def test_reducescatter(dtype, op):
    n = hvd.size()
    mine = everyone((2 * n, 3), dtype)
    out = hvd.reducescatter(mine[hvd.rank()], op=op)
    me = hvd.rank()
    assert_close(out, reference(mine, op)[2 * me:2 * me + 2])
    outs = hvd.grouped_reducescatter([mine[hvd.rank()], mine[hvd.rank()][:n]], op=op)
    assert_close(outs[0], out)
    assert_close(outs[1], reference([m[:n] for m in mine], op)[me:me + 1])


def test_barrier_and_automatic_names_agree():
    hvd.barrier()
    # Unnamed calls get names counted per kind; every rank counts the same way.
    hvd.allreduce(torch.ones(1))
    hvd.barrier()


def test_join_every_rank_then_collectives_again():
    if hvd.rank() == 0:
        # Rank 0 has one more allreduce than the others: they take part with zeros.
        out = hvd.allreduce(torch.ones(3), op=hvd.Sum, name="before_join")
        assert torch.equal(out, torch.ones(3))
    # Rank 0's allreduce completes only once every other rank joined: it joins last.
    assert hvd.join() == 0
    assert torch.equal(hvd.allreduce(torch.ones(2), op=hvd.Sum), torch.full((2,), hvd.size() * 1.0))


def test_objects():
    value = {"rank": hvd.rank(), "list": list(range(hvd.rank()))}
    assert hvd.broadcast_object(value, root_rank=hvd.size() - 1) == \
        {"rank": hvd.size() - 1, "list": list(range(hvd.size() - 1))}
    gathered = hvd.allgather_object(value)
    assert gathered == [{"rank": r, "list": list(range(r))} for r in range(hvd.size())]


def test_broadcast_parameters_from_a_state_dict():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(hvd.rank())
    hvd.broadcast_parameters(model.state_dict(), root_rank=1 % hvd.size())
    for p in model.parameters():
        assert torch.all(p == 1 % hvd.size())


def test_topology():
    assert 0 <= hvd.rank() < hvd.size()
    assert hvd.local_size() == hvd.size() and hvd.local_rank() == hvd.rank()
    assert hvd.cross_size() == 1 and hvd.cross_rank() == 0
    assert hvd.is_initialized() and hvd.is_homogeneous()
    assert hvd.mpi_built() is False and hvd.gloo_built() is False
    assert hvd.cuda_built() in (True, False)
