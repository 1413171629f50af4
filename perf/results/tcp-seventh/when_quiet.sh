#!/bin/bash
# Whenever three reads of /proc/loadavg in a row show at most 2 running tasks: one base/new
# unbound pair of the brief's command, one bound pair, then the probe build (d079c26+cfb368f
# with probe-and-knobs.diff's pair-step probe) bound and unbound, ours alone. Until $1.
until=$1; out=$2; n=0
while [ $(date +%s) -lt $until ]; do
  q=0; for i in 1 2 3; do r=$(cut -d' ' -f4 /proc/loadavg | cut -d/ -f1); [ "$r" -le 2 ] && q=$((q+1)); sleep 0.2; done
  if [ $q -eq 3 ]; then
    n=$((n+1))
    /work/wt-tcp/perf/results/tcp-seventh/ab.sh 1 none -b 1M -e 2M -f 2 -n 500 -w 50 --peers gloo >> $out 2>&1
    /work/wt-tcp/perf/results/tcp-seventh/ab.sh 1 core -b 1M -e 2M -f 2 -n 500 -w 50 --peers gloo >> $out 2>&1
    for b in core none; do
      echo "## probe $n bind=$b load $(cut -d' ' -f1-4 /proc/loadavg) $(date +%T)" >> $out
      TCP7_PROBE=1 TCP7_CALLS=${CALLS_DIR:-/tmp}/qcalls-$n-$b RINGFUSE_LOG_LEVEL=debug RINGFUSE_TRANSPORT=tcp /tmp/tcp7-probe/build/launcher/ringfuse-run -np 2 --bind-to $b -- /tmp/tcp7-probe/build/perf/ringfuse-perf allreduce -c 0 -b 1M -e 1M -n 1000 -w 50 2>&1 | grep -E 'ringfuse +[0-9]|PROBE|checked' >> $out
      python3 /work/wt-tcp/perf/results/tcp-seventh/same_cpu.py ${CALLS_DIR:-/tmp}/qcalls-$n-$b >> $out 2>&1
    done
  else sleep 3; fi
done
