#!/usr/bin/env bash
# Extracts scikit-learn's handwritten digits (digits.csv.gz) from Debian's python3-sklearn
# package without installing it or the Python stack.
# Usage: scripts/fetch-digits.sh DEST_DIR   (writes DEST_DIR/digits.csv.gz; idempotent)
set -euo pipefail
dest=${1:?usage: fetch-digits.sh DEST_DIR}
exec "$(dirname "$0")/extract-from-deb.sh" python3-sklearn \
  usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz "$dest"
