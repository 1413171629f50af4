"""DDP resnet18 as perf/ddp_vs_gloo.py runs it, printing per step the wall time of the last
bucket's all-reduce (from its launch to its future's callback) and the CPU time each thread of
this process used meanwhile (ms, threads above 0.2 ms; the first is the main thread).

    PYTHONPATH=build/python build/launcher/ringfuse-run -np 2 -- /usr/bin/python3 -W ignore \
        perf/results/fifteenth/last_bucket_threads.py
"""
import os, sys, time, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import ddp_vs_gloo as d
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
import ringfuse.distributed

def snap():
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f: cpu = int(f.read().split()[0])
            with open(f"/proc/self/task/{tid}/comm") as f: name = f.read().strip()
            out[tid] = (name, cpu)
        except OSError: pass
    return out

class T(d.TimedAllreduce):
    def reset(self):
        super().reset(); self.n = 0; self.report = None
    def launch(self, bucket):
        self.n += 1
        if self.n == 3:
            fut = super().launch(bucket)
            before = snap(); t0 = time.perf_counter()
            def rep(f):
                after = snap()
                self.report = (time.perf_counter() - t0, {tid: (after[tid][0], (after[tid][1] - before.get(tid, ("", 0))[1]) / 1e6) for tid in after})
                return f.value()
            return fut.then(rep)
        return super().launch(bucket)

torch.set_num_threads(1)
dist.init_process_group("ringfuse", init_method=ringfuse.distributed.init_method())
rank, size = dist.get_rank(), dist.get_world_size()
groups = {"ringfuse": dist.distributed_c10d._get_default_group(), "gloo": dist.new_group(list(range(size)), backend="gloo")}
make, batch = d.resnet18_workload(8, 112)
runs = {}
for b, g in groups.items():
    torch.manual_seed(0)
    m = DistributedDataParallel(make(), process_group=g)
    h = T(g); m.register_comm_hook(h, d.timed_allreduce)
    o = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    d.run(b, m, h, batch, 1, o, groups["gloo"])
    runs[b] = (m, h, o)
for rnd in range(2):
    for b, (m, h, o) in runs.items():
        for step in range(3):
            h.reset()
            data, target = batch(step)
            loss = torch.nn.functional.cross_entropy(m(data), target)
            o.zero_grad(); loss.backward(); o.step()
            wall, th = h.report
            busy = sorted(((v[1], v[0], tid) for tid, v in th.items() if v[1] > 0.2), reverse=True)
            print(f"rank {rank} {b:8s} last bucket {wall*1e3:.1f} ms: " + ", ".join(f"{n}/{tid} {c:.1f}" for c, n, tid in busy), flush=True)
            dist.barrier(group=groups["gloo"])
dist.destroy_process_group()
