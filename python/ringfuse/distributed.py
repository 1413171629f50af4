"""The torch.distributed backend "ringfuse": importing this module registers it.

    import ringfuse.distributed  # noqa: F401  (registers the backend)
    import torch.distributed as dist
    dist.init_process_group("ringfuse")      # env:// (torchrun or ringfuse-run), tcp://, file://
    model = torch.nn.parallel.DistributedDataParallel(model)

The process group bootstraps over the c10d Store torch hands it (so torchrun, or any init_method,
is enough: ringfuse-run is not needed) and runs every collective as a Ringfuse Context's
blocking collective, in submission order on one lane started by the group's worker thread
(a small one is first left for 50 us to a ``wait()``, which then runs it in the waiting thread),
each behind an agreement check (one exchange of a hash of the call; in a group of two an
all-reduce of at most 4 KiB travels in it): ranks that call different collectives, shapes, dtypes,
operators or roots all fail with one message naming what each rank sent. The ``timeout`` given
to ``init_process_group`` bounds the rendezvous and every collective. CPU tensors, and CUDA tensors where torch, the library and the machine have
CUDA (the engine's NCCL communicator; point-to-point and sparse all_reduce take CPU only).

``dist.new_group(ranks)`` works on this backend (also as ``new_group(ranks, backend="ringfuse")``
under a gloo default group): torch builds the group on its members only, over the group's own
prefix of the store, so ranks outside the group take no part. Errors name the world ranks and
the group (``rank 2: new_group([1, 2]): ...``).
``send``/``recv``/``isend``/``irecv``/``batch_isend_irecv`` run on the group's engine.
"""

import atexit
import ipaddress
import os
import secrets
import socket

import torch.distributed as dist

from ringfuse import _c10d

BACKEND_NAME = "ringfuse"

_SECRET_KEY = "ringfuse/job-secret"
_JOB_ID_KEY = "ringfuse/job-id"
_HOST_KEY = "ringfuse/host"
_GLOBAL_RANK_KEY = "ringfuse/global-rank"


def _advertised_address():
    """The address of this host that the kernel routes to MASTER_ADDR from (as torchrun's agent
    picks one), so peers on other hosts reach this rank; "" (loopback) when all is local."""
    master = os.environ.get("MASTER_ADDR", "")
    if not master or os.environ.get("RINGFUSE_HOST_ADDR"):
        return ""
    try:
        address = socket.gethostbyname(master)
        if ipaddress.ip_address(address).is_loopback:
            return ""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((address, int(os.environ.get("MASTER_PORT", "29500"))))
            return probe.getsockname()[0]
    except (OSError, ValueError):
        return ""


def init_method():
    """The init_method for ``init_process_group("ringfuse", init_method=...)`` under torchrun
    and ringfuse-run: "env://", torch's default. Both set MASTER_ADDR and MASTER_PORT to where
    rank 0 serves a torch TCPStore, so leaving init_method out does the same. Kept for scripts
    written when ringfuse-run's MASTER_PORT was its own store's port."""
    return "env://"


def _shared_value(store, rank, key, make):
    """The value group rank 0 makes and every rank of the group reads, through its store."""
    if rank == 0:
        store.set(key, make())
    return store.get(key).decode()


def _job_secret(store, rank):
    """RINGFUSE_JOB_SECRET when the launcher set one; else rank 0's fresh one, shared through
    the store, so that the mesh still refuses connections from other jobs."""
    return os.environ.get("RINGFUSE_JOB_SECRET") or _shared_value(
        store, rank, _SECRET_KEY, lambda: secrets.token_hex(16))


def _group_job_id(store, rank):
    """A name no other group on this host has: shared-memory segments are named after it, and
    a world group and its sub-groups (or two jobs) live side by side on one host."""
    return _shared_value(store, rank, _JOB_ID_KEY, lambda: "torch-" + secrets.token_hex(6))


def _host_identity():
    """What the ranks of one host share: its name and, under ringfuse-run or torchrun, the node's
    index (GROUP_RANK), which also tells apart the loopback "hosts" of one machine."""
    return f"{socket.gethostname()}#{os.environ.get('GROUP_RANK', '')}"


def _local_placement(store, rank, size):
    """(local rank, local size) among the group's members, from the hosts they announce in the
    group's store: a sub-group needs no collective over the ranks outside it."""
    own = _host_identity()
    store.set(f"{_HOST_KEY}/{rank}", own)
    hosts = [store.get(f"{_HOST_KEY}/{r}").decode() for r in range(size)]
    return hosts[:rank].count(own), hosts.count(own)


def _global_ranks(store, rank, size):
    """The world rank of each member of a sub-group, in group rank order, from what each
    member announces in the group's store: its errors name these, not group ranks."""
    store.set(f"{_GLOBAL_RANK_KEY}/{rank}", str(dist.get_rank()))
    return [int(store.get(f"{_GLOBAL_RANK_KEY}/{r}")) for r in range(size)]


def _create_process_group(store, rank, size, timeout):
    # The world group takes the launcher's (or torchrun's) placement; a sub-group, which torch
    # builds on its members only, works its own out through its store.
    global_ranks, label = [], ""
    if dist.is_initialized():
        global_ranks = _global_ranks(store, rank, size)
        label = f"new_group({global_ranks})"
    if dist.is_initialized() or "LOCAL_RANK" not in os.environ:
        local_rank, local_size = _local_placement(store, rank, size)
    else:
        local_rank = int(os.environ["LOCAL_RANK"])
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    return _c10d.ProcessGroupRingfuse(store, rank, size, timeout, local_rank, local_size,
                                      _advertised_address(), _job_secret(store, rank),
                                      _group_job_id(store, rank), global_ranks, label)


if BACKEND_NAME.upper() not in dist.Backend._plugins:
    dist.Backend.register_backend(BACKEND_NAME, _create_process_group)

# A group's worker may still be running torch's callbacks of a finished collective (a DDP
# communication hook's) when the script ends; they take the GIL, which no thread gets once the
# interpreter is finalizing. Registered after torch's own handlers, so it runs before them.
atexit.register(_c10d._wait_for_settled_futures, 10.0)
