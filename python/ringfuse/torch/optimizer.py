"""DistributedOptimizer: averages gradients over the ranks as backward produces them
(Horovod's ``horovod/torch/optimizer.py`` semantics)."""

import os
import warnings
from contextlib import contextmanager

import torch

from ringfuse.torch import mpi_ops
from ringfuse.torch.compression import Compression
from ringfuse.torch.mpi_ops import (Average, Adasum, allreduce_async_, global_process_set,
                                    grouped_allreduce_async_, sparse_allreduce_async,
                                    synchronize)

# DistributedDataParallel's bucket sizes: its first bucket (the last layers' gradients, ready
# first) is small so that communication starts early; the others are bucket_cap_mb.
DEFAULT_BUCKET_CAP_MB = 25.0
_FIRST_BUCKET_BYTES = 1 << 20
# Unlike DDP's, the last bucket is small too: what is still pending once no more than this
# is left to come goes at once, so that after backward only the first layers' gradients
# remain to be all-reduced, not a remainder of up to bucket_cap_mb (resnet18: 0.6 MB instead
# of 16 MB).
_LAST_BUCKET_BYTES = 1 << 20


def _bucket_cap_bytes(bucket_cap_mb):
    """bucket_cap_mb in bytes: the argument, else RINGFUSE_BUCKET_CAP_MB, else DDP's 25."""
    what = "DistributedOptimizer: bucket_cap_mb"
    if bucket_cap_mb is None:
        text = os.environ.get("RINGFUSE_BUCKET_CAP_MB")
        if text is None:
            bucket_cap_mb = DEFAULT_BUCKET_CAP_MB
        else:
            what = "RINGFUSE_BUCKET_CAP_MB"
            try:
                bucket_cap_mb = float(text)
            except ValueError:
                bucket_cap_mb = float("nan")
    if isinstance(bucket_cap_mb, bool) or not bucket_cap_mb >= 0 \
            or bucket_cap_mb == float("inf"):
        raise ValueError("%s must be a number of MiB >= 0 (0: hand each gradient to the engine "
                         "as soon as it is ready), not %r"
                         % (what, os.environ.get("RINGFUSE_BUCKET_CAP_MB")
                            if what == "RINGFUSE_BUCKET_CAP_MB" else bucket_cap_mb))
    return int(bucket_cap_mb * (1 << 20))


