#!/usr/bin/env bash
# README command 1: install dependencies, build, and run the main job on this machine:
# 4-rank data-parallel training of a CNN on Fashion-MNIST through ringfuse-run, with the
# engine's timeline and rank 0's checkpoints written under the build directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${RINGFUSE_BUILD_DIR:-$root/build}
epochs=${RINGFUSE_MAIN_JOB_EPOCHS:-2}

"$root/scripts/install-deps.sh"
# The job needs no tests, so a fresh build directory is configured without them; one that the
# test command (scripts/test.sh) configured keeps its tests, so ctest there stays current.
configure_tests=()
[ -f "$build_dir/CMakeCache.txt" ] || configure_tests=(-DRINGFUSE_BUILD_TESTS=OFF)
RINGFUSE_BUILD_DIR=$build_dir "$root/scripts/build.sh" "${configure_tests[@]}"

job_dir=$build_dir/main-job
rm -rf "$job_dir"
mkdir -p "$job_dir"
echo "== main job: ringfuse-run -np 4 ringfuse-train --model cnn --dataset fashion-mnist --epochs $epochs"
"$build_dir/launcher/ringfuse-run" -np 4 --timeline "$job_dir/timeline.json" -- \
  "$build_dir/trainer/ringfuse-train" --model cnn --dataset fashion-mnist --epochs "$epochs" \
  --batch-size 64 --lr 0.05 --checkpoint-dir "$job_dir/checkpoints"
