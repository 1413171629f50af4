#!/bin/bash
# CPU time (perf stat task-clock, both ranks, user + system) and context switches per
# all-reduce of SIZE, forced TCP, N = 2: a run of LONG iterations minus one of SHORT, so start-up
# cancels out. Includes ringfuse-perf's untimed restore and barrier (the same in every tree).
# usage: cpu_per_op.sh TREE SIZE [none|core]     (TREE holds build/)
tree=$1; size=$2; bind=${3:-none}
short=${SHORT:-50}; long=${LONG:-550}
stats=$(mktemp -d)
run() {
  RINGFUSE_TRANSPORT=tcp timeout 300 "$tree/build/launcher/ringfuse-run" -np 2 --bind-to $bind -- bash -c \
    "exec perf stat -x, -e task-clock,context-switches -o $stats/stat.\$RINGFUSE_RANK \
     $tree/build/perf/ringfuse-perf allreduce -c 0 -b $size -e $size -n $1 -w 1" > $stats/out.$1 2>&1
  local ms switches med
  ms=$(grep -h ',task-clock' "$stats"/stat.* | cut -d, -f1 | paste -sd+ | bc)
  switches=$(grep -h ',context-switches' "$stats"/stat.* | cut -d, -f1 | paste -sd+ | bc)
  med=$(grep -E '^\[0\] +ringfuse +[0-9]' $stats/out.$1 | awk '{print $8}')
  echo "$ms $switches $med"
}
s=($(run $short))
l=($(run $long))
n=$((long - short))
echo "$(basename $tree) size=$size bind=$bind load=$(cut -d' ' -f1 /proc/loadavg)" \
     "cpu_us_per_op_both_ranks=$(echo "scale=1; (${l[0]} - ${s[0]}) * 1000 / $n" | bc)" \
     "switches_per_op_both_ranks=$(echo "scale=2; (${l[1]} - ${s[1]}) / $n" | bc) median_us=${l[2]}"
rm -rf "$stats"
