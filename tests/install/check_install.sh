#!/usr/bin/env bash
# Installs the build into a scratch prefix, builds tests/install/consumer against it with
# find_package(ringfuse), and runs it alone and under the installed ringfuse-run.
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d /tmp/ringfuse-install-XXXXXX)
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$source_dir/tests/install/consumer" -B "$work/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"

export LD_LIBRARY_PATH="$work/prefix/lib:$work/prefix/lib64:${LD_LIBRARY_PATH:-}"
"$work/build/consumer"
"$work/prefix/bin/ringfuse-run" -np 3 -- "$work/build/consumer" | tee "$work/run.log"
test "$(grep -c ': OK' "$work/run.log")" -eq 3
echo "install check: headers, library, ringfuse-run and find_package(ringfuse) work"