class _DistributedOptimizer(torch.optim.Optimizer):
    """Mixed into the wrapped optimizer's class by DistributedOptimizer()."""

    def __init__(self, params, named_parameters, compression, backward_passes_per_step, op,
                 gradient_predivide_factor, groups, sparse_as_dense, process_set,
                 bucket_cap_mb):
        super(self.__class__, self).__init__(params)
        self._compression = compression
        if op == Adasum:
            raise ValueError("DistributedOptimizer: op=Adasum is not supported by ringfuse")
        if gradient_predivide_factor != 1.0 and op != Average:
            raise ValueError("gradient_predivide_factor needs op=Average")
        # Only the members of a process set allreduce over it: fail here, not in backward.
        mpi_ops._check_process_set(process_set, "DistributedOptimizer")
        self.op = op
        self.gradient_predivide_factor = gradient_predivide_factor
        self.sparse_as_dense = sparse_as_dense
        self.process_set = process_set

        all_params = [p for group in self.param_groups for p in group["params"]]
        if named_parameters is not None:
            named_parameters = list(named_parameters)
        else:
            named_parameters = [("allreduce.noname.%s" % i, p) for i, p in enumerate(all_params)]
        if any(not isinstance(p, tuple) for p in named_parameters):
            raise ValueError("named_parameters should be a sequence of tuples (name, parameter), "
                             "usually produced by model.named_parameters().")
        names = [n for n, _ in named_parameters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError("Parameter names in named_parameters must be unique. Found "
                             "duplicates: %s" % ", ".join(duplicates))
        named_ids = {id(p) for _, p in named_parameters}
        unnamed = [p for p in all_params if id(p) not in named_ids]
        if unnamed:
            raise ValueError("named_parameters was specified, but one or more model parameters "
                             "were not named (%d of them)" % len(unnamed))
        self._parameter_names = {p: n for n, p in named_parameters}

        self.backward_passes_per_step = backward_passes_per_step
        self._allreduce_delay = {p: backward_passes_per_step for p in all_params}
        self._handles = {}  # parameter -> (handle or None, compression context)
        self._grad_accs = []
        self._requires_update = set()
        self._synchronized = False
        self._should_synchronize = True

        # Groups: lists of parameters allreduced together once all their gradients are ready.
        self._group_of = {}
        self._groups = []
        if groups is not None:
            if isinstance(groups, int):
                if groups <= 0:
                    raise ValueError("groups must be a positive int or a list of lists")
                trainable = [p for p in all_params if p.requires_grad]
                per = -(-len(trainable) // groups) if trainable else 1
                group_lists = [trainable[i:i + per] for i in range(0, len(trainable), per)]
            else:
                group_lists = [list(g) for g in groups]
            for index, group in enumerate(group_lists):
                self._groups.append(group)
                for p in group:
                    if p in self._group_of:
                        raise ValueError("a parameter appears in two groups")
                    self._group_of[p] = index
        self._group_ready = [set() for _ in self._groups]

        # Gradients ready but not yet handed to the engine, in the order backward produced
        # them: each hand-over costs the engine a negotiation round (a round trip of every
        # rank's engine thread, which takes the core from backward), so they go in buckets.
        self._bucket_cap = _bucket_cap_bytes(bucket_cap_mb)
        self._bucket = []
        self._in_bucket = set()
        self._bucket_bytes = 0
        self._buckets_started = 0
        self._bytes_per_step = sum(p.numel() * p.element_size() for p in all_params
                                   if p.requires_grad and p not in self._group_of)
        self._bytes_this_step = 0

        if mpi_ops._set_of(process_set).size() > 1:
            self._register_hooks()

    def set_backward_passes_per_step(self, passes):
        self.backward_passes_per_step = passes
        for p in self._allreduce_delay:
            self._allreduce_delay[p] = passes

    def _register_hooks(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    self._requires_update.add(p)
                    # The gradient accumulator of p: its hook runs once p.grad is final for
                    # this backward pass.
                    accumulator = p.expand_as(p).grad_fn.next_functions[0][0]
                    accumulator.register_hook(self._make_hook(p))
                    self._grad_accs.append(accumulator)

    def _scale_factors(self):
        if self.op == Average:
            # The engine's Average adds 1/size to the postscale.
            return 1.0 / self.gradient_predivide_factor, self.gradient_predivide_factor
        return 1.0, 1.0

    def _prepared_grad(self, p):
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if p.grad.is_sparse and self.sparse_as_dense:
            p.grad = p.grad.to_dense()
        return p.grad

    def _allreduce_grad_async(self, p):
        name = "allreduce." + self._parameter_names.get(p)
        grad = self._prepared_grad(p)
        if grad.is_sparse:
            return sparse_allreduce_async(grad, name, self.op, self.process_set), None
        compressed, ctx = self._compression.compress(grad)
        prescale, postscale = self._scale_factors()
        handle = allreduce_async_(compressed, name=name, op=self.op, prescale_factor=prescale,
                                  postscale_factor=postscale, process_set=self.process_set)
        return handle, (ctx, compressed)

    def _allreduce_group_async(self, index):
        params = self._groups[index]
        grads = [self._prepared_grad(p) for p in params]
        compressed, ctxs = zip(*[self._compression.compress(g) for g in grads])
        prescale, postscale = self._scale_factors()
        handle = grouped_allreduce_async_(list(compressed), name="grouped_allreduce.%d" % index,
                                          op=self.op, prescale_factor=prescale,
                                          postscale_factor=postscale,
                                          process_set=self.process_set)
        for p, ctx, c in zip(params, ctxs, compressed):
            self._handles[p] = (handle, (ctx, c))
        self._group_ready[index].clear()

    def _add_to_bucket(self, p):
        """Queues p's gradient; hands the bucket to the engine once it holds the bucket's
        bytes (the first bucket of a step 1 MiB at most, as DDP's), or once what is still to
        come fits in a small last bucket."""
        self._bucket.append(p)
        self._in_bucket.add(p)
        size = p.numel() * p.element_size()
        self._bucket_bytes += size
        self._bytes_this_step += size
        cap = min(self._bucket_cap, _FIRST_BUCKET_BYTES) if self._buckets_started == 0 \
            else self._bucket_cap
        to_come = self._bytes_per_step - self._bytes_this_step
        if self._bucket_bytes >= cap or (to_come <= _LAST_BUCKET_BYTES
                                         and self._bucket_bytes >= _LAST_BUCKET_BYTES):
            self._start_bucket()

    def _start_bucket(self):
        # Negotiated in one round, which starts as soon as every gradient of the bucket is
        # enqueued instead of after the engine's queue went quiet.
        with mpi_ops._handing_over(self.process_set):
            self._enqueue_bucket()

    def _enqueue_bucket(self):
        bucket, self._bucket, self._bucket_bytes = self._bucket, [], 0
        self._in_bucket.clear()
        if not bucket:
            return
        for q in bucket:
            self._handles[q] = self._allreduce_grad_async(q)
        self._buckets_started += 1

    def _make_hook(self, p):
        def hook(*unused):
            if p in self._in_bucket or p in self._handles and self._handles[p][0] is not None:
                if self._allreduce_delay[p] <= 0:
                    raise AssertionError(
                        "Gradients were computed more than backward_passes_per_step times "
                        "before call to step(). Increase backward_passes_per_step to "
                        "accumulate gradients locally.")
            self._allreduce_delay[p] -= 1
            if self._allreduce_delay[p] > 0:
                self._handles[p] = (None, None)
                return
            if p in self._group_of:
                index = self._group_of[p]
                self._handles[p] = (None, None)
                self._group_ready[index].add(p)
                if len(self._group_ready[index]) == len(self._groups[index]):
                    self._allreduce_group_async(index)
                return
            if self._bucket_cap == 0 or (p.grad is not None and p.grad.is_sparse
                                         and not self.sparse_as_dense):
                self._handles[p] = self._allreduce_grad_async(p)
                return
            self._handles[p] = (None, None)
            self._add_to_bucket(p)
        return hook

    def synchronize(self):
        """Waits for every gradient's allreduce (starting those backward did not start) and
        writes the averaged gradients into p.grad."""
        if mpi_ops._set_of(self.process_set).size() == 1:
            self._synchronized = True
            return
        # Every gradient not handed over yet goes in one round, which starts once they are
        # enqueued: nothing more will come, so the engine need not wait for its queue to go
        # quiet before the last of them (the first layers') start.
        with mpi_ops._handing_over(self.process_set):
            self._enqueue_bucket()  # the last gradients of backward, first
            self._buckets_started = 0
            self._bytes_this_step = 0
            for p in self._requires_update:
                if p not in self._handles:
                    self._handles[p] = (None, None)
            started_groups = set()
            for p, (handle, _) in list(self._handles.items()):
                if handle is not None:
                    continue
                if p in self._group_of:
                    index = self._group_of[p]
                    if index not in started_groups:
                        started_groups.add(index)
                        self._allreduce_group_async(index)
                else:
                    self._handles[p] = self._allreduce_grad_async(p)
        results = {}
        for p, (handle, ctx) in self._handles.items():
            if handle not in results:
                results[handle] = synchronize(handle)
            if ctx is None:  # sparse: a new sparse tensor
                p.grad = results[handle]
            else:
                compression_ctx, compressed = ctx
                reduced = self._compression.decompress(compressed, compression_ctx)
                if reduced.data_ptr() != p.grad.data_ptr():
                    with torch.no_grad():
                        p.grad.copy_(reduced)
            self._allreduce_delay[p] = self.backward_passes_per_step
        self._handles.clear()
        self._synchronized = True

    @contextmanager
    def skip_synchronize(self):
        """optimizer.step() inside this block does not synchronize (after an explicit
        optimizer.synchronize(), e.g. for gradient clipping)."""
        self._should_synchronize = False
        try:
            yield
        finally:
            self._should_synchronize = True

    def step(self, closure=None):
        if self._should_synchronize:
            if self._synchronized:
                warnings.warn("optimizer.step() called without optimizer.skip_synchronize() "
                              "context after optimizer.synchronize(). This can cause training "
                              "slowdown. You may want to consider using "
                              "optimizer.skip_synchronize() context if you use "
                              "optimizer.synchronize() in your code.")
            self.synchronize()
        self._synchronized = False
        return super(self.__class__, self).step(closure)

    def _local_step(self, closure=None):
        """The wrapped optimizer's step, without any allreduce (broadcast_optimizer_state uses
        it to create the state)."""
        return super(self.__class__, self).step(closure)

    def zero_grad(self, *args, **kwargs):
        if self._handles:
            raise AssertionError("optimizer.zero_grad() was called after loss.backward() but "
                                 "before optimizer.step() or optimizer.synchronize(). This is "
                                 "prohibited as it can cause a race condition.")
        return super(self.__class__, self).zero_grad(*args, **kwargs)


def DistributedOptimizer(optimizer, named_parameters=None, compression=Compression.none,
                         backward_passes_per_step=1, op=Average, gradient_predivide_factor=1.0,
                         num_groups=0, groups=None, sparse_as_dense=False,
                         process_set=global_process_set, bucket_cap_mb=None):
    """Wraps `optimizer` so that step() first averages the gradients over every rank. The
    allreduces start from backward's gradient hooks, overlapping the rest of backward.

    Arguments are Horovod's: ``named_parameters`` (names for the allreduces; usually
    ``model.named_parameters()``), ``compression`` (``Compression.none``/``fp16``),
    ``backward_passes_per_step`` (local accumulation before each allreduce), ``op`` (Average
    or Sum), ``gradient_predivide_factor`` (divide by it before the sum, multiply by
    factor/size after), ``groups`` (int: that many groups; or lists of parameters, each
    allreduced as one group; ``num_groups`` is its deprecated spelling), ``sparse_as_dense``,
    ``process_set`` (average over its members only; built on a member).

    ``bucket_cap_mb`` (ours, DistributedDataParallel's name and meaning): backward's
    gradients are handed to the engine in buckets of about this many MiB, in the order they
    become ready (the first bucket of each step 1 MiB, as DDP's), so that each negotiation
    round carries many of them; the rest go at synchronize(). Default: RINGFUSE_BUCKET_CAP_MB,
    else 25. 0 hands each gradient over as soon as it is ready (Horovod's way), leaving the
    grouping to the engine's cycle (RINGFUSE_CYCLE_TIME_MS). Gradients in ``groups`` and
    sparse ones are not bucketed."""
    if num_groups != 0:
        warnings.warn("num_groups is deprecated; use groups", DeprecationWarning)
        if groups is None:
            groups = num_groups
    cls = type(optimizer.__class__.__name__, (optimizer.__class__,),
               dict(_DistributedOptimizer.__dict__))
    wrapped = cls(optimizer.param_groups, named_parameters, compression,
                  backward_passes_per_step, op, gradient_predivide_factor, groups,
                  sparse_as_dense, process_set, bucket_cap_mb)
    if optimizer.state:
        wrapped.load_state_dict(optimizer.state_dict())
    return wrapped
