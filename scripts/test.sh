#!/usr/bin/env bash
# README command 2: install dependencies, build everything, and run the whole test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${RINGFUSE_BUILD_DIR:-$root/build}
fuzz_dir=${RINGFUSE_FUZZ_BUILD_DIR:-$root/build-fuzz-clang}

"$root/scripts/install-deps.sh"
RINGFUSE_BUILD_DIR=$build_dir "$root/scripts/build.sh" -DRINGFUSE_BUILD_TESTS=ON \
  -DRINGFUSE_FUZZ_BUILD_DIR="$fuzz_dir"
# The libFuzzer targets (clang-14, installed on demand), which CTest's fuzz_run_<target> tests
# run for a few seconds each. A failed build is not fatal here, so CTest still runs and reports:
# the log becomes the fuzz_run_* tests' failure.
mkdir -p "$fuzz_dir"
rm -f "$fuzz_dir/fuzz-build-failed.log"
if ! RINGFUSE_FUZZ_BUILD_DIR=$fuzz_dir "$root/scripts/fuzz.sh" --build-only 2>&1 |
     tee "$fuzz_dir/fuzz-build.log"; then
  mv "$fuzz_dir/fuzz-build.log" "$fuzz_dir/fuzz-build-failed.log"
  echo "test.sh: the clang fuzz build failed; the fuzz_run_* tests will fail" >&2
fi
"$root/scripts/fetch-digits.sh" "$build_dir/data"  # the trainer tests' small data set
# promtool (Debian's prometheus package, not installed: no server) lints /metrics in a test.
"$root/scripts/extract-from-deb.sh" prometheus usr/bin/promtool "$build_dir/tools"

cd "$build_dir"
# torch-dist-full: PyTorch's distributed suite on gloo and at N = 3 (tests/torch_dist), about
# ten minutes each; `ctest -L torch-dist` runs them.
ctest --output-on-failure -j "${RINGFUSE_TEST_JOBS:-2}" --timeout 600 -LE torch-dist-full
