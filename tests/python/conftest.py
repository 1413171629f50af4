"""Every test file here runs on every rank of `ringfuse-run -np N /usr/bin/python3 -m pytest`:
all ranks run the same tests in the same order, so the collectives inside them match."""

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
