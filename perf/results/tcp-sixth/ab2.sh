#!/bin/bash
# Sixth session (perf/RESULTS.md, issue 17, "TCP at 1 MiB (sixth session)").
# ab2.sh ROUNDS BIND ARGS... : alternates base (256b76a, /tmp/tcp6-base) and new (this tree's build/)
rounds=$1; bind=$2; shift 2
for r in $(seq 1 $rounds); do
  for v in base new; do
    case $v in base) t=/tmp/tcp6-base/build;; new) t=/work/wt-tcp/build;; esac
    echo "## round $r $v bind=$bind load $(cut -d' ' -f1-4 /proc/loadavg) $(date +%T)"
    RINGFUSE_LOG_LEVEL=debug RINGFUSE_TRANSPORT=tcp $t/launcher/ringfuse-run -np 2 --bind-to $bind -- $t/perf/ringfuse-perf allreduce -c 0 "$@" 2>&1 | grep -E '^\[0\] +(ringfuse|gloo) +[0-9]|checked before sleeping in [0-9]+ waits'
  done
done
