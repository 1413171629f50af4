"""ringfuse.torch on the engine's newer features (issue #20): int16 and bool, integer scale
factors, the runtime timeline, join's last rank, uneven alltoall and reducescatter, grouped
allgather/reducescatter, and Horovod's matching by name. References are computed here from
every rank's data."""

import json
import os
import subprocess
import sys

import pytest
import torch

import ringfuse.torch as hvd
from ringfuse.torch import mpi_ops
from conftest import rank_data

SHAPES = [(), (1,), (17,), (3, 5)]


def everyone(shape, dtype, **kw):
    return [rank_data(shape, dtype, r, **kw) for r in range(hvd.size())]


def integer_reference(tensors, op, prescale=1.0, postscale=1.0):
    """The engine's integer rule (Horovod's): each factor applied in float64 and truncated
    toward zero, saturating at the dtype's limits; an average divides (truncating) before the
    postscale."""
    dtype = tensors[0].dtype
    limits = torch.iinfo(dtype)

    def scale(t, factor):
        return (t.double() * factor).trunc().clamp(limits.min, limits.max) if factor != 1.0 else t

    total = torch.stack([scale(t.double(), prescale).to(dtype).double() for t in tensors]).sum(0)
    if op == hvd.Average:
        total = torch.div(total, len(tensors), rounding_mode="trunc")
    return scale(total, postscale).to(dtype)


def uneven_rows(rows, rank, world):
    """Horovod's uneven reducescatter: where rank's block starts, and its length."""
    base, extra = divmod(rows, world)
    start = rank * base + min(rank, extra)
    return start, base + (1 if rank < extra else 0)


# --- bool and int16 -------------------------------------------------------------------------

@pytest.mark.parametrize("op", [hvd.Sum, hvd.Max, hvd.Min, hvd.Product],
                         ids=["sum", "max", "min", "prod"])
def test_bool_allreduce_is_logic(op):
    for shape in SHAPES:
        mine = everyone(shape, torch.bool)
        stacked = torch.stack(mine)
        expected = stacked.any(0) if op in (hvd.Sum, hvd.Max) else stacked.all(0)
        out = hvd.allreduce(mine[hvd.rank()], op=op)
        assert out.dtype == torch.bool and torch.equal(out, expected), (out, expected)
        inplace = mine[hvd.rank()].clone()
        hvd.allreduce_(inplace, op=op)
        assert torch.equal(inplace, expected)


def test_bool_and_int16_grouped_allreduce_and_reducescatter():
    n = hvd.size()
    flags = everyone((2 * n + 1,), torch.bool)
    shorts = everyone((2 * n, 3), torch.int16, low=-300, high=300)
    outs = hvd.grouped_allreduce([flags[hvd.rank()], shorts[hvd.rank()]], op=hvd.Max)
    assert torch.equal(outs[0], torch.stack(flags).any(0))
    assert torch.equal(outs[1], torch.stack(shorts).max(0).values)
    me = hvd.rank()
    out = hvd.reducescatter(shorts[me], op=hvd.Sum)
    assert out.dtype == torch.int16
    assert torch.equal(out, torch.stack(shorts).sum(0).to(torch.int16)[2 * me:2 * me + 2])
    out = hvd.reducescatter(flags[me], op=hvd.Sum)
    start, length = uneven_rows(2 * n + 1, me, n)
    assert torch.equal(out, torch.stack(flags).any(0)[start:start + length])


def test_int16_sum_wraps_like_torch():
    mine = [torch.full((4,), 30000, dtype=torch.int16) for _ in range(hvd.size())]
    expected = torch.stack(mine).sum(0, dtype=torch.int16)
    assert torch.equal(hvd.allreduce(mine[hvd.rank()], op=hvd.Sum), expected)


# --- integer scale factors ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32,
                                   torch.int64], ids=str)
@pytest.mark.parametrize("op", [hvd.Sum, hvd.Average], ids=["sum", "avg"])
def test_integer_prescale_postscale_truncate(dtype, op):
    mine = everyone((11,), dtype, low=0, high=9)
    for pre, post in [(1.5, 1.0), (1.0, 2.5), (0.7, 1.9), (1.0, -0.5 if dtype != torch.uint8
                                                           else 0.5)]:
        expected = integer_reference(mine, op, pre, post)
        out = hvd.allreduce(mine[hvd.rank()], op=op, prescale_factor=pre, postscale_factor=post)
        assert out.dtype == dtype and torch.equal(out, expected), (pre, post, out, expected)


def test_integer_scaling_saturates():
    mine = everyone((5,), torch.int8)  # sums of 2 to 3 * size: no wrap before the scale
    for factor, limit in ((100.0, 127), (-100.0, -128)):
        expected = integer_reference(mine, hvd.Sum, 1.0, factor)
        assert torch.all(expected == limit)
        assert torch.equal(hvd.allreduce(mine[hvd.rank()], op=hvd.Sum, postscale_factor=factor),
                           expected)


