#!/usr/bin/env bash
# README command 2: install dependencies, build everything, and run the whole test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${RINGFUSE_BUILD_DIR:-$root/build}

"$root/scripts/install-deps.sh"
RINGFUSE_BUILD_DIR=$build_dir "$root/scripts/build.sh" -DRINGFUSE_BUILD_TESTS=ON
"$root/scripts/fetch-digits.sh" "$build_dir/data"  # the trainer tests' small data set
# promtool (Debian's prometheus package, not installed: no server) lints /metrics in a test.
"$root/scripts/extract-from-deb.sh" prometheus usr/bin/promtool "$build_dir/tools"

cd "$build_dir"
ctest --output-on-failure -j "${RINGFUSE_TEST_JOBS:-2}" --timeout 600
