#!/bin/bash
# cpu_per_op.sh (../tcp-pair) for any number of ranks: CPU time of all ranks (perf stat
# task-clock, user + system) per all-reduce of SIZE, forced TCP, NP ranks (default 3): a run of
# N2 iterations minus a run of N1 (defaults 24 and 4), over their difference, so start-up
# cancels out; plus the long run's time_us. Includes ringfuse-perf's untimed restore of the
# input before each iteration (the same in every tree).
# usage: NP=3 perf/results/tcp-1mib/cpu_per_op_np.sh TREE SIZE     (TREE holds build/)
tree=$1
size=$2
np=${NP:-3}
n1=${N1:-4}
n2=${N2:-24}
stats=$(mktemp -d)
run() {
  RINGFUSE_TRANSPORT=tcp timeout 300 "$tree/build/launcher/ringfuse-run" -np "$np" -- bash -c \
    "exec perf stat -x, -e task-clock -o $stats/stat.\$RINGFUSE_RANK \
     $tree/build/perf/ringfuse-perf allreduce -c 0 -b $size -e $size -n $1 -w 1" >"$stats/out" 2>&1
  local ms
  ms=$(grep -h ',task-clock' "$stats"/stat.* | cut -d, -f1 | paste -sd+ | bc)
  echo "$ms $(grep -E '^\[0\] +ringfuse' "$stats/out" | awk '{print $8}')"
}
short=($(run "$n1"))
long=($(run "$n2"))
echo "$tree np=$np size=$size cpu_ms_per_op=$(echo "scale=2; (${long[0]} - ${short[0]}) / ($n2 - $n1)" | bc)" \
     "time_us=${long[1]} load=$(cut -d' ' -f1 /proc/loadavg)"
rm -rf "$stats"
