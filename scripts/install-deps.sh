#!/usr/bin/env bash
# Installs everything Ringfuse needs to build, test and run, from Debian 12's packages only.
# Idempotent: packages already present are left alone; safe to run on every CI start.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost-dev libboost-system-dev
  libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  openmpi-bin libopenmpi-dev
  libc-ares-dev libssl-dev
  dnsmasq-base iproute2 procps curl                # tests: DNS, namespaces, HTTP probes
  libtorch-dev zlib1g-dev dataset-fashion-mnist   # trainer/: libtorch (CPU) and real data
  libgloo-dev nlohmann-json3-dev gnuplot-nox jq   # ringfuse-perf: Gloo peer, JSON, perf/plot
  python3-torch pybind11-dev python3-dev           # python/: ringfuse._core, ringfuse.torch
  python3-pytest python3-torchvision               # tests/python, examples/python
)
# k8s/validate (tests/k8s, label k8s): Node.js >= 18 and npm; Debian 12's nodejs 18 + npm 9 do.
# A machine that already has node and npm (e.g. NodeSource's nodejs, which bundles npm and
# conflicts with Debian's npm package) keeps them.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