def test_integer_reducescatter_scaling():
    n = hvd.size()
    mine = everyone((2 * n, 2), torch.int32, low=0, high=9)
    me = hvd.rank()
    for op in (hvd.Sum, hvd.Average):
        out = hvd.reducescatter(mine[me], op=op, prescale_factor=1.5, postscale_factor=2.5)
        expected = integer_reference(mine, op, 1.5, 2.5)[2 * me:2 * me + 2]
        assert out.dtype == torch.int32 and torch.equal(out, expected), (op, out, expected)


# --- timeline -------------------------------------------------------------------------------

def test_start_and_stop_timeline(tmp_path):
    path = tmp_path / "timeline.json"
    hvd.start_timeline(str(path), mark_cycles=True)
    hvd.allreduce(torch.ones(3), op=hvd.Sum, name="timeline.tensor")
    hvd.stop_timeline()
    hvd.stop_timeline()  # nothing being written: nothing to do
    written = tmp_path / ("timeline.%d.json" % hvd.rank())
    text = written.read_text()
    json.loads(text)  # a complete document
    assert "timeline.tensor" in text and "CYCLE_START" in text
    with pytest.raises(ValueError, match="timeline"):
        hvd.start_timeline(str(tmp_path / "no-such-dir" / "t.json"))


class _Environment:
    """Sets variables for a fresh hvd.init() and puts everything back afterwards, the
    conftest's session included."""

    def __init__(self, **variables):
        self.variables = variables

    def __enter__(self):
        hvd.shutdown()
        self.saved = {name: os.environ.get(name) for name in self.variables}
        os.environ.update(self.variables)
        return self

    def __exit__(self, *exc):
        hvd.shutdown()
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        hvd.init()


def test_horovods_timeline_variables_write_the_timeline(tmp_path):
    # A Horovod job's settings keep working: HOROVOD_TIMELINE and HOROVOD_TIMELINE_MARK_CYCLES
    # stand in for RINGFUSE_TIMELINE and RINGFUSE_TIMELINE_MARK_CYCLES.
    path = tmp_path / "horovod.json"
    with _Environment(HOROVOD_TIMELINE=str(path), HOROVOD_TIMELINE_MARK_CYCLES="1",
                      HOROVOD_FUSION_THRESHOLD="0"):
        hvd.init()
        hvd.allreduce(torch.ones(3), op=hvd.Sum, name="horovod.timeline.tensor")
        hvd.shutdown()
    text = (tmp_path / ("horovod.%d.json" % hvd.rank())).read_text()
    json.loads(text)
    assert "horovod.timeline.tensor" in text and "CYCLE_START" in text


def test_a_bad_horovod_variable_fails_init_naming_it():
    with _Environment(HOROVOD_CYCLE_TIME="fast"):
        with pytest.raises(hvd.HorovodInternalError,
                           match=r"HOROVOD_CYCLE_TIME='fast' \(Horovod's name for "
                                 r"RINGFUSE_CYCLE_TIME_MS\)"):
            hvd.init()


# --- join -----------------------------------------------------------------------------------

def test_join_returns_the_last_rank_to_join_as_an_int():
    last = hvd.size() - 1
    if hvd.rank() == last:
        # Completes only once every other rank joined, so this rank joins last.
        hvd.allreduce(torch.ones(2), op=hvd.Sum, name="join.before")
    joined = hvd.join()
    assert type(joined) is int and joined == last


# --- uneven alltoall ------------------------------------------------------------------------

def sent_splits(sender, world):
    """Rows `sender` sends to each rank: uneven, some zero."""
    return [(sender + j) % 3 for j in range(world)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.int16, torch.bool, torch.int64,
                                   torch.complex64], ids=str)
def test_alltoall_uneven_splits(dtype):
    n, me = hvd.size(), hvd.rank()
    mine = [rank_data((sum(sent_splits(r, n)), 2), dtype, r) for r in range(n)]
    expected_rows, expected_received = [], []
    for sender in range(n):
        splits = sent_splits(sender, n)
        offset = sum(splits[:me])
        expected_rows.append(mine[sender][offset:offset + splits[me]])
        expected_received.append(splits[me])
    out, received = hvd.alltoall(mine[me], splits=sent_splits(me, n))
    assert out.dtype == dtype and torch.equal(out, torch.cat(expected_rows))
    assert received.dtype == torch.int32 and received.tolist() == expected_received
    out, received = hvd.synchronize(
        hvd.alltoall_async(mine[me], splits=torch.tensor(sent_splits(me, n))))
    assert torch.equal(out, torch.cat(expected_rows))


def test_alltoall_uneven_gradient_returns_to_the_sender():
    n, me = hvd.size(), hvd.rank()
    splits = sent_splits(me, n)
    x = torch.ones(sum(splits), 2, requires_grad=True)
    out, _ = hvd.alltoall(x, splits=splits)
    (out * (me + 1.0)).sum().backward()
    # Rows sent to rank j got the gradient j + 1 there.
    expected = torch.cat([torch.full((splits[j], 2), j + 1.0) for j in range(n)])
    assert torch.equal(x.grad, expected)


