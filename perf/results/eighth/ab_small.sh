#!/usr/bin/env bash
# ab_small.sh ROUNDS launcher(mpirun|rr) BUILD... : small1000 rows per build, alternating
rounds=$1; how=$2; shift 2
for r in $(seq $rounds); do for t in "$@"; do
  if [ $how = mpirun ]; then L="mpirun --allow-run-as-root --oversubscribe -np 2"; P="--peers mpi"; else L="$t/launcher/ringfuse-run -np 2 --"; P=""; fi
  out=$($L $t/perf/ringfuse-perf fusion --model small1000 -n 300 -w 20 $P ${EXTRA:-} 2>&1 | sed 's/^\[0\] //')
  row() { echo "$out" | awk -v m=$1 -v k=$2 '$1==m&&$2==k&&NF>=9{print $5; exit}'; }
  s=$(row small1000 single); f=$(row small1000 fused); m=$(row small1000 mpi-per-tensor); sc=$(row scalar fused)
  ue=$(echo "$out" | awk '/unfused with the engine started/{print $NF}')
  fm=; [ -n "$m" ] && fm=$(python3 -c "print(round($f/$m,3))")
  echo "$r $how $t load=$(cut -d' ' -f1 /proc/loadavg) single=$s fused=$f mpi=$m f/s=$(python3 -c "print(round($f/$s,2))") f/m=$fm scalar=$sc unf=$ue"
done; done
