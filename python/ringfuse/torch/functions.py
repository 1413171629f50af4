"""Broadcasting a model's parameters, an optimizer's state and arbitrary Python objects
(Horovod's ``horovod/torch/functions.py``)."""

import pickle

import torch

from ringfuse.torch import mpi_ops
from ringfuse.torch.mpi_ops import (_name, broadcast_, broadcast_async_, allgather,
                                    global_process_set, rank, synchronize)


def broadcast_parameters(params, root_rank, prefix=None, process_set=global_process_set):
    """Copies root_rank's parameters into every rank's (of `process_set`), in place.

    `params`: ``model.state_dict()``, ``model.named_parameters()``, ``model.parameters()`` or
    a list of tensors / (name, tensor) pairs."""
    mpi_ops._check_process_set(process_set, "broadcast_parameters")
    if isinstance(params, dict):
        items = sorted(params.items())
    elif isinstance(params, list) or hasattr(params, "__iter__"):
        items = [p if isinstance(p, tuple) else (None, p) for p in params]
    else:
        raise ValueError("broadcast_parameters: invalid params of type %s" % type(params))
    handles = []
    for name, p in items:
        if p is None:
            continue
        if not torch.is_tensor(p):
            raise ValueError("broadcast_parameters: %r is a %s, not a tensor"
                             % (name, type(p).__name__))
        full_name = None if name is None else "%s%s" % (prefix or "", name)
        handles.append(broadcast_async_(p, root_rank, name=full_name, process_set=process_set))
    for h in handles:
        synchronize(h)


def broadcast_object(obj, root_rank=0, name=None, process_set=global_process_set):
    """Returns root_rank's `obj` (any picklable object) on every rank (of `process_set`)."""
    set_id = mpi_ops._process_set_id(process_set, "broadcast_object")
    mpi_ops._set_rank_of(process_set, root_rank, "broadcast_object")
    name = _name("broadcast_object", name, set_id)
    if rank() == root_rank:
        payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8)
        length = torch.tensor([payload.numel()], dtype=torch.int64)
    else:
        length = torch.zeros(1, dtype=torch.int64)
    broadcast_(length, root_rank, name=name + ".length", process_set=process_set)
    if rank() != root_rank:
        payload = torch.empty(int(length.item()), dtype=torch.uint8)
    broadcast_(payload, root_rank, name=name + ".data", process_set=process_set)
    return obj if rank() == root_rank else pickle.loads(payload.numpy().tobytes())


def allgather_object(obj, name=None, process_set=global_process_set):
    """Returns the list of every rank's `obj` (picklable), in rank order (of the members of
    `process_set`)."""
    set_id = mpi_ops._process_set_id(process_set, "allgather_object")
    name = _name("allgather_object", name, set_id)
    payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8)
    lengths = allgather(torch.tensor([payload.numel()], dtype=torch.int64),
                        name=name + ".lengths", process_set=process_set)
    gathered = allgather(payload, name=name + ".data", process_set=process_set)
    objects, offset = [], 0
    for n in lengths.tolist():
        objects.append(pickle.loads(gathered[offset:offset + n].numpy().tobytes()))
        offset += n
    return objects


def broadcast_optimizer_state(optimizer, root_rank, model=None, process_set=global_process_set):
    """Copies root_rank's optimizer state (per-parameter tensors and hyper-parameters) into
    every rank's optimizer (of `process_set`). An optimizer without state yet gets it first
    (one step on zero gradients, without allreduce), as in Horovod."""
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ValueError("cannot broadcast torch.optim.LBFGS state")
    mpi_ops._check_process_set(process_set, "broadcast_optimizer_state")
    state_dict = optimizer.state_dict()
    if len(state_dict["state"]) == 0:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.requires_grad and p.grad is None:
                    p.grad = torch.zeros_like(p)
        local_step = getattr(optimizer, "_local_step", None)
        (local_step or optimizer.step)()
        state_dict = optimizer.state_dict()
    # Collective: every rank must agree on whether there is anything to broadcast.
    has_state = broadcast_object(len(state_dict["state"]) > 0, root_rank,
                                 name="optimizer_state.has_state", process_set=process_set)
    if not has_state:
        return
    handles = []
    for pid in sorted(state_dict["state"]):
        for key in sorted(state_dict["state"][pid]):
            value = state_dict["state"][pid][key]
            if torch.is_tensor(value):
                handles.append(broadcast_async_(value, root_rank,
                                                name="optimizer_state.%s.%s" % (pid, key),
                                                process_set=process_set))
    for h in handles:
        synchronize(h)
    # Everything that is not a tensor (learning rate, momentum, scalar state) as one object.
    others = {
        "param_groups": [{k: v for k, v in g.items() if k != "params"}
                         for g in state_dict["param_groups"]],
        "state": {pid: {k: v for k, v in s.items() if not torch.is_tensor(v)}
                  for pid, s in state_dict["state"].items()},
    }
    others = broadcast_object(others, root_rank, name="optimizer_state.options",
                              process_set=process_set)
    for group, options in zip(state_dict["param_groups"], others["param_groups"]):
        group.update(options)
    for pid, values in others["state"].items():
        state_dict["state"].setdefault(pid, {}).update(values)
    optimizer.load_state_dict(state_dict)
