#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang (-fsanitize=fuzzer,address,undefined)
# into ${RINGFUSE_FUZZ_BUILD_DIR:-build-fuzz-clang} and runs each for SECONDS (default 10).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # targets: store_frame environment hostfile
#                                             #   host_list dns_answer engine_messages
#   scripts/fuzz.sh --build-only [TARGET...]  # install clang if needed, configure, build; no runs
#
# scripts/test.sh (CI) calls --build-only before CTest; the main build's CTest tests
# fuzz_run_<target> (label fuzz) then run each built target for a short fixed time
# (tests/fuzz/CMakeLists.txt, tests/fuzz/run_fuzzer.sh).
#
# Each target fuzzes a working corpus in the build dir, seeded from tests/fuzz/corpus/<target>/
# (the committed seeds are never modified). Crashes land in BUILD/fuzz-artifacts/; the run
# fails if any target found one. A summary (execs, coverage, features, corpus size) is printed
# at the end and written to BUILD/fuzz-summary.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${RINGFUSE_FUZZ_BUILD_DIR:-$root/build-fuzz-clang}
build_only=0
if [[ ${1:-} == --build-only ]]; then
  build_only=1
  shift
  seconds=0
else
  seconds=${1:-10}
  shift || true
fi
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(store_frame environment hostfile host_list dns_answer engine_messages)
fi

# clang and compiler-rt (libFuzzer, ASan, UBSan runtimes); installed on demand, not by CI.
if ! command -v clang++-14 >/dev/null ||
   ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "fuzz.sh: installing clang-14 libclang-rt-14-dev"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev
fi
"$root/scripts/install-deps.sh"

# Everything is instrumented for coverage (fuzzer-no-link) and checked (ASan + UBSan, any
# UBSan report aborts); only the harnesses link libFuzzer's main (tests/fuzz/CMakeLists.txt).
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S "$root" -B "$build_dir" -G Ninja \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link $san" \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link $san" \
  -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san" \
  -DRINGFUSE_FUZZ=ON -DRINGFUSE_BUILD_TESTS=ON -DRINGFUSE_BUILD_PERF=OFF \
  -DRINGFUSE_BUILD_EXAMPLES=OFF -DRINGFUSE_WITH_TORCH=OFF -DRINGFUSE_WITH_CUDA=OFF \
  -DRINGFUSE_WITH_MPI=OFF -DRINGFUSE_WITH_GLOO=OFF >/dev/null
if ! grep -q "RINGFUSE_HAVE_LIBFUZZER:INTERNAL=1" "$build_dir/CMakeCache.txt"; then
  echo "fuzz.sh: clang cannot link -fsanitize=fuzzer (is libclang-rt-14-dev installed?)" >&2
  exit 1
fi
cmake --build "$build_dir" -j "${RINGFUSE_JOBS:-$(nproc)}" --target "${targets[@]/#/fuzz_}"
if ((build_only)); then
  echo "fuzz.sh: built ${targets[*]} in $build_dir/tests/fuzz/"
  exit 0
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/fuzz/lsan.supp}
summary=$build_dir/fuzz-summary.txt
: >"$summary"
failed=()
for t in "${targets[@]}"; do
  work=$build_dir/fuzz-corpus/$t
  artifacts=$build_dir/fuzz-artifacts/$t
  mkdir -p "$work" "$artifacts"
  log=$build_dir/fuzz-$t.log
  echo "fuzz.sh: $t for ${seconds}s (log: $log)"
  set +e
  "$build_dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 \
    -timeout=10 -rss_limit_mb=4096 -artifact_prefix="$artifacts/" \
    "$work" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  corp=$(grep -o 'corp: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  crashes=$(find "$artifacts" -type f | wc -l)
  line="$t: rc=$rc execs=${execs:-?} exec/s=${speed:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} artifacts=$crashes"
  echo "$line" | tee -a "$summary"
  if ((rc != 0 || crashes > 0)); then
    failed+=("$t")
    grep -m 5 -E 'ERROR|runtime error|SUMMARY|deadly signal|uncaught' "$log" || true
  fi
done
if ((${#failed[@]} > 0)); then
  echo "fuzz.sh: findings in: ${failed[*]} (inputs in $build_dir/fuzz-artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: no findings"
