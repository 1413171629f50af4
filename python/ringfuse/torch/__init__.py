"""Horovod's PyTorch API on ringfuse: ``import ringfuse.torch as hvd`` runs Horovod scripts.

    import ringfuse.torch as hvd
    hvd.init()
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)

Launch with ``ringfuse-run -np N python3 train.py`` (or mpirun, or torchrun). Collectives are
matched by name, as in Horovod (ranks may issue them in different orders), unless
RINGFUSE_MATCH=sequence says otherwise. Process sets (``hvd.add_process_set([0, 1])``, then
``process_set=`` on a collective) run among their members on an engine of their own.
"""

from ringfuse.exceptions import HorovodInternalError, HostsUpdatedInterrupt
from ringfuse.torch.compression import Compression
from ringfuse.torch.functions import (allgather_object, broadcast_object,
                                      broadcast_optimizer_state, broadcast_parameters)
from ringfuse.torch.mpi_ops import (
    Adasum, Average, Max, Min, Product, ProcessSet, Sum, add_process_set, allgather,
    allgather_async, allreduce, allreduce_, allreduce_async, allreduce_async_, alltoall,
    alltoall_async, barrier, broadcast, broadcast_, broadcast_async, broadcast_async_,
    ccl_built, cross_rank, cross_size, cuda_built, ddl_built, gloo_built, gloo_enabled,
    global_process_set, grouped_allgather, grouped_allgather_async, grouped_allreduce,
    grouped_allreduce_, grouped_allreduce_async, grouped_allreduce_async_,
    grouped_reducescatter, grouped_reducescatter_async, init, is_homogeneous, is_initialized,
    join, local_rank, local_size, mpi_built, mpi_enabled, mpi_threads_supported, nccl_built,
    poll, rank, reducescatter, reducescatter_async, remove_process_set, rocm_built, shutdown,
    size, sparse_allreduce_async, start_timeline, stop_timeline, synchronize)
from ringfuse.torch.optimizer import DistributedOptimizer
from ringfuse.torch.sync_batch_norm import SyncBatchNorm

# Importing ringfuse.torch also registers the torch.distributed backend "ringfuse", so
# dist.init_process_group("ringfuse") works after either import.
import ringfuse.distributed  # noqa: E402,F401  (registration is the import's effect)


def __getattr__(name):
    """Horovod names this module does not have, refused with what to do instead."""
    if name == "elastic":
        raise AttributeError(
            "ringfuse.torch has no elastic training (Horovod's hvd.elastic): a lost rank fails "
            "the job, on every rank within seconds, and ringfuse-run then stops the others; "
            "restart it from a checkpoint (a Kubernetes Job's backoffLimit, or your scheduler)")
    raise AttributeError(f"module 'ringfuse.torch' has no attribute {name!r}")
