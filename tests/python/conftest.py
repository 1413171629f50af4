"""Every test file here runs on every rank of `ringfuse-run -np N /usr/bin/python3 -m pytest`:
all ranks run the same tests in the same order, so the collectives inside them match."""

import datetime
import os
import tempfile

import pytest
import torch

import ringfuse.torch as hvd


@pytest.fixture(scope="session", autouse=True)
def world():
    hvd.init()
    torch.manual_seed(1234)  # the same on every rank: tests draw their data from it
    yield
    hvd.shutdown()


def rank_data(shape, dtype, rank, low=1, high=4):
    """Deterministic, rank-dependent data that any rank can recompute for any other rank."""
    g = torch.Generator().manual_seed(1000 + rank)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_complex:
        return torch.randn(shape, generator=g, dtype=dtype)
    return torch.randint(low, high, shape, generator=g).to(dtype)


def c10d_world(backend, name):
    """A module-scoped autouse fixture holding torch.distributed's default group on `backend`
    for the module's tests, bootstrapped from a file:// store named after the job and `name`
    (each module its own, so that no two runs ever meet in one)."""

    @pytest.fixture(scope="module", autouse=True)
    def world():
        import torch.distributed as dist

        path = os.path.join(tempfile.gettempdir(),
                            f"ringfuse-c10d-{os.environ['RINGFUSE_JOB_ID']}-{name}")
        dist.init_process_group(backend, init_method=f"file://{path}",
                                rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]),
                                timeout=datetime.timedelta(seconds=60))
        yield
        dist.destroy_process_group()

    return world
