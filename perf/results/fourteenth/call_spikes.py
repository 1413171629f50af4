import os, sys, time, statistics
import torch, torch.distributed as dist
import ringfuse.distributed
import ringfuse.torch as hvd
mode = sys.argv[1]
with_hvd = "hvd" in sys.argv[2:]
if with_hvd or mode in ("cpp", "engine"):
    hvd.init(); session = hvd.mpi_ops._session
dist.init_process_group("ringfuse", init_method=ringfuse.distributed.init_method())
pg = dist.distributed_c10d._get_default_group()
t = torch.ones(1024)
if mode == "cpp":
    call = lambda: session.context_allreduce(t, "sum")
elif mode == "engine":
    def call():
        h = session.allreduce("latency", t, "sum"); session.flush(); h.wait()
elif mode == "pg":
    call = lambda: pg.allreduce([t]).wait()
else:
    call = lambda: dist.all_reduce(t)
for _ in range(2000): call()
dist.barrier()
n = 20000
st = [0.0]*n; du = [0.0]*n
pc = time.perf_counter
for i in range(n):
    a = pc(); call(); b = pc()
    st[i] = a; du[i] = b - a
r = dist.get_rank()
us = [d*1e6 for d in du]
s = sorted(us)
spk = [i for i in range(n) if us[i] > float(os.environ.get("SPIKE", 9))]
gaps = [ (st[spk[k+1]]-st[spk[k]])*1e6 for k in range(len(spk)-1)]
idx = [spk[k+1]-spk[k] for k in range(len(spk)-1)]
print(f"rank {r} {mode} hvd={with_hvd}: median {s[n//2]:.2f} p90 {s[int(n*.9)]:.2f} p99 {s[int(n*.99)]:.2f}; >9us: {len(spk)} ({100*len(spk)/n:.1f}%); spike gap us median {statistics.median(gaps) if gaps else 0:.0f}; gap in calls median {statistics.median(idx) if idx else 0}; spike median {statistics.median([us[i] for i in spk]) if spk else 0:.1f}", flush=True)
import collections
hist = collections.Counter(min(int(g//250)*250, 5000) for g in gaps)
if r == 0: print(" gap histogram (us bucket: count):", sorted(hist.items())[:25])
dist.destroy_process_group()
if with_hvd or mode in ("cpp", "engine"): hvd.shutdown()
