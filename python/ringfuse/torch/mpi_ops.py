"""Horovod's collective operations (``horovod/torch/mpi_ops.py``) over ringfuse's engine.

Every collective is enqueued on the engine (ringfuse._core) and returns an integer handle;
``synchronize(handle)`` waits for it (the GIL is released while waiting) and returns the result.
A failed collective raises ``HorovodInternalError`` with the library's message (rank, tensor,
peers) on every rank that took part.

Collectives are matched by name (Horovod's semantics: ranks may enqueue them in different
orders) unless RINGFUSE_MATCH says otherwise. ``process_set=`` runs a collective among the
members of a process set (``add_process_set``) on that set's engine; ranks (``root_rank``) are
global ranks, as in Horovod.
"""

import atexit
from contextlib import contextmanager
import itertools
import os
import threading
import warnings

import torch

from ringfuse import _core
from ringfuse.exceptions import HorovodInternalError

# Reduction operators, with Horovod's values.
Average = 0
Sum = 1
Adasum = 2
Min = 3
Max = 4
Product = 5

_ENGINE_OPS = {Average: "avg", Sum: "sum", Min: "min", Max: "max", Product: "prod"}
_OP_NAMES = {Average: "Average", Sum: "Sum", Adasum: "Adasum", Min: "Min", Max: "Max",
             Product: "Product"}

# The engine's dtypes: every collective takes them as they are. bool reduces as logic (Sum and
# Max are or, Min and Product and), takes no Average and no scale factor.
_REDUCIBLE = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
              torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool}
# Reducible without a further look at op and scale factors (the per-gradient fast path).
_PLAIN_REDUCIBLE = _REDUCIBLE - {torch.bool}


# ---------------------------------------------------------------------------------------------
# Process sets

class ProcessSet:
    """A subset of the ranks that runs its own collectives (Horovod's ``ProcessSet``): pass it
    as ``process_set=`` once registered (``add_process_set``, or ``init(process_sets=...)``).

    ``ranks`` are global ranks, sorted. ``size()``, ``rank()`` (this rank's position in the
    set, -1 outside it) and ``included()`` answer None until the set is registered."""

    def __init__(self, ranks_or_comm=None):
        if ranks_or_comm is not None and not isinstance(ranks_or_comm, (list, tuple, range)):
            raise NotImplementedError(
                "ProcessSet(%r): ringfuse builds process sets from a list of ranks, not from an "
                "MPI communicator" % (ranks_or_comm,))
        self.ranks = None if ranks_or_comm is None else sorted(int(r) for r in ranks_or_comm)
        self.process_set_id = None

    def _invalidate(self):
        self.process_set_id = None

    def size(self):
        if self.process_set_id is None:
            return None
        return size() if self.process_set_id == 0 else len(self.ranks)

    def rank(self):
        if self.process_set_id is None:
            return None
        if self.process_set_id == 0:
            return rank()
        return self.ranks.index(rank()) if rank() in self.ranks else -1

    def included(self):
        if self.process_set_id is None:
            return None
        return self.process_set_id == 0 or rank() in self.ranks

    def __str__(self):
        if self is global_process_set:
            return "ProcessSet(global)"
        if self.process_set_id is None:
            return "ProcessSet(ranks=%s, not registered)" % self.ranks
        return "ProcessSet(id=%d, ranks=%s)" % (self.process_set_id, self.ranks)

    __repr__ = __str__


global_process_set = ProcessSet()
global_process_set.process_set_id = 0

# The registered sets of this session, by id (the global one is not among them).
_process_sets = {}


def add_process_set(process_set):
    """Registers `process_set` (a ProcessSet or a list of global ranks) and returns it. Every
    rank calls it, members or not, with the same sets in the same order; the set's engine starts
    at once on its members. A set with the same ranks as one registered raises ValueError."""
    session = _require_session()
    if not isinstance(process_set, ProcessSet):
        process_set = ProcessSet(process_set)
    if process_set.ranks is None:
        raise ValueError("add_process_set: give the set's ranks")
    if process_set.process_set_id is not None:
        raise ValueError("add_process_set: %s is registered already" % process_set)
    world = session.size
    bad = [r for r in process_set.ranks if r < 0 or r >= world]
    if bad or not process_set.ranks or len(set(process_set.ranks)) != len(process_set.ranks):
        raise ValueError("add_process_set: ranks %s must be distinct ranks of the world of %d"
                         % (process_set.ranks, world))
    for registered in _process_sets.values():
        if registered.ranks == process_set.ranks:
            raise ValueError("Attempted to add a duplicate process set: %s (as %s)"
                             % (process_set.ranks, registered))
    try:
        process_set.process_set_id = session.add_process_set(process_set.ranks)
    except _core.RingfuseError as e:
        raise _library_error(e) from e
    _process_sets[process_set.process_set_id] = process_set
    return process_set


def remove_process_set(process_set):
    """Unregisters `process_set` (every rank calls it, members or not); collectives still
    pending on it fail. Returns False for the global set or one that is not registered."""
    session = _require_session()
    process_set_id = process_set.process_set_id
    if process_set_id is None or process_set_id == 0 or process_set_id not in _process_sets:
        return False
    _process_sets.pop(process_set_id)
    process_set._invalidate()
    try:
        session.remove_process_set(process_set_id)
    except _core.RingfuseError as e:
        raise _library_error(e) from e
    return True


