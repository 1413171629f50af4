#!/bin/bash
# CPU time of both ranks (perf stat task-clock, user + system) per all-reduce of SIZE, forced
# TCP, N=2: a run of 40 iterations minus a run of 8, over 32, so start-up cancels out. Includes
# ringfuse-perf's untimed restore of the input before each iteration (the same in every tree).
# usage: perf/results/tcp-pair/cpu_per_op.sh TREE SIZE     (TREE holds build/)
tree=$1
size=$2
stats=$(mktemp -d)
run() {
  RINGFUSE_TRANSPORT=tcp timeout 300 "$tree/build/launcher/ringfuse-run" -np 2 -- bash -c \
    "exec perf stat -x, -e task-clock,context-switches -o $stats/stat.\$RINGFUSE_RANK \
     $tree/build/perf/ringfuse-perf allreduce -c 0 -b $size -e $size -n $1 -w 1" >/dev/null 2>&1
  local ms switches
  ms=$(grep -h ',task-clock' "$stats"/stat.* | cut -d, -f1 | paste -sd+ | bc)
  switches=$(grep -h ',context-switches' "$stats"/stat.* | cut -d, -f1 | paste -sd+ | bc)
  echo "$ms $switches"
}
short=($(run 8))
long=($(run 40))
echo "$tree size=$size cpu_ms_per_op=$(echo "scale=2; (${long[0]} - ${short[0]}) / 32" | bc)" \
     "context_switches_per_op=$(echo "scale=1; (${long[1]} - ${short[1]}) / 32" | bc)"
rm -rf "$stats"
