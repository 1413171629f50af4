#!/bin/bash
# Alternating base / new runs of the cloud-shaped bed (issue 17, adaptive stripes).
set -u
cd /work/wt-stripes
out=perf/results/stripes-seventh
mkdir -p $out
for i in $(seq ${FIRST:-1} ${RUNS:-3}); do
  for tree in base new; do
    if [[ $tree == base ]]; then build=/tmp/stripes-base/build; else build=build; fi
    echo "=== run $i $tree $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" > $out/run$i-$tree.txt
    HOSTS=4 LINK=800mbit FLOW=100mbit RINGFUSE_SOCKETS_PER_PEER=8 TC_STATS=1 \
      timeout 600 perf/cloud_shaped.sh $build -- allreduce -b 16M -e 64M -f 4 -n 3 -w 1 -c 1 --peers gloo \
      --json $out/run$i-$tree.json >> $out/run$i-$tree.txt 2>&1
    echo "=== exit $? $(date -u +%H:%M:%S)" >> $out/run$i-$tree.txt
  done
done
