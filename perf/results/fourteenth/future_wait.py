import time, statistics, torch, torch.distributed as dist, ringfuse.distributed
dist.init_process_group("ringfuse", init_method=ringfuse.distributed.init_method())
t = torch.ones(1024)
def call():
    dist.all_reduce(t, async_op=True).get_future().wait()
for _ in range(500): call()
dist.barrier()
s = []
for _ in range(3000):
    a = time.perf_counter(); call(); s.append(time.perf_counter() - a)
s.sort()
if dist.get_rank() == 0:
    print(f"4 KiB all_reduce(async_op=True).get_future().wait(): median {s[len(s)//2]*1e6:.1f} us, p90 {s[int(len(s)*.9)]*1e6:.1f} us")
dist.destroy_process_group()
