#!/bin/bash
# strace -c of each rank: usage strace_rank.sh OUTPREFIX PROGRAM ARGS
out=$1; shift
exec strace -c -f -o $out.$RINGFUSE_RANK "$@"
