#!/usr/bin/env bash
# Copies one file out of a Debian package without installing the package (or its services and
# dependencies): apt-get download + dpkg -x. Idempotent.
# Usage: scripts/extract-from-deb.sh PACKAGE PATH_IN_PACKAGE DEST_DIR
#   e.g. scripts/extract-from-deb.sh prometheus usr/bin/promtool build/tools
set -euo pipefail
package=${1:?usage: extract-from-deb.sh PACKAGE PATH_IN_PACKAGE DEST_DIR}
member=${2:?usage: extract-from-deb.sh PACKAGE PATH_IN_PACKAGE DEST_DIR}
dest=${3:?usage: extract-from-deb.sh PACKAGE PATH_IN_PACKAGE DEST_DIR}
name=$(basename "$member")
if [[ -s "$dest/$name" ]]; then
  exit 0
fi
mkdir -p "$dest"
work=$(mktemp -d /tmp/ringfuse-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq "$package" 2>/dev/null) || {
  # apt-get download needs package lists; a fresh machine may not have them yet.
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=""; fi
  $SUDO apt-get update -qq
  (cd "$work" && apt-get download -qq "$package")
}
dpkg -x "$work/${package}"_*.deb "$work/root"
cp -p "$work/root/$member" "$dest/$name"
echo "extract-from-deb: wrote $dest/$name (from Debian's $package)"
