#!/bin/bash
# One line per run: busbw and ratio per size, and each host's leaves (MB), sorted.
for f in "$@"; do
  echo "== $(basename $f .txt) $(head -1 $f | cut -d' ' -f5-)"
  grep -E "^\[0\] +(ringfuse|gloo) " $f | awk '{printf "   %-8s %9s %-16s busbw %.1f MB/s (%.0f %% of link) ratio %s\n", $2, $3, $7, $3*1.5/$8, $3*1.5/$8, $12}'
  grep -E "^# host|leaf" $f | awk '/^# host/{h=$3; next} {printf "%s %.1f\n", h, $4/1e6}' | sort -k1,1n -k2,2n | awk '{a[$1]=a[$1] " " $2} END{for(h=0;h<4;h++) print "   host " h ":" a[h]}'
done