def _process_set_id(process_set, what):
    """The engine's id of `process_set`; ValueError, naming the set, when it is not registered
    or this rank is not in it (nothing is enqueued then)."""
    if process_set is None or process_set is global_process_set:
        return 0
    if not isinstance(process_set, ProcessSet):
        raise TypeError("%s: process_set must be a ProcessSet, not %s"
                        % (what, type(process_set).__name__))
    process_set_id = process_set.process_set_id
    if process_set_id is None:
        raise ValueError("%s: %s is not registered: pass it to hvd.add_process_set() (on every "
                         "rank) or hvd.init(process_sets=[...]) first" % (what, process_set))
    if process_set_id != 0 and rank() not in process_set.ranks:
        raise ValueError("%s: rank %d is not in process set %d (ranks %s): only its members run "
                         "its collectives" % (what, rank(), process_set_id, process_set.ranks))
    return process_set_id


def _check_process_set(process_set, what):
    _process_set_id(process_set, what)


def _set_of(process_set):
    return global_process_set if process_set is None else process_set


def _set_rank_of(process_set, global_rank, what):
    """The position of global rank `global_rank` in `process_set` (a broadcast's root)."""
    if not isinstance(global_rank, int) or isinstance(global_rank, bool):
        raise ValueError("%s: root_rank must be an int, not %r" % (what, global_rank))
    process_set = _set_of(process_set)
    if process_set.process_set_id == 0:
        return global_rank
    if global_rank not in process_set.ranks:
        raise ValueError("%s: root_rank %d is not in process set %d (ranks %s)"
                         % (what, global_rank, process_set.process_set_id, process_set.ranks))
    return process_set.ranks.index(global_rank)


# ---------------------------------------------------------------------------------------------
# Life cycle and topology

_lock = threading.RLock()
_session = None
_handles = {}
_next_handle = itertools.count(1)
# allreduce_async_'s common case, without pybind11's dispatcher (once per gradient per step)
_allreduce_average = _core.allreduce_average
_wait_average = _core.wait_average
_name_counters = {}


def init(comm=None, process_sets=None):
    """Joins the world described by the environment (ringfuse-run, torchrun or mpirun sets
    it; none: a world of one). Idempotent: a second call while initialised does nothing.

    ``process_sets``: ProcessSets (or lists of ranks) to register at once, the same on every
    rank; "dynamic" (Horovod's spelling for adding them later) is accepted: add_process_set
    always works here."""
    global _session
    if comm is not None:
        raise ValueError("init(comm=...): ringfuse takes its world from the environment "
                         "(ringfuse-run, torchrun, mpirun), not from an MPI communicator")
    static_sets = [] if process_sets in (None, "dynamic") else list(process_sets)
    with _lock:
        if _session is None:
            # Horovod matches collectives by name; an explicit RINGFUSE_MATCH (ringfuse-run
            # --match) wins. The choice goes to this Session only, never into os.environ.
            match = None if os.environ.get("RINGFUSE_MATCH") else "name"
            try:
                _session = _core.Session(match=match)
            except _core.RingfuseError as e:
                raise HorovodInternalError(str(e), *_fields(e)) from e
            _name_counters.clear()
            global_process_set.ranks = list(range(_session.size))
            for process_set in static_sets:
                add_process_set(process_set)


def shutdown():
    """Leaves the world. Collectives still pending fail with "the engine has shut down".
    init() may be called again afterwards."""
    global _session
    with _lock:
        session, _session = _session, None
        for process_set in _process_sets.values():
            process_set._invalidate()
        _process_sets.clear()
    if session is not None:
        session.close()


def is_initialized():
    return _session is not None


def _require_session():
    session = _session
    if session is None:
        raise ValueError("Horovod has not been initialized; use hvd.init().")
    return session


def size():
    return _require_session().size


def rank():
    return _require_session().rank


def local_size():
    return _require_session().local_size


def local_rank():
    return _require_session().local_rank


def cross_size():
    return _require_session().cross_size


def cross_rank():
    return _require_session().cross_rank


def is_homogeneous():
    """True when every host runs the same number of ranks."""
    session = _require_session()
    return session.local_size * session.cross_size == session.size


# What this build has, answered truthfully: the engine always runs on ringfuse's own TCP /
# shared-memory channel, never on Horovod's MPI or Gloo controllers.
def mpi_threads_supported():
    return False


def mpi_built(verbose=False):
    return False


def mpi_enabled():
    return False


def gloo_built(verbose=False):
    return False


def gloo_enabled():
    return False


def nccl_built(verbose=False):
    return bool(_core.with_cuda)


def cuda_built(verbose=False):
    return bool(_core.with_cuda)


def ddl_built(verbose=False):
    return False


def ccl_built(verbose=False):
    return False


def rocm_built(verbose=False):
    return False


def start_timeline(file_path, mark_cycles=False):
    """Starts writing this rank's timeline (Chrome trace / Perfetto JSON) to
    ``file_path`` with the rank inserted before the extension ("t.json" -> "t.<rank>.json"),
    replacing the one being written. ``mark_cycles``: also mark each negotiation cycle."""
    session = _require_session()
    try:
        session.start_timeline(str(file_path), bool(mark_cycles))
    except _core.RingfuseError as e:
        raise ValueError(str(e)) from e


