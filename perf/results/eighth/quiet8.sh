#!/usr/bin/env bash
# Quiet-machine check of the open issues' perf targets (eighth session). Usage: quiet8.sh OUTDIR [BUILD]
set -u
out=$1; b=${2:-build}; mkdir -p "$out"
cd "$(dirname "$0")/../../.."  # the repository root
MR="mpirun --allow-run-as-root --oversubscribe -np 2"
RR="$b/launcher/ringfuse-run -np 2 --"
log() { echo "== $(date +%T) load $(cut -d' ' -f1-4 /proc/loadavg): $*" | tee -a "$out/all.txt"; }
run() { log "$*"; eval "$@" 2>&1 | tee -a "$out/all.txt" | tail -40 > /dev/null; }
run PYTHONPATH=$b/python $RR /usr/bin/python3 -W ignore perf/python_overhead.py --steps 30
for r in 1 2; do
  run $MR $b/perf/ringfuse-perf fusion --model small1000 -n 300 -w 20 --peers mpi
  run $RR $b/perf/ringfuse-perf fusion --model small1000 -n 300 -w 20
done
for m in resnet50 bert-base; do for n in 2 4; do
  run $b/launcher/ringfuse-run -np $n -- $b/perf/ringfuse-perf fusion --model $m -n 10 -w 3 --modes single,fused
done; done
for r in 1 2; do
  run PYTHONPATH=$b/python $RR /usr/bin/python3 -W ignore perf/c10d_latency.py --iters 2000
done
for n in 2 4; do
  run PYTHONPATH=$b/python $b/launcher/ringfuse-run -np $n -- /usr/bin/python3 -W ignore perf/ddp_vs_gloo.py
done
for bind in none core; do for r in 1 2; do
  run RINGFUSE_TRANSPORT=tcp $b/launcher/ringfuse-run -np 2 --bind-to $bind -- $b/perf/ringfuse-perf allreduce -c 0 -b 1M -e 2M -f 2 -n 500 -w 50 --peers gloo
done; done
run PYTHONPATH=$b/python $RR /usr/bin/python3 -W ignore examples/python/synthetic_benchmark.py --model resnet18 --batch-size 16 --num-warmup-batches 1 --num-batches-per-iter 2 --num-iters 8 --compare
log done
