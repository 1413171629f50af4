"""RINGFUSE_TIMELINE in a process that holds both a ringfuse.torch session and a "ringfuse"
torch.distributed world: two Contexts of one rank, each with its engine and its timeline, given
one path. Each must end up with a whole file of its own (the second NAME.<rank>.2.json), not
one truncating and interleaving with the other. A new_group's Context (group ranks) names its
file by the job's rank too.

Runs under `ringfuse-run -np N` with RINGFUSE_TEST_C10D=1 (CTest: python_distributed_np*)."""

import datetime
import gc
import json
import os
import tempfile

import pytest
import torch

if not os.environ.get("RINGFUSE_TEST_C10D"):
    pytest.skip("run by the python_distributed tests (RINGFUSE_TEST_C10D=1)",
                allow_module_level=True)

import torch.distributed as dist  # noqa: E402

import ringfuse.distributed  # noqa: E402,F401  (registers the backend)
import ringfuse.torch as hvd  # noqa: E402


def complete_events(file):
    with open(file) as f:
        return [event for event in json.load(f) if event.get("ph") == "X"]


def test_ringfuse_torch_and_the_world_group_each_write_a_whole_timeline(tmp_path):
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    store = os.path.join(tempfile.gettempdir(),
                         f"ringfuse-c10d-{os.environ['RINGFUSE_JOB_ID']}-timeline")
    hvd.shutdown()  # conftest's session was made without RINGFUSE_TIMELINE
    os.environ["RINGFUSE_TIMELINE"] = str(tmp_path / "t.json")  # one directory per rank
    try:
        hvd.init()
        dist.init_process_group("ringfuse", init_method=f"file://{store}", rank=rank,
                                world_size=size, timeout=datetime.timedelta(seconds=60))
        tensor = torch.ones(8)
        hvd.allreduce_(tensor, name="through.ringfuse.torch", op=hvd.Sum)
        sent = torch.arange(2 * size, dtype=torch.float32) + 100 * rank
        received = torch.empty_like(sent)
        dist.all_to_all_single(received, sent)  # on the world group's engine
        assert torch.equal(tensor, torch.full((8,), float(size)))
        assert received[0].item() == 2 * rank
    finally:
        del os.environ["RINGFUSE_TIMELINE"]
        dist.destroy_process_group()
        hvd.shutdown()
        gc.collect()
        hvd.init()  # for the tests after this one, as conftest made it
    files = sorted(os.listdir(tmp_path))
    assert files == [f"t.{rank}.2.json", f"t.{rank}.json"], files
    events = {name: complete_events(tmp_path / name) for name in files}  # both parse whole
    assert all(events.values()), {name: len(found) for name, found in events.items()}
    named = [name for name, found in events.items()
             if any("through.ringfuse.torch" in json.dumps(event) for event in found)]
    assert len(named) == 1, named  # the session's events in one file, not both


def test_a_new_group_writes_its_timeline_under_the_global_rank(tmp_path):
    """A new_group's Context is a world of its own whose ranks are group ranks. Its timeline
    is named by the job's rank: group [1, 2, ...] on global rank r writes NAME.<r>.2.json
    beside the world group's NAME.<r>.json (before, it wrote nothing: the group rank would
    have named the file of another process)."""
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    store = os.path.join(tempfile.gettempdir(),
                         f"ringfuse-c10d-{os.environ['RINGFUSE_JOB_ID']}-group-timeline")
    os.environ["RINGFUSE_TIMELINE"] = str(tmp_path / "t.json")  # one directory per rank
    members = list(range(1, size))
    group = None
    try:
        dist.init_process_group("ringfuse", init_method=f"file://{store}", rank=rank,
                                world_size=size, timeout=datetime.timedelta(seconds=60))
        group = dist.new_group(members)
        sent = torch.arange(2 * size, dtype=torch.float32) + 100 * rank
        received = torch.empty_like(sent)
        dist.all_to_all_single(received, sent)  # on the world group's engine
        if rank in members:
            n = len(members)
            sent = torch.arange(2 * n, dtype=torch.float32) + 100 * rank
            received = torch.empty_like(sent)
            dist.all_to_all_single(received, sent, group=group)  # on the group's engine
            assert received[0].item() == 100 * members[0] + 2 * members.index(rank)
    finally:
        del os.environ["RINGFUSE_TIMELINE"]
        dist.destroy_process_group()
        group = None  # the group's Context, and with it its timeline, closes with the last use
        gc.collect()
    files = sorted(os.listdir(tmp_path))
    expected = [f"t.{rank}.2.json", f"t.{rank}.json"] if rank in members else [f"t.{rank}.json"]
    assert files == expected, files
    for name in files:
        events = complete_events(tmp_path / name)  # parses whole
        assert any("alltoall" in json.dumps(event).lower() for event in events), \
            (name, [event.get("name") for event in events][:20])
