#!/bin/bash
# Experiment script of the sixth session (perf/RESULTS.md, issue 17, "TCP at 1 MiB (sixth
# session)"): base = 256b76a in /tmp/tcp6-base, new = this tree's build/, always = build-exp/
# with always-mode.diff and TCP6_ALWAYS=1.
# ab.sh ROUNDS BIND ARGS... : alternates base, new (default) and new with the checks forced on
rounds=$1; bind=$2; shift 2
for r in $(seq 1 $rounds); do
  for v in base new always; do
    case $v in
      base) t=/tmp/tcp6-base/build; env=;;
      new) t=/work/wt-tcp/build; env=;;
      always) t=/work/wt-tcp/build-exp; env=TCP6_ALWAYS=1;;
    esac
    echo "## round $r $v bind=$bind load $(cut -d' ' -f1-4 /proc/loadavg) $(date +%T)"
    env $env RINGFUSE_LOG_LEVEL=debug RINGFUSE_TRANSPORT=tcp $t/launcher/ringfuse-run -np 2 --bind-to $bind -- $t/perf/ringfuse-perf allreduce -c 0 "$@" 2>&1 | grep -E '^\[0\] +(ringfuse|gloo) +[0-9]|checked before sleeping in [0-9]+ waits' | grep -v 'ringfuse/ctl\|ctl/' 
  done
done