def stop_timeline():
    """Closes the timeline being written (a complete JSON document); nothing if none is."""
    _require_session().stop_timeline()


atexit.register(shutdown)


# ---------------------------------------------------------------------------------------------
# Handles

def _fields(error):
    return (getattr(error, "kind", None), getattr(error, "rank", None),
            getattr(error, "peer", None))


def _library_error(error):
    """The Python exception for a library error raised before anything ran: ValueError for
    invalid arguments (a rank outside a process set, ...), else HorovodInternalError."""
    if getattr(error, "kind", None) == "invalid_argument":
        return ValueError(str(error))
    return HorovodInternalError(str(error), *_fields(error))


def _enqueue(start, finish):
    """Runs `start(session)` (which returns a _core.Handle) and registers `finish(core)`, which
    builds the result once the collective completed. Returns Horovod's integer handle."""
    session = _require_session()
    try:
        core = start(session)
    except _core.RingfuseError as e:
        raise _library_error(e) from e
    handle = next(_next_handle)
    _handles[handle] = (core, finish)
    return handle


def poll(handle):
    """True once the collective of `handle` finished (its result is ready). Never blocks."""
    entry = _handles.get(handle)
    if entry is None:
        raise ValueError("poll: unknown handle %r (already synchronized?)" % (handle,))
    if type(entry) is _core.Session:
        return entry.poll_average(handle)
    return entry[0].poll()


def _call_set_engine(process_set, method):
    """session.<method>(set id): the engine of `process_set` (hold or flush)."""
    set_id = 0 if process_set is global_process_set else \
        _process_set_id(process_set, "synchronize")
    try:
        getattr(_require_session(), method)(set_id)
    except _core.RingfuseError as e:
        raise _library_error(e) from e


@contextmanager
def _handing_over(process_set):
    """Enqueues in the block go to one negotiation round together, then start it (_flush):
    for a bucket of gradients enqueued one by one. Without it, the engine's cycle timer (or
    this thread descheduled in the middle) can split the bucket over two rounds."""
    _call_set_engine(process_set, "hold")
    try:
        yield
    finally:
        _flush(process_set)


def _flush(process_set):
    """Starts the engine's negotiation cycle for what `process_set` has queued now, instead of
    after the queue went quiet (a fifth of RINGFUSE_CYCLE_TIME_MS): for a caller about to
    wait for all of it, as DistributedOptimizer.synchronize() at the end of backward."""
    _call_set_engine(process_set, "flush")


def synchronize(handle):
    """Waits for the collective of `handle` and returns its result; raises
    HorovodInternalError with the library's message if it failed."""
    entry = _handles.get(handle)
    if entry is None:
        raise ValueError("synchronize: unknown handle %r (already synchronized?)" % (handle,))
    if type(entry) is _core.Session:  # allreduce_async_'s common case: the session keeps it
        try:
            result = _wait_average(entry, handle)
        except _core.RingfuseError as e:  # the collective's own error: it is forgotten
            _handles.pop(handle, None)
            raise HorovodInternalError(str(e), *_fields(e)) from e
        _handles.pop(handle, None)
        return result
    core, finish = entry
    try:
        core.wait()
    except _core.RingfuseError as e:
        _handles.pop(handle, None)
        raise HorovodInternalError(str(e), *_fields(e)) from e
    # Anything else (KeyboardInterrupt, an exception from a signal handler) leaves the handle
    # registered: the collective still runs and may be synchronized again.
    _handles.pop(handle, None)
    return finish(core)


def _name(kind, name, process_set_id=0):
    """Horovod names unnamed collectives itself; the members of a process set count their
    calls on it in the same order, so the names agree (each set counts on its own: ranks
    outside a set do not see its calls)."""
    if name is not None:
        return name if type(name) is str else str(name)
    key = (kind, process_set_id)
    count = _name_counters.get(key, 0)
    _name_counters[key] = count + 1
    return "%s.noname.%d" % (kind, count)


# ---------------------------------------------------------------------------------------------
# Tensor plumbing

def _engine_op(op, average, what):
    if average is not None:
        if op is not None:
            raise ValueError("%s: give op or the deprecated average, not both" % what)
        warnings.warn("Parameter `average` has been replaced with `op` and will be removed",
                      DeprecationWarning)
        op = Average if average else Sum
    if op is None:
        op = Average
    if op == Adasum:
        raise ValueError("%s: op=Adasum is not supported by ringfuse; use Average or Sum" % what)
    if op not in _ENGINE_OPS:
        raise ValueError("%s: unknown op %r" % (what, op))
    return op


def _check_reducible(tensor, op, prescale, postscale, what, name):
    dtype = tensor.dtype
    if dtype not in _REDUCIBLE:
        raise TypeError("%s '%s': %s tensors cannot be reduced (supported: %s)"
                        % (what, name, dtype, ", ".join(sorted(str(t) for t in _REDUCIBLE))))
    if dtype == torch.bool:
        if op == Average:
            raise ValueError("%s '%s': a bool tensor has no Average (Sum and Max are logical "
                             "or, Min and Product logical and)" % (what, name))
        if prescale != 1.0 or postscale != 1.0:
            raise ValueError("%s '%s': prescale/postscale factors do not apply to a bool tensor"
                             % (what, name))
    if tensor.is_sparse:
        raise ValueError("%s '%s': sparse tensors go through sparse_allreduce_async or "
                         "DistributedOptimizer(sparse_as_dense=True)" % (what, name))


