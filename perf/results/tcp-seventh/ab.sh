#!/bin/bash
# Seventh session (perf/RESULTS.md, issue 17, "TCP at 1 MiB (seventh session)").
# ab.sh ROUNDS BIND ARGS... : alternates base (d079c26 built in $BASE, default /tmp/tcp7-base)
# and new (this tree's build/), BIND = none|core; prints ours and Gloo's rows of rank 0, and
# each rank's count of waits that checked before sleeping.
rounds=$1; bind=$2; shift 2
base=${BASE:-/tmp/tcp7-base}
new=${NEW:-$(cd "$(dirname "$0")/../../.." && pwd)}
for r in $(seq 1 $rounds); do
  for v in base new; do
    case $v in base) t=$base/build;; new) t=$new/build;; esac
    echo "## round $r $v bind=$bind load $(cut -d' ' -f1-4 /proc/loadavg) $(date +%T)"
    RINGFUSE_LOG_LEVEL=debug RINGFUSE_TRANSPORT=tcp $t/launcher/ringfuse-run -np 2 --bind-to $bind -- \
      $t/perf/ringfuse-perf allreduce -c 0 "$@" 2>&1 |
      grep -E '^\[0\] +(ringfuse|gloo) +[0-9]|checked before sleeping in [0-9]+ waits'
  done
done
