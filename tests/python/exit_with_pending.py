"""Run under ringfuse-run: each rank leaves the interpreter with collectives still pending (never
synchronized, one never matched by the other ranks) and without calling shutdown(). The
interpreter's exit (atexit shutdown) must end them and the process must exit 0, not hang or
crash. CTest bounds the time."""

import sys

import torch

import ringfuse.torch as hvd

hvd.init()
handles = [hvd.allreduce_async(torch.full((1000,), float(i)), name="pending.%d" % i)
           for i in range(100)]
handles.append(hvd.allreduce_async(torch.ones(1 << 20), name="pending.large"))
if hvd.rank() == 0:
    hvd.allreduce_async(torch.ones(8), name="only.rank0")  # nobody else will match it
del handles  # Python forgets the tensors; the extension keeps them until the end
# Every rank has enqueued everything before any leaves: a rank that leaves first would
# (rightly) make the others' later enqueues fail. The Context's own barrier, not the engine's,
# so the engine's work stays pending.
hvd.mpi_ops._session.context_barrier()
print("rank %d exiting with collectives pending" % hvd.rank(), flush=True)
sys.exit(0)