def _dense_contiguous(tensor):
    return tensor if tensor.is_contiguous() else tensor.contiguous()


def _as_bytes(tensor):
    """A view of `tensor` the engine can move: itself for the engine's dtypes, else its bytes
    (uint8) with dimension 0 kept, for collectives that only move data (broadcast, allgather,
    alltoall). Returns (view, restore) where restore(bytes_result) gives the dtype back."""
    if tensor.dtype in _REDUCIBLE:
        return tensor, lambda t: t
    dtype = tensor.dtype
    rest = tuple(tensor.shape[1:])
    rows = tensor.shape[0] if tensor.dim() > 0 else 1
    row_elements = 1
    for d in rest:
        row_elements *= d
    raw = tensor.reshape(rows, row_elements).view(torch.uint8)

    def restore(out):
        return out.view(dtype).reshape((out.shape[0],) + rest) if tensor.dim() > 0 \
            else out.view(dtype).reshape(tensor.shape)
    return raw, restore


# ---------------------------------------------------------------------------------------------
# allreduce

def _allreduce_async(tensor, output, name, op, prescale_factor, postscale_factor, finish,
                     set_id):
    # The common case (a dtype other than bool, whose op and factors need a look) is checked
    # inline: this runs once per gradient per step.
    if tensor.dtype not in _PLAIN_REDUCIBLE:
        _check_reducible(tensor, op, prescale_factor, postscale_factor, "allreduce", name)
    engine_op = _ENGINE_OPS[op]
    if set_id == 0:
        return _enqueue(lambda s: s.allreduce(name, output, engine_op, float(prescale_factor),
                                              float(postscale_factor)), finish)
    return _enqueue(lambda s: s.allreduce(name, output, engine_op, float(prescale_factor),
                                          float(postscale_factor), process_set=set_id), finish)


def _resolve_op(op, average, what):
    return Average if op is None and average is None else _engine_op(op, average, what)


def allreduce_async(tensor, average=None, name=None, op=None, prescale_factor=1.0,
                    postscale_factor=1.0, process_set=global_process_set):
    """Starts an allreduce into a new tensor; synchronize(handle) returns it."""
    set_id = 0 if process_set is global_process_set else \
        _process_set_id(process_set, "allreduce_async")
    op = _resolve_op(op, average, "allreduce_async")
    name = _name("allreduce", name, set_id)
    output = tensor.detach().clone(memory_format=torch.contiguous_format)
    return _allreduce_async(tensor, output, name, op, prescale_factor, postscale_factor,
                            lambda core: output, set_id)


def allreduce_async_(tensor, average=None, name=None, op=None, prescale_factor=1.0,
                     postscale_factor=1.0, process_set=global_process_set):
    """Starts an in-place allreduce; synchronize(handle) returns `tensor`."""
    if (type(name) is str and (op is None or op == Average) and average is None and
            process_set is global_process_set and tensor.is_contiguous() and
            tensor.dtype in _PLAIN_REDUCIBLE):
        # What DistributedOptimizer's hooks call once per gradient per step, with nothing to
        # resolve: straight to the engine (issue 20: Python's cost per enqueued tensor).
        session = _require_session()
        handle = next(_next_handle)
        try:
            _allreduce_average(session, handle, name, tensor, prescale_factor, postscale_factor)
        except _core.RingfuseError as e:
            raise _library_error(e) from e
        _handles[handle] = session  # which keeps the collective under this handle
        return handle
    set_id = 0 if process_set is global_process_set else \
        _process_set_id(process_set, "allreduce_async_")
    op = _resolve_op(op, average, "allreduce_async_")
    name = _name("allreduce", name, set_id)
    if tensor.is_contiguous():
        # The engine writes through the data pointer: no detach() needed (and none paid for).
        return _allreduce_async(tensor, tensor, name, op, prescale_factor, postscale_factor,
                                lambda core: tensor, set_id)
    buffer = tensor.detach().contiguous()

    def finish(core):
        with torch.no_grad():
            tensor.copy_(buffer)
        return tensor
    return _allreduce_async(tensor, buffer, name, op, prescale_factor, postscale_factor, finish,
                            set_id)


def allreduce_(tensor, average=None, name=None, op=None, prescale_factor=1.0,
               postscale_factor=1.0, process_set=global_process_set):
    return synchronize(allreduce_async_(tensor, average, name, op, prescale_factor,
                                        postscale_factor, process_set))


class HorovodAllreduce(torch.autograd.Function):
    """allreduce with a gradient: the backward pass allreduces the gradient the same way."""

    @staticmethod
    def forward(ctx, tensor, average, name, op, prescale_factor, postscale_factor, process_set):
        ctx.average, ctx.op = average, op
        ctx.prescale_factor, ctx.postscale_factor = prescale_factor, postscale_factor
        ctx.process_set = process_set
        return synchronize(allreduce_async(tensor, average, name, op, prescale_factor,
                                           postscale_factor, process_set))

    @staticmethod
    def backward(ctx, grad_output):
        return (allreduce(grad_output, average=ctx.average, op=ctx.op,
                          prescale_factor=ctx.prescale_factor,
                          postscale_factor=ctx.postscale_factor,
                          process_set=ctx.process_set),
                None, None, None, None, None, None)


