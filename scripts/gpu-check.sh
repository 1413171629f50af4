#!/usr/bin/env bash
# The GPU evidence, in one short run on a machine with an NVIDIA GPU that lacks our Debian
# build dependencies (the lent device machine: nvcc, CMake and PyTorch's NCCL, nothing else).
#
#   bash scripts/gpu-check.sh bundle   # here (Debian 12, CUDA 13 + NCCL under /usr/local/cuda):
#                                      # builds build-gpu and copies what the check runs, with
#                                      # the shared libraries Debian gave us, into .gpu-bundle/
#   bash scripts/gpu-check.sh run      # there, from the repository root, with .gpu-bundle/
#                                      # carried: runs every GPU test (CUDA kernels, the NCCL
#                                      # backend, staging, the engine on device tensors, two
#                                      # ranks on one GPU), the packing kernels against a
#                                      # device-to-device cudaMemcpy, ringfuse-perf on GPU
#                                      # buffers against NCCL itself, and ringfuse-train on the
#                                      # GPU; log in ${OUT:-.}/gpu-check.log
#
# libnccl (218 MB) does not travel: `run` uses the one it finds there (PyTorch's wheel ships it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bundle=$root/.gpu-bundle
# The tests find ringfuse-run and their worker by the absolute paths they were built with.
build_dir=/work/main/build-gpu

bundle() {
  # No Open MPI or Gloo: their runtimes would have to travel too, and the GPU paths need neither.
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRINGFUSE_WITH_MPI=OFF \
    -DRINGFUSE_WITH_GLOO=OFF -DRINGFUSE_WITH_TORCH=OFF -DRINGFUSE_BUILD_TESTS=ON
  cmake --build "$build_dir" -j "${RINGFUSE_JOBS:-$(nproc)}" --target nccl_test nccl_worker \
    ringfuse-run ringfuse-cuda-kernel-bench ringfuse-perf
  rm -rf "$bundle"
  mkdir -p "$bundle/lib"
  local binaries=(tests/gpu/nccl_test tests/gpu/nccl_worker launcher/ringfuse-run
                  perf/ringfuse-cuda-kernel-bench perf/ringfuse-perf)
  for binary in "${binaries[@]}"; do
    mkdir -p "$bundle/build-gpu/$(dirname "$binary")"
    cp "$build_dir/$binary" "$bundle/build-gpu/$binary"
  done
  mkdir -p "$bundle/build-gpu/comm"
  cp -P "$build_dir"/comm/libringfuse.so* "$bundle/build-gpu/comm/"
  # Every shared library they load, except the C library's own, the driver's and NCCL.
  # Every shared library they load, except the C and C++ runtimes (the machine's own are newer
  # and serve both our binaries and the trainer it compiles), the driver's and NCCL.
  for binary in "${binaries[@]}"; do ldd "$build_dir/$binary"; done |
    awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*|libcuda|libnccl)\.so' |
    grep -v '/libringfuse\.so' | while read -r library; do cp -L "$library" "$bundle/lib/"; done
  # What scripts/gpu-trainer needs to compile ringfuse-train against the machine's CUDA libtorch
  # (zlib itself is among the libraries above): the headers of CLI11, fmt and zlib, and the
  # digits data set.
  mkdir -p "$bundle/include" "$bundle/data"
  cp -r /usr/include/CLI /usr/include/fmt /usr/include/zlib.h /usr/include/zconf.h "$bundle/include/"
  "$root/scripts/fetch-digits.sh" "$bundle/data" >/dev/null
  du -sh "$bundle"
  ls "$bundle/lib"
}

run() {
  local log=${OUT:-$root}/gpu-check.log
  [[ -d $bundle ]] || { echo "no $bundle: run 'scripts/gpu-check.sh bundle' first and carry it"; exit 2; }
  if [[ ! -e $build_dir || -L $build_dir ]]; then  # else: run where it was built
    mkdir -p "$(dirname "$build_dir")"
    ln -sfn "$bundle/build-gpu" "$build_dir"
  fi
  local nccl
  nccl=$(find /usr/local/cuda/ /usr/lib /opt / -xdev \( -type f -o -type l \) \
         -name 'libnccl.so.2*' -print 2>/dev/null | head -1 || true)
  [[ -n $nccl ]] || { echo "no libnccl.so.2 on this machine"; exit 2; }
  export LD_LIBRARY_PATH=$bundle/lib:$(dirname "$nccl")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  chmod +x "$bundle"/build-gpu/*/* "$bundle"/build-gpu/tests/gpu/* 2>/dev/null || true
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    echo "libnccl: $nccl"
    local status=0
    timeout 400 "$build_dir/tests/gpu/nccl_test" --gtest_brief=0 || status=$?
    echo "nccl_test exit status: $status"
    timeout 120 "$build_dir/perf/ringfuse-cuda-kernel-bench" --benchmark_min_time=0.2 \
      --benchmark_counters_tabular=true || echo "kernel bench exit status: $?"
    echo "ringfuse-perf --device cuda, a world of one, NCCL itself as the peer:"
    timeout 120 "$build_dir/perf/ringfuse-perf" allreduce --device cuda --peers nccl \
      -b 64K -e 256M -f 4 -n 20 -w 5 || status=$?
    echo "ringfuse-perf --device cuda, 2 ranks sharing the GPU, staged (--backend native):"
    timeout 180 "$build_dir/launcher/ringfuse-run" -np 2 -- "$build_dir/perf/ringfuse-perf" \
      allreduce --device cuda --backend native -b 64K -e 64M -f 4 -n 10 -w 2 || status=$?
    train || status=$?
    exit "$status"
  } 2>&1 | tee "$log"
}

# ringfuse-train compiled there against the machine's CUDA libtorch (scripts/gpu-trainer), then
# trained on its GPU: a world of one (the engine's device fusion on its NCCL communicator), and
# two ranks sharing the GPU (RINGFUSE_BACKEND=native: staged through pinned host memory).
train() {
  local torch_prefix trainer_build=${TMPDIR:-/tmp}/ringfuse-gpu-trainer
  if ! torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null); then
    echo "no PyTorch for python3 here: ringfuse-train not built"
    return 0
  fi
  cmake -S "$root/scripts/gpu-trainer" -B "$trainer_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUNDLE="$bundle" -DCMAKE_PREFIX_PATH="$torch_prefix" >/dev/null &&
    cmake --build "$trainer_build" -j "$(nproc)" --target ringfuse-train || return 1
  local args=(--model mlp --dataset digits --digits-csv "$bundle/data/digits.csv.gz"
              --epochs 3 --progress-every 0 --device "${RINGFUSE_TRAIN_DEVICE:-cuda}")
  echo "ringfuse-train, a world of one:"
  timeout 180 "$trainer_build/trainer/ringfuse-train" "${args[@]}" || return 1
  echo "ringfuse-train, 2 ranks on one GPU, RINGFUSE_BACKEND=native:"
  RINGFUSE_BACKEND=native timeout 240 "$build_dir/launcher/ringfuse-run" -np 2 -- \
    "$trainer_build/trainer/ringfuse-train" "${args[@]}" || return 1
}

case ${1:-} in
  bundle) bundle ;;
  run) run ;;
  *) echo "usage: $0 bundle|run"; exit 2 ;;
esac
