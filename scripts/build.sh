#!/usr/bin/env bash
# Configures and builds Ringfuse (Release, Ninja, ccache) into ${RINGFUSE_BUILD_DIR:-build}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${RINGFUSE_BUILD_DIR:-$root/build}
jobs=${RINGFUSE_JOBS:-$(nproc)}
# Lets ccache cache the libtorch precompiled header and the files that use it.
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
# Paths under the checkout count relative to it, so a clone in another folder (CI's) hits the
# cache its earlier builds filled.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}

cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-Release} "$@"
cmake --build "$build_dir" -j "$jobs"
