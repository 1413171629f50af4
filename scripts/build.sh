#!/usr/bin/env bash
# Configures and builds Ringfuse (Release, Ninja, ccache) into ${RINGFUSE_BUILD_DIR:-build}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${RINGFUSE_BUILD_DIR:-$root/build}
jobs=${RINGFUSE_JOBS:-$(nproc)}

cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-Release} "$@"
cmake --build "$build_dir" -j "$jobs"
