"""The torch.distributed backend "ringfuse": importing this module registers it.

    import ringfuse.distributed  # noqa: F401  (registers the backend)
    import torch.distributed as dist
    dist.init_process_group("ringfuse")      # env:// (torchrun), tcp://, file://
    # under ringfuse-run (or torchrun alike):
    dist.init_process_group("ringfuse", init_method=ringfuse.distributed.init_method())
    model = torch.nn.parallel.DistributedDataParallel(model)

The process group bootstraps over the c10d Store torch hands it (so torchrun, or any init_method,
is enough: ringfuse-run is not needed) and runs every collective on a Ringfuse Context, in
submission order, on one background thread. The ``timeout`` given to ``init_process_group``
bounds the rendezvous and every collective. CPU tensors only in this version.

Not available yet, and refused at once with an error that says so: ``send``/``recv`` (the
library has no point-to-point transfers yet) and ``new_group`` (no sub-communicators yet).
"""

import functools
import ipaddress
import os
import secrets
import socket
import tempfile

import torch.distributed as dist
from torch.distributed import distributed_c10d

from ringfuse import _c10d

BACKEND_NAME = "ringfuse"

_SECRET_KEY = "ringfuse/job-secret"


def _job_secret(store, rank):
    """RINGFUSE_JOB_SECRET when the launcher set one; else rank 0's fresh one, shared through
    the store, so that the mesh still refuses connections from other jobs."""
    secret = os.environ.get("RINGFUSE_JOB_SECRET")
    if secret:
        return secret
    if rank == 0:
        store.set(_SECRET_KEY, secrets.token_hex(16))
    return store.get(_SECRET_KEY).decode()


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
    """The init_method for ``init_process_group("ringfuse", init_method=...)`` that works under
    torchrun and under ringfuse-run alike. torchrun's MASTER_ADDR:MASTER_PORT is a c10d store
    ("env://"); ringfuse-run's is the launcher's own store, which speaks another protocol, so
    under it ranks meet in a file store named after the job when they share this host, else in
    a c10d TCPStore that rank 0 serves on MASTER_PORT + 1."""
    if not os.environ.get("RINGFUSE_STORE_ADDR"):
        return "env://"
    job = os.environ.get("RINGFUSE_JOB_ID", "job")
    who = f"?rank={os.environ['RANK']}&world_size={os.environ['WORLD_SIZE']}"
    if os.environ.get("LOCAL_WORLD_SIZE") == os.environ.get("WORLD_SIZE"):
        return "file://" + os.path.join(tempfile.gettempdir(), f"ringfuse-c10d-{job}") + who
    return f"tcp://{os.environ['MASTER_ADDR']}:{int(os.environ['MASTER_PORT']) + 1}" + who


def _new_group_refused():
    return RuntimeError(
        f"rank {dist.get_rank()}: ProcessGroup ringfuse: new_group is not supported yet: the "
        "Ringfuse library has no sub-communicators (process sets) yet; create the sub-group "
        "with backend=\"gloo\" meanwhile")


def _is_ringfuse(backend):
    return str(backend).upper() == BACKEND_NAME.upper()


def _refusing_new_group(torch_new_group):
    """torch calls a backend's creator on the new group's members only, and the others would
    wait for them in a store barrier until the timeout: refuse on every rank, before that."""

    @functools.wraps(torch_new_group)
    def new_group(*args, **kwargs):
        backend = kwargs.get("backend", args[2] if len(args) > 2 else None)
        if dist.is_initialized() and _is_ringfuse(backend or dist.get_backend()):
            raise _new_group_refused()
        return torch_new_group(*args, **kwargs)

    new_group.ringfuse_refuses = True
    return new_group


def _create_process_group(store, rank, size, timeout):
    if dist.is_initialized():  # a new_group that went around the check above
        raise _new_group_refused()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    return _c10d.ProcessGroupRingfuse(store, rank, size, timeout, local_rank, local_size,
                                      _advertised_address(), _job_secret(store, rank))


if BACKEND_NAME.upper() not in dist.Backend._plugins:
    dist.Backend.register_backend(BACKEND_NAME, _create_process_group)
if not getattr(distributed_c10d.new_group, "ringfuse_refuses", False):
    distributed_c10d.new_group = _refusing_new_group(distributed_c10d.new_group)
    dist.new_group = distributed_c10d.new_group