# --- uneven reducescatter, grouped collectives ---------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.int32, torch.int16], ids=str)
@pytest.mark.parametrize("op", [hvd.Sum, hvd.Average], ids=["sum", "avg"])
def test_reducescatter_uneven_rows(dtype, op):
    n, me = hvd.size(), hvd.rank()
    for rows in (2 * n + 1, n - 1, 1):
        mine = everyone((rows, 3), dtype)
        total = torch.stack([t.double() for t in mine]).sum(0)
        if op == hvd.Average:
            total = total / n if dtype.is_floating_point else \
                torch.div(total, n, rounding_mode="trunc")
        start, length = uneven_rows(rows, me, n)
        out = hvd.reducescatter(mine[me], op=op)
        assert out.shape == (length, 3)
        torch.testing.assert_close(out, total.to(dtype)[start:start + length])


def test_grouped_allgather_one_handle_and_gradient():
    n, me = hvd.size(), hvd.rank()
    inputs = [torch.full((me + 1, 2), float(me)), torch.tensor(me),
              torch.full((1,), True), torch.arange(me).to(torch.complex64)]
    handle = hvd.grouped_allgather_async(inputs, name="grouped.gather")
    outs = hvd.synchronize(handle)
    assert torch.equal(outs[0], torch.cat([torch.full((r + 1, 2), float(r)) for r in range(n)]))
    assert torch.equal(outs[1], torch.arange(n))
    assert torch.equal(outs[2], torch.full((n,), True))
    assert torch.equal(outs[3], torch.cat([torch.arange(r).to(torch.complex64)
                                           for r in range(n)]))
    x = torch.ones(me + 1, 2, requires_grad=True)
    y = torch.ones(2, requires_grad=True)
    gx, gy = hvd.grouped_allgather([x, y])
    (gx.sum() * 2 + gy.sum() * 3).backward()
    assert torch.equal(x.grad, torch.full((me + 1, 2), 2.0 * n))
    assert torch.equal(y.grad, torch.full((2,), 3.0 * n))


def test_grouped_reducescatter_even_uneven_and_scaled():
    n, me = hvd.size(), hvd.rank()
    even = everyone((2 * n, 2), torch.float64)
    uneven = everyone((n + 1,), torch.float64)
    for group in ([even], [even, uneven]):
        outs = hvd.grouped_reducescatter([g[me] for g in group], op=hvd.Sum,
                                         prescale_factor=2.0, postscale_factor=0.25)
        assert len(outs) == len(group)
        for out, g in zip(outs, group):
            start, length = uneven_rows(g[0].shape[0], me, n)
            expected = torch.stack(g).sum(0)[start:start + length] * 0.5
            torch.testing.assert_close(out, expected)
    x = torch.ones(2 * n, requires_grad=True)
    (out,) = hvd.grouped_reducescatter([x], op=hvd.Average)
    out.sum().backward()
    assert torch.allclose(x.grad, torch.full((2 * n,), 1.0 / n))


# --- matching by name -----------------------------------------------------------------------

def test_ranks_may_enqueue_in_different_orders():
    n, me = hvd.size(), hvd.rank()
    names = ["order.%d" % i for i in range(4)]
    order = names[me % len(names):] + names[:me % len(names)]
    if me % 2:
        order.reverse()
    handles = {name: hvd.allreduce_async(torch.full((3,), float(me + int(name[-1]))),
                                         op=hvd.Sum, name=name) for name in order}
    gather = hvd.allgather_async(torch.full((1,), me), name="order.gather")
    for name in names:
        i = int(name[-1])
        assert torch.equal(hvd.synchronize(handles[name]),
                           torch.full((3,), float(sum(r + i for r in range(n)))))
    assert torch.equal(hvd.synchronize(gather), torch.arange(n))


def test_a_pending_name_cannot_be_enqueued_twice():
    handle = hvd.allreduce_async(torch.ones(2), op=hvd.Sum, name="twice")
    with pytest.raises(ValueError, match="twice"):
        hvd.allreduce_async(torch.ones(2), op=hvd.Sum, name="twice")
    assert torch.equal(hvd.synchronize(handle), torch.full((2,), float(hvd.size())))


def matching_of_a_fresh_world(extra_env):
    """What a world of one, started in a new interpreter, matches by."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RINGFUSE_", "OMPI_", "PMIX_", "HOROVOD_")) and
           k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                     "MASTER_PORT", "GROUP_RANK", "GROUP_WORLD_SIZE")}
    env.update(extra_env)
    script = ("import os, ringfuse.torch as hvd\n"
              "hvd.init()\n"
              "print('MATCH', hvd.mpi_ops._session.match, os.environ.get('RINGFUSE_MATCH'))\n")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("MATCH ")]
    assert len(lines) == 1, done.stdout
    return lines[0]


def test_explicit_ringfuse_match_wins_and_environ_is_left_alone():
    assert mpi_ops._session.match == "name"
    if hvd.rank() != 0:
        return  # one rank is enough: the worlds started here are worlds of one
    assert matching_of_a_fresh_world({}) == ["name", "None"]
    assert matching_of_a_fresh_world({"RINGFUSE_MATCH": "sequence"}) == \
        ["sequence", "sequence"]
