#!/usr/bin/env bash
# README command 1: install dependencies, build, and run the main job on this machine:
# four ranks all-reducing through ringfuse-run, each checking its result.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${RINGFUSE_BUILD_DIR:-$root/build}

"$root/scripts/install-deps.sh"
RINGFUSE_BUILD_DIR=$build_dir "$root/scripts/build.sh" -DRINGFUSE_BUILD_TESTS=OFF

echo "== main job: ringfuse-run -np 4 examples/hello_allreduce"
"$build_dir/launcher/ringfuse-run" -np 4 -- "$build_dir/examples/hello_allreduce"
