"""Run under plain `mpirun -np 2`: ringfuse.torch takes its world from Open MPI's variables
(no ringfuse-run), and its collectives work."""

import torch

import ringfuse.torch as hvd

hvd.init()
assert hvd.size() == 2, hvd.size()
me = hvd.rank()
out = hvd.allreduce(torch.full((3,), float(me + 1)), op=hvd.Sum)
assert torch.equal(out, torch.full((3,), 3.0)), out
gathered = hvd.allgather(torch.tensor([me]))
assert gathered.tolist() == [0, 1], gathered
hvd.shutdown()
print("rank %d under mpirun: OK" % me, flush=True)
