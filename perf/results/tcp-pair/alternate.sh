#!/bin/bash
# Forced TCP on loopback, N=2: ROUNDS rounds of the same ringfuse-perf sweep (ARGS) with Gloo
# in the same run, alternating two build trees (BASE, then NEW; each with build/ in it).
# Prints "tree size algo busbw ratio" rows for ours and Gloo's algorithms.
# e.g. BASE=/tmp/base NEW=$PWD ROUNDS=3 perf/results/tcp-pair/alternate.sh -b 1M -e 256M -f 4 -n 20 -w 5
for round in $(seq 1 "${ROUNDS:-3}"); do
  for tree in "$BASE" "$NEW"; do
    tag=$([ "$tree" = "$NEW" ] && echo new || echo base)
    echo "# round $round $tag load $(cut -d' ' -f1 /proc/loadavg) $(date +%T)"
    RINGFUSE_TRANSPORT=tcp timeout 400 "$tree/build/launcher/ringfuse-run" -np 2 -- \
      "$tree/build/perf/ringfuse-perf" allreduce -c 0 "$@" --peers gloo 2>&1 |
      grep -E '^\[0\] +(ringfuse|gloo) ' |
      awk -v t="$tag" '{printf "%s %s %s %s %s\n", t, $3, $7, $10, $12}'
  done
done
