#!/usr/bin/env bash
# CTest fuzz_run_<target> (label fuzz): runs one libFuzzer binary for a short fixed time on a
# fresh copy of its committed seeds.
#
#   run_fuzzer.sh BINARY SEEDS WORK SECONDS LSAN_SUPPRESSIONS [FAILED_MARKER]
#
# BINARY is the clang build's fuzz_<target> (scripts/fuzz.sh --build-only, which
# scripts/test.sh runs before CTest). Without it the test is skipped (exit 77), so a plain
# `ctest` on a machine without the clang build still passes; FAILED_MARKER, written by
# scripts/test.sh when that build failed, turns the skip into a failure. The working corpus,
# log and any crash input go to WORK (in the build dir); the committed seeds are never modified.
set -uo pipefail
binary=$1 seeds=$2 work=$3 seconds=$4 suppressions=$5 marker=${6:-}
name=$(basename "$binary")

if [[ -n $marker && -f $marker ]]; then
  echo "$name: the clang fuzz build failed (scripts/fuzz.sh --build-only); its log ends:"
  tail -n 30 "$marker"
  exit 1
fi
if [[ ! -x $binary ]]; then
  echo "SKIP: $binary not built: run scripts/fuzz.sh --build-only (clang-14 +" \
       "libclang-rt-14-dev; scripts/test.sh does) to fuzz $name here"
  exit 77
fi

rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp -r "$seeds"/. "$work/corpus/"
log=$work/fuzz.log
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$suppressions}
echo "$name: fuzzing ${seconds}s ($(date -r "$binary" '+binary built %F %T'); log $log)"
# libFuzzer's own default exit code for a finding is 77, CTest's skip code here: use 1.
"$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -error_exitcode=1 \
  -timeout_exitcode=1 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/corpus" >"$log" 2>&1
rc=$?

final_stat() { grep -o "stat::$1: *[0-9]*" "$log" | grep -o '[0-9]*$' | tail -1; }
last=$(grep -E '^#[0-9]+' "$log" | tail -1)
field() { grep -o "$1: [0-9]*" <<<"$last" | grep -o '[0-9]*$'; }
crashes=$(find "$work/artifacts" -type f | wc -l)
echo "$name: rc=$rc execs=$(final_stat number_of_executed_units) exec/s=$(final_stat average_exec_per_sec)" \
     "cov=$(field cov) ft=$(field ft) corpus=$(field corp) artifacts=$crashes"
if ((rc != 0 || crashes > 0)); then
  grep -m 24 -E 'ERROR|runtime error|SUMMARY|deadly signal|uncaught|store_frame:|Test unit written|^    #[0-9]' "$log"
  echo "$name: FINDING: input(s) in $work/artifacts/ (replay: $binary FILE); full log $log"
  exit 1
fi
