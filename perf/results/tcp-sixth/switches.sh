#!/bin/bash
# switches.sh VARIANT: per all-reduce and rank, at 1 MiB: context switches (voluntary+involuntary), task-clock
v=$1
case $v in base) t=/tmp/tcp6-base/build; env=;; new) t=/work/wt-tcp/build; env=;; always) t=/work/wt-tcp/build-exp; env=TCP6_ALWAYS=1;; esac
for n in 20 1020; do
  env $env RINGFUSE_TRANSPORT=tcp $t/launcher/ringfuse-run -np 2 -- bash -c "exec perf stat -x, -e task-clock,context-switches -o /tmp/tcp6-exp/sw.\$RINGFUSE_RANK.$n $t/perf/ringfuse-perf allreduce -c 0 -b 1M -e 1M -n $n -w 0" 2>&1 | grep -E '^\[0\] +ringfuse +[0-9]' | awk '{print "  median us", $8}' | { [ $n = 1020 ] && cat || cat >/dev/null; }
done
for r in 0 1; do
  awk -F, -v r=$r 'FNR==1{f++} /task-clock/{tc[f]=$1} /context-switches/{cs[f]=$1} END{printf "  rank %s: %.1f switches, %.0f us CPU per all-reduce\n", r, (cs[2]-cs[1])/1000, (tc[2]-tc[1])}' /tmp/tcp6-exp/sw.$r.20 /tmp/tcp6-exp/sw.$r.1020
done
