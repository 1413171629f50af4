"""DDP resnet18 as perf/ddp_vs_gloo.py runs it: median forward, backward and optimizer time per
backend, and the CPU time of the process's threads other than the main thread during the
forward pass and the whole step (the backends' own threads).

    PYTHONPATH=build/python build/launcher/ringfuse-run -np 2 -- /usr/bin/python3 -W ignore \
        perf/results/fifteenth/ddp_phases.py
"""
import os, sys, time, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import ddp_vs_gloo as d
import torch, torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
import ringfuse.distributed

def threads_cpu(exclude):
    cpu = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) in exclude: continue
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f: cpu += int(f.read().split()[0])
        except OSError: pass
    return cpu / 1e6

torch.set_num_threads(1)
dist.init_process_group("ringfuse", init_method=ringfuse.distributed.init_method())
rank, size = dist.get_rank(), dist.get_world_size()
groups = {"ringfuse": dist.distributed_c10d._get_default_group(), "gloo": dist.new_group(list(range(size)), backend="gloo")}
make, batch = d.resnet18_workload(8, 112)
runs = {}
me = {os.getpid()}
for b, g in groups.items():
    torch.manual_seed(0)
    m = DistributedDataParallel(make(), process_group=g)
    h = d.TimedAllreduce(g); m.register_comm_hook(h, d.timed_allreduce)
    o = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    d.run(b, m, h, batch, 2, o, groups["gloo"])
    runs[b] = (m, h, o, {"fwd": [], "bwd": [], "opt": [], "bg_fwd": [], "bg_all": []})
for rnd in range(4):
    for b, (m, h, o, acc) in runs.items():
        dist.barrier()
        for step in range(5):
            h.reset()
            c0 = threads_cpu(me); t0 = time.perf_counter()
            data, target = batch(step)
            loss = F.cross_entropy(m(data), target)
            t1 = time.perf_counter(); c1 = threads_cpu(me)
            o.zero_grad(); loss.backward()
            t2 = time.perf_counter()
            o.step()
            t3 = time.perf_counter(); c3 = threads_cpu(me)
            acc["fwd"].append(t1 - t0); acc["bwd"].append(t2 - t1); acc["opt"].append(t3 - t2)
            acc["bg_fwd"].append(c1 - c0); acc["bg_all"].append(c3 - c0)
for b, (m, h, o, acc) in runs.items():
    med = {k: statistics.median(v) for k, v in acc.items()}
    print(f"rank {rank} {b:8s} fwd {med['fwd']*1e3:6.1f} bwd {med['bwd']*1e3:6.1f} opt {med['opt']*1e3:5.1f} ms; other threads' CPU: during fwd {med['bg_fwd']:.2f} ms, whole step {med['bg_all']:.2f} ms", flush=True)
dist.destroy_process_group()