def allreduce(tensor, average=None, name=None, compression=None, op=None,
              prescale_factor=1.0, postscale_factor=1.0, process_set=global_process_set):
    """Returns the reduction of `tensor` over every rank (default: the average); `tensor` is
    unchanged. Differentiable."""
    from ringfuse.torch.compression import Compression
    compression = compression or Compression.none
    compressed, ctx = compression.compress(tensor)
    reduced = HorovodAllreduce.apply(compressed, average, name, op, prescale_factor,
                                     postscale_factor, process_set)
    return compression.decompress(reduced, ctx)


# grouped allreduce: one negotiation for all the tensors, completed together.

def _grouped_allreduce_async(tensors, outputs, name, op, prescale_factor, postscale_factor,
                             finish, set_id):
    for i, t in enumerate(tensors):
        _check_reducible(t, op, prescale_factor, postscale_factor, "grouped_allreduce",
                         "%s.%d" % (name, i))
    engine_op = _ENGINE_OPS[op]
    return _enqueue(lambda s: s.grouped_allreduce(name, outputs, engine_op,
                                                  float(prescale_factor),
                                                  float(postscale_factor),
                                                  process_set=set_id), finish)


def grouped_allreduce_async(tensors, average=None, name=None, op=None, prescale_factor=1.0,
                            postscale_factor=1.0, process_set=global_process_set):
    set_id = _process_set_id(process_set, "grouped_allreduce_async")
    op = _engine_op(op, average, "grouped_allreduce_async")
    name = _name("grouped_allreduce", name, set_id)
    outputs = [t.detach().clone(memory_format=torch.contiguous_format) for t in tensors]
    return _grouped_allreduce_async(tensors, outputs, name, op, prescale_factor,
                                    postscale_factor, lambda core: outputs, set_id)


def grouped_allreduce_async_(tensors, average=None, name=None, op=None, prescale_factor=1.0,
                             postscale_factor=1.0, process_set=global_process_set):
    set_id = _process_set_id(process_set, "grouped_allreduce_async_")
    op = _engine_op(op, average, "grouped_allreduce_async_")
    name = _name("grouped_allreduce", name, set_id)
    buffers = [_dense_contiguous(t.detach()) for t in tensors]

    def finish(core):
        with torch.no_grad():
            for t, b in zip(tensors, buffers):
                if b.data_ptr() != t.data_ptr():
                    t.copy_(b)
        return list(tensors)
    return _grouped_allreduce_async(tensors, buffers, name, op, prescale_factor,
                                    postscale_factor, finish, set_id)


def grouped_allreduce_(tensors, average=None, name=None, op=None, prescale_factor=1.0,
                       postscale_factor=1.0, process_set=global_process_set):
    return synchronize(grouped_allreduce_async_(tensors, average, name, op, prescale_factor,
                                                postscale_factor, process_set))


class HorovodGroupedAllreduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, average, name, op, prescale_factor, postscale_factor, process_set,
                *tensors):
        ctx.average, ctx.op = average, op
        ctx.prescale_factor, ctx.postscale_factor = prescale_factor, postscale_factor
        ctx.process_set = process_set
        return tuple(synchronize(grouped_allreduce_async(
            list(tensors), average, name, op, prescale_factor, postscale_factor, process_set)))

    @staticmethod
    def backward(ctx, *grad_outputs):
        grads = grouped_allreduce(list(grad_outputs), average=ctx.average, op=ctx.op,
                                  prescale_factor=ctx.prescale_factor,
                                  postscale_factor=ctx.postscale_factor,
                                  process_set=ctx.process_set)
        return (None, None, None, None, None, None) + tuple(grads)


def grouped_allreduce(tensors, average=None, name=None, compression=None, op=None,
                      prescale_factor=1.0, postscale_factor=1.0,
                      process_set=global_process_set):
    """allreduce of several tensors as one group. Differentiable."""
    from ringfuse.torch.compression import Compression
    compression = compression or Compression.none
    compressed, ctxs = zip(*[compression.compress(t) for t in tensors]) if tensors else ((), ())
    reduced = HorovodGroupedAllreduce.apply(average, name, op, prescale_factor,
                                            postscale_factor, process_set, *compressed)
    return [compression.decompress(t, c) for t, c in zip(reduced, ctxs)]


def sparse_allreduce_async(tensor, name, op, process_set=global_process_set):
    """Allreduce of a sparse tensor through allgathers of its indices and values (Horovod's
    method); synchronize returns a sparse tensor."""
    _check_process_set(process_set, "sparse_allreduce_async")
    if op not in (Average, Sum):
        raise ValueError("sparse_allreduce_async: only Average and Sum are supported")
    t = tensor.coalesce()
    indices_handle = allgather_async(t.indices().t().contiguous(), name="%s.indices" % name,
                                     process_set=process_set)
    values_handle = allgather_async(t.values().contiguous(), name="%s.values" % name,
                                    process_set=process_set)
    world = _set_of(process_set).size()

    def finish(core):
        indices = synchronize(indices_handle).t()
        values = synchronize(values_handle)
        if op == Average:
            values = values / world
        return torch.sparse_coo_tensor(indices, values, t.shape)
    # A handle of its own that completes once both allgathers did.
    return _enqueue(lambda s: _Both(s, indices_handle, values_handle), finish)


