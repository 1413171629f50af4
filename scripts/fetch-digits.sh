#!/usr/bin/env bash
# Extracts scikit-learn's handwritten digits (digits.csv.gz) from Debian's python3-sklearn
# package without installing it or the Python stack: apt-get download + dpkg -x.
# Usage: scripts/fetch-digits.sh DEST_DIR   (writes DEST_DIR/digits.csv.gz; idempotent)
set -euo pipefail
dest=${1:?usage: fetch-digits.sh DEST_DIR}
if [[ -s "$dest/digits.csv.gz" ]]; then
  exit 0
fi
mkdir -p "$dest"
work=$(mktemp -d /tmp/ringfuse-digits-XXXXXX)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq python3-sklearn 2>/dev/null) || {
  # apt-get download needs package lists; a fresh machine may not have them yet.
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=""; fi
  $SUDO apt-get update -qq
  (cd "$work" && apt-get download -qq python3-sklearn)
}
dpkg -x "$work"/python3-sklearn_*.deb "$work/root"
cp "$work/root/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz" "$dest/"
echo "fetch-digits: wrote $dest/digits.csv.gz"
