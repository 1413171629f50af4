import sys, statistics as st
pre = sys.argv[1]
r0 = [l.split() for l in open(pre + ".0")]
r1 = [l.split() for l in open(pre + ".1")]
n = min(len(r0), len(r1))
same, diff = [], []
for a, b in zip(r0[:n], r1[:n]):
    d = max(float(a[1]), float(b[1]))
    (same if a[2] == b[2] else diff).append(d)
def med(x): return f"{st.median(x):.0f}" if x else "-"
print(f"{pre}: calls {n}: same CPU at start {len(same)} (median {med(same)} us), different {len(diff)} (median {med(diff)} us)")