class _Both:
    """A _core.Handle look-alike over two Horovod handles."""

    def __init__(self, session, first, second):
        self.first, self.second = first, second

    def poll(self):
        return poll(self.first) and poll(self.second)

    def wait(self):
        pass  # finish() synchronizes both


# ---------------------------------------------------------------------------------------------
# allgather

def allgather_async(tensor, name=None, process_set=global_process_set):
    """Starts concatenating every rank's `tensor` along dimension 0 (which may differ between
    ranks); synchronize(handle) returns the result."""
    set_id = _process_set_id(process_set, "allgather_async")
    name = _name("allgather", name, set_id)
    source = tensor.detach()
    if source.dim() == 0:
        source = source.reshape(1)
    source = _dense_contiguous(source)
    raw, restore = _as_bytes(source)
    return _enqueue(lambda s: s.allgather(name, raw, process_set=set_id),
                    lambda core: restore(core.gathered()))


class HorovodAllgather(torch.autograd.Function):
    """allgather with a gradient: each rank gets the sum of every rank's gradient for its own
    rows."""

    @staticmethod
    def forward(ctx, tensor, name, process_set):
        ctx.dim0 = tensor.shape[0] if tensor.dim() > 0 else 1
        ctx.process_set = process_set
        return synchronize(allgather_async(tensor, name, process_set))

    @staticmethod
    def backward(ctx, grad_output):
        return _allgather_grad(grad_output, ctx.dim0, ctx.process_set), None, None


def _allgather_grad(grad_output, dim0, process_set):
    """This rank's rows of the sum of every rank's gradient of an allgather's output."""
    reduced = allreduce(grad_output, op=Sum, process_set=process_set)
    rows = synchronize(allgather_async(torch.tensor([dim0], dtype=torch.int64),
                                       process_set=process_set))
    offset = int(rows[:_set_of(process_set).rank()].sum())
    return reduced.narrow(0, offset, dim0)


def allgather(tensor, name=None, process_set=global_process_set):
    return HorovodAllgather.apply(tensor, name, process_set)


def grouped_allgather_async(tensors, name=None, process_set=global_process_set):
    """Several allgathers negotiated and completed together (one engine collective, names
    name.0, name.1, ...); synchronize(handle) returns the list of results."""
    set_id = _process_set_id(process_set, "grouped_allgather_async")
    name = _name("grouped_allgather", name, set_id)
    raws, restores = [], []
    for t in tensors:
        source = t.detach()
        if source.dim() == 0:
            source = source.reshape(1)
        raw, restore = _as_bytes(_dense_contiguous(source))
        raws.append(raw)
        restores.append(restore)
    return _enqueue(lambda s: s.grouped_allgather(name, raws, process_set=set_id),
                    lambda core: [r(o) for r, o in zip(restores, core.outputs())])


class HorovodGroupedAllgather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, name, process_set, *tensors):
        ctx.dim0s = [t.shape[0] if t.dim() > 0 else 1 for t in tensors]
        ctx.process_set = process_set
        return tuple(synchronize(grouped_allgather_async(list(tensors), name, process_set)))

    @staticmethod
    def backward(ctx, *grad_outputs):
        return (None, None) + tuple(_allgather_grad(g, d, ctx.process_set)
                                    for g, d in zip(grad_outputs, ctx.dim0s))


def grouped_allgather(tensors, name=None, process_set=global_process_set):
    """allgather of several tensors as one group. Differentiable."""
    return list(HorovodGroupedAllgather.apply(name, process_set, *tensors))


class _All:
    def __init__(self, handles):
        self.handles = handles

    def poll(self):
        return all(poll(h) for h in self.handles)

    def wait(self):
        pass  # finish() synchronizes each


# ---------------------------------------------------------------------------------------------
# broadcast

def _broadcast_async(buffer, name, root_rank, finish, process_set, set_id):
    root = _set_rank_of(process_set, root_rank, "broadcast")
    raw, _ = _as_bytes(buffer)
    return _enqueue(lambda s: s.broadcast(name, raw, root, process_set=set_id), finish)


def broadcast_async(tensor, root_rank, name=None, process_set=global_process_set):
    """Starts copying root_rank's `tensor` into a new tensor on every rank."""
    set_id = _process_set_id(process_set, "broadcast_async")
    name = _name("broadcast", name, set_id)
    output = tensor.detach().clone(memory_format=torch.contiguous_format)
    return _broadcast_async(output, name, root_rank, lambda core: output, process_set, set_id)


def broadcast_async_(tensor, root_rank, name=None, process_set=global_process_set):
    """Starts copying root_rank's `tensor` into `tensor` on every rank."""
    set_id = _process_set_id(process_set, "broadcast_async_")
    name = _name("broadcast", name, set_id)
    buffer = _dense_contiguous(tensor.detach())
    if buffer.data_ptr() == tensor.data_ptr() and tensor.is_contiguous():
        finish = lambda core: tensor
    else:
        def finish(core):
            with torch.no_grad():
                tensor.copy_(buffer)
            return tensor
    return _broadcast_async(buffer, name, root_rank, finish, process_set, set_id)


