#!/bin/sh
# Runs "$@" when Node.js is installed (scripts/install-deps.sh installs nodejs and npm);
# otherwise exits 77, which CTest reports as skipped.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node/npm not found: install Debian's nodejs and npm (scripts/install-deps.sh does)"
  exit 77
fi
exec "$@"
