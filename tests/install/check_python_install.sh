#!/usr/bin/env bash
# Installs the build into a scratch prefix and runs the installed Python package (ringfuse.torch
# and its extension) from there under the installed ringfuse-run: Debian's /usr/bin/python3
# finds it through PREFIX/<python dir> alone, and the extension finds libringfuse by its rpath.
set -euo pipefail
build_dir=$1
python=$2
python_dir=$3   # relative to the prefix, e.g. lib/python3.11/dist-packages
work=$(mktemp -d /tmp/ringfuse-pyinstall-XXXXXX)
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
test -f "$work/prefix/$python_dir/ringfuse/torch/__init__.py"
ls "$work/prefix/$python_dir"/ringfuse/_core*.so > /dev/null

unset LD_LIBRARY_PATH
PYTHONPATH="$work/prefix/$python_dir" PYTHONDONTWRITEBYTECODE=1 RINGFUSE_LOG_LEVEL=warn \
  "$work/prefix/bin/ringfuse-run" -np 2 -- "$python" -c "
import torch, ringfuse, ringfuse.torch as hvd
assert ringfuse.__file__.startswith('$work/prefix/'), ringfuse.__file__
hvd.init()
out = hvd.allreduce(torch.ones(3), op=hvd.Sum)
assert torch.equal(out, torch.full((3,), 2.0)), out
print('python install: OK')
" | tee "$work/run.log"
test "$(grep -c 'python install: OK' "$work/run.log")" -eq 2
echo "install check: the ringfuse Python package runs from the installed prefix"