def broadcast_(tensor, root_rank, name=None, process_set=global_process_set):
    return synchronize(broadcast_async_(tensor, root_rank, name, process_set))


class HorovodBroadcast(torch.autograd.Function):
    """broadcast with Horovod's gradient: the root gets the average of every rank's gradient,
    the other ranks zero."""

    @staticmethod
    def forward(ctx, tensor, root_rank, name, process_set):
        ctx.root_rank, ctx.process_set = root_rank, process_set
        return synchronize(broadcast_async(tensor, root_rank, name, process_set))

    @staticmethod
    def backward(ctx, grad_output):
        reduced = allreduce(grad_output, op=Average, process_set=ctx.process_set)
        if rank() != ctx.root_rank:
            reduced = reduced * 0
        return reduced, None, None, None


def broadcast(tensor, root_rank, name=None, process_set=global_process_set):
    return HorovodBroadcast.apply(tensor, root_rank, name, process_set)


# ---------------------------------------------------------------------------------------------
# alltoall

def _checked_splits(tensor, splits, what, process_set):
    world = _set_of(process_set).size()
    rows = tensor.shape[0] if tensor.dim() > 0 else 0
    if splits is None:
        if tensor.dim() == 0 or rows % world != 0:
            raise ValueError("%s: dimension 0 (%d) must divide by the world size (%d) when no "
                             "splits are given" % (what, rows, world))
        return [rows // world] * world
    split_list = [int(x) for x in (splits.tolist() if torch.is_tensor(splits) else splits)]
    if len(split_list) != world:
        raise ValueError("%s: %d splits given for a world of %d" % (what, len(split_list), world))
    if sum(split_list) != rows:
        raise ValueError("%s: the splits add up to %d, dimension 0 is %d"
                         % (what, sum(split_list), rows))
    if any(x < 0 for x in split_list):
        raise ValueError("%s: negative split in %s" % (what, split_list))
    return split_list


def alltoall_async(tensor, splits=None, name=None, process_set=global_process_set):
    """Starts sending block j of dimension 0 to rank j; synchronize(handle) returns
    (output, received_splits)."""
    set_id = _process_set_id(process_set, "alltoall_async")
    split_list = _checked_splits(tensor, splits, "alltoall", process_set)
    name = _name("alltoall", name, set_id)
    source = _dense_contiguous(tensor.detach())
    raw, restore = _as_bytes(source)
    if splits is None:
        output = torch.empty_like(raw)
        received = torch.tensor(split_list, dtype=torch.int32)
        return _enqueue(lambda s: s.alltoall(name, raw, output, process_set=set_id),
                        lambda core: (restore(output), received))
    # With splits (even or not), what arrives from each rank is known only once it did.
    return _enqueue(lambda s: s.alltoallv(name, raw, split_list, process_set=set_id),
                    lambda core: (restore(core.gathered()),
                                  torch.tensor(core.received_splits(), dtype=torch.int32)))


class HorovodAlltoall(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, splits, name, process_set):
        output, received = synchronize(alltoall_async(tensor, splits, name, process_set))
        ctx.received, ctx.process_set = received, process_set
        if splits is None:
            return output
        ctx.mark_non_differentiable(received)
        return output, received

    @staticmethod
    def backward(ctx, grad_output, *unused):
        grad, _ = synchronize(alltoall_async(grad_output.contiguous(), ctx.received,
                                             process_set=ctx.process_set))
        return grad, None, None, None


def alltoall(tensor, splits=None, name=None, process_set=global_process_set):
    """Block j of dimension 0 goes to rank j. Returns the output, or (output, received_splits)
    when splits were given. Differentiable."""
    return HorovodAlltoall.apply(tensor, splits, name, process_set)


# ---------------------------------------------------------------------------------------------
# reducescatter

def reducescatter_async(tensor, name=None, op=Average, process_set=global_process_set,
                        prescale_factor=1.0, postscale_factor=1.0):
    """Starts reducing `tensor` over every rank; rank r gets block r of dimension 0."""
    set_id = _process_set_id(process_set, "reducescatter_async")
    name = _name("reducescatter", name, set_id)
    source = _reducescatter_source(tensor, name, op, prescale_factor, postscale_factor)
    rows = tensor.shape[0]
    world = _set_of(process_set).size()
    if rows % world != 0:
        # Horovod's uneven blocks: rank r gets rows // size rows, one more when r < rows % size.
        return _enqueue(lambda s: s.reducescatter_uneven(name, source, _ENGINE_OPS[op],
                                                         process_set=set_id),
                        lambda core: _scaled(core.gathered(), postscale_factor))
    output = torch.empty((rows // world,) + tuple(tensor.shape[1:]), dtype=tensor.dtype,
                         device=tensor.device)
    return _enqueue(lambda s: s.reducescatter(name, source, output, _ENGINE_OPS[op],
                                              process_set=set_id),
                    lambda core: _scaled(output, postscale_factor))


def _scaled(tensor, factor):
    """`tensor` times `factor` in its own dtype, integers as the engine scales them: in float64,
    truncated toward zero, saturating at the type's limits."""
    if factor == 1.0:
        return tensor
    if tensor.dtype.is_floating_point:
        return tensor.mul_(factor)
    limits = torch.iinfo(tensor.dtype)
    scaled = (tensor.double() * factor).trunc_().clamp_(limits.min, limits.max)
    return scaled.to(tensor.dtype)


def _reducescatter_source(tensor, name, op, prescale_factor, postscale_factor):
    if op not in (Average, Sum):
        raise ValueError("reducescatter: op must be Average or Sum (as in Horovod), not %s"
                         % _OP_NAMES.get(op, op))
    _check_reducible(tensor, op, prescale_factor, postscale_factor, "reducescatter", name)
    if tensor.dim() == 0:
        raise ValueError("reducescatter '%s': needs at least one dimension" % name)
    source = tensor.detach()
    if prescale_factor != 1.0:
        source = _scaled(source.clone(), prescale_factor)
    return _dense_contiguous(source)


class HorovodReducescatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, name, op, process_set, prescale_factor, postscale_factor):
        ctx.op, ctx.process_set = op, process_set
        ctx.scale = prescale_factor * postscale_factor
        return synchronize(reducescatter_async(tensor, name, op, process_set, prescale_factor,
                                               postscale_factor))

    @staticmethod
    def backward(ctx, grad_output):
        grad = synchronize(allgather_async(grad_output.contiguous(),
                                           process_set=ctx.process_set))
        world = _set_of(ctx.process_set).size()
        scale = ctx.scale / world if ctx.op == Average else ctx.scale
        return grad * scale, None, None, None, None, None


def reducescatter(tensor, name=None, compression=None, op=Average,
                  process_set=global_process_set, prescale_factor=1.0, postscale_factor=1.0):
    from ringfuse.torch.compression import Compression
    compression = compression or Compression.none
    compressed, ctx = compression.compress(tensor)
    out = HorovodReducescatter.apply(compressed, name, op, process_set, prescale_factor,
                                     postscale_factor)
    return compression.decompress(out, ctx)


def grouped_reducescatter_async(tensors, name=None, op=Average,
                                process_set=global_process_set, prescale_factor=1.0,
                                postscale_factor=1.0):
    """Several reducescatters negotiated and completed together (one engine collective, names
    name.0, name.1, ...). When a dimension 0 does not divide by the size (Horovod's uneven
    blocks, which the engine's grouped reducescatter does not take) each tensor is its own
    collective under the same names, completed together."""
    set_id = _process_set_id(process_set, "grouped_reducescatter_async")
    name = _name("grouped_reducescatter", name, set_id)
    world = _set_of(process_set).size()
    sources = [_reducescatter_source(t, "%s.%d" % (name, i), op, prescale_factor,
                                     postscale_factor) for i, t in enumerate(tensors)]
    if not all(t.shape[0] % world == 0 for t in sources):
        handles = [reducescatter_async(t, "%s.%d" % (name, i), op, process_set, prescale_factor,
                                       postscale_factor) for i, t in enumerate(tensors)]
        return _enqueue(lambda s: _All(handles), lambda core: [synchronize(h) for h in handles])
    outputs = [torch.empty((t.shape[0] // world,) + tuple(t.shape[1:]), dtype=t.dtype,
                           device=t.device) for t in sources]
    return _enqueue(lambda s: s.grouped_reducescatter(name, sources, outputs, _ENGINE_OPS[op],
                                                      process_set=set_id),
                    lambda core: [_scaled(o, postscale_factor) for o in outputs])


class HorovodGroupedReducescatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, name, op, process_set, prescale_factor, postscale_factor, *tensors):
        ctx.op, ctx.process_set = op, process_set
        ctx.scale = prescale_factor * postscale_factor
        return tuple(synchronize(grouped_reducescatter_async(
            list(tensors), name, op, process_set, prescale_factor, postscale_factor)))

    @staticmethod
    def backward(ctx, *grad_outputs):
        grads = synchronize(grouped_allgather_async([g.contiguous() for g in grad_outputs],
                                                    process_set=ctx.process_set))
        world = _set_of(ctx.process_set).size()
        scale = ctx.scale / world if ctx.op == Average else ctx.scale
        return (None, None, None, None, None) + tuple(g * scale for g in grads)


def grouped_reducescatter(tensors, name=None, compression=None, op=Average,
                          process_set=global_process_set, prescale_factor=1.0,
                          postscale_factor=1.0):
    """reducescatter of several tensors as one group. Differentiable."""
    from ringfuse.torch.compression import Compression
    compression = compression or Compression.none
    compressed, ctxs = zip(*[compression.compress(t) for t in tensors]) if tensors else ((), ())
    outs = HorovodGroupedReducescatter.apply(name, op, process_set, prescale_factor,
                                             postscale_factor, *compressed)
    return [compression.decompress(o, c) for o, c in zip(outs, ctxs)]


# ---------------------------------------------------------------------------------------------
# barrier and join

def barrier(process_set=global_process_set):
    """Returns once every rank (of `process_set`) called barrier()."""
    set_id = _process_set_id(process_set, "barrier")
    name = _name("barrier", None, set_id)
    synchronize(_enqueue(lambda s: s.barrier(name, process_set=set_id), lambda core: None))


def join(device=-1):
    """Declares that this rank has no more collectives; until every rank joined, it takes part
    in the others' allreduces with zeros (Average still divides by the world size), their
    broadcasts and barriers. Returns, once every rank joined, the rank that joined last."""
    return synchronize(_enqueue(lambda s: s.join(), lambda core: core.last_joined_rank()))
