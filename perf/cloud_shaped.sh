#!/bin/bash
# A cloud-shaped network on one machine (issue #17): HOSTS network namespaces on a bridge (a
# private /24 that exists only inside the namespaces, as in tests/multihost), each host's
# egress shaped with tc the way a cloud NIC is: a host-wide link rate and a lower cap on every
# TCP flow. Then `ringfuse-perf allreduce` across them, SLOTS ranks per host (default 1), with
# Gloo in the same run.
#
#   sudo perf/cloud_shaped.sh [BUILD_DIR] -- [ringfuse-perf arguments]
#   HOSTS=4 LINK=800mbit FLOW=100mbit RINGFUSE_SOCKETS_PER_PEER=8 sudo -E perf/cloud_shaped.sh build
#
# Shaping: this kernel has neither the fq qdisc (fq maxrate) nor the flow classifier, so the
# per-flow cap is built from htb and u32, which it has: an htb class of LINK for the host, under
# it 256 leaf classes of FLOW each, and a u32 hash table that puts every TCP segment in the leaf
# of bits 1-8 of its destination port (Linux gives connect() even ports and bind() odd ones,
# so bit 0 would leave half the leaves unused). Flows with distinct ports thus get FLOW each
# and LINK together; two flows in one leaf share it (a hash collision, as in any hashing
# per-flow limiter). Segments without data (pure ACKs, IP length < 128) skip the hash and go to
# the host's own class, as fq gives every flow its own queue: an ACK queued behind another
# flow's 4 MB in a shared leaf stalls the flow it acknowledges (seen: runs at half the rate).
set -euo pipefail

build=${1:-build}
shift || true
[[ "${1:-}" == "--" ]] && shift
perf_args=("$@")
[[ ${#perf_args[@]} -eq 0 ]] && perf_args=(allreduce -b 1M -e 64M -f 4 -n 3 -w 1 -c 0 --peers gloo)

hosts=${HOSTS:-4}
slots=${SLOTS:-1}  # ranks per host
link=${LINK:-800mbit}
flow=${FLOW:-100mbit}
prefix=rfcloud-$$
subnet=10.98.0
work=$(mktemp -d /tmp/rfcloud.XXXXXX)

[[ $(id -u) -eq 0 ]] || { echo "cloud_shaped.sh: needs root (ip netns, tc)" >&2; exit 2; }
run=$(readlink -f "$build/launcher/ringfuse-run")
perf=$(readlink -f "$build/perf/ringfuse-perf")
[[ -x $run && -x $perf ]] || { echo "cloud_shaped.sh: build ringfuse-run and ringfuse-perf in $build first" >&2; exit 2; }

cleanup() {
  for ((i = 0; i < hosts; i++)); do
    for pid in $(ip netns pids "$prefix-h$i" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$prefix-h$i" 2>/dev/null || true
  done
  ip netns del "$prefix-sw" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The per-flow and per-host shaping of one host's egress, as one tc batch.
shape() {
  local ns=$1 batch=$work/tc-$1
  {
    echo "qdisc add dev eth0 root handle 1: htb default 2 r2q 100"
    echo "class add dev eth0 parent 1: classid 1:1 htb rate $link ceil $link burst 256k cburst 256k quantum 65536"
    # The per-flow leaves guarantee little and borrow up to their ceil from 1:1, which lends no
    # more than LINK in all (a leaf whose rate were its ceil would never borrow, and the host's
    # rate would bound nothing). ACKs and the rest have a guaranteed 50 Mbit/s of their own
    # (still charged to 1:1): when they had to borrow too, a host whose data flows filled the
    # link starved the ACKs of the flows it received, and those ran at half their cap.
    echo "class add dev eth0 parent 1:1 classid 1:2 htb rate 50mbit ceil $link prio 0 quantum 65536"
    for ((b = 0; b < 256; b++)); do
      printf "class add dev eth0 parent 1:1 classid 1:%x htb rate 1mbit ceil %s burst 64k cburst 64k prio 1 quantum 65536\n" \
        $((0x100 + b)) "$flow"
    done
    # IP total length (offset 2) below 128: pure ACKs and other data-less segments.
    echo "filter add dev eth0 parent 1: prio 1 protocol ip u32 match ip protocol 6 0xff match u16 0x0000 0xff80 at 2 flowid 1:2"
    echo "filter add dev eth0 parent 1: prio 2 handle 2: protocol ip u32 divisor 256"
    # The 32 bits at offset 20 of an option-less IPv4 header are TCP's ports: the mask keeps
    # bits 1-8 of the destination port, the bucket (u32 shifts the mask's lowest bit to 0).
    echo "filter add dev eth0 parent 1: prio 2 protocol ip u32 ht 800:: match ip protocol 6 0xff hashkey mask 0x000001fe at 20 link 2:"
    for ((b = 0; b < 256; b++)); do
      printf "filter add dev eth0 parent 1: prio 2 protocol ip u32 ht 2:%x: match u32 0 0 flowid 1:%x\n" \
        "$b" $((0x100 + b))
    done
  } >"$batch"
  ip netns exec "$ns" tc -batch "$batch"
}

ip netns add "$prefix-sw"
ip -n "$prefix-sw" link add br0 type bridge
ip -n "$prefix-sw" link set br0 up
host_list=()
for ((i = 0; i < hosts; i++)); do
  ns=$prefix-h$i
  ip netns add "$ns"
  ip -n "$prefix-sw" link add "port$i" type veth peer name eth0 netns "$ns"
  ip -n "$prefix-sw" link set "port$i" master br0 up
  ip -n "$ns" addr add "$subnet.$((i + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  [[ -n "$link" && "$link" != none ]] && shape "$ns"
  echo "$ns" >"$work/$subnet.$((i + 1))"
  host_list+=("$subnet.$((i + 1)):$slots")
done

# The rsh agent: AGENT HOST COMMAND runs COMMAND in HOST's namespace.
cat >"$work/ns-rsh" <<EOF
#!/bin/sh
ns=\$(cat '$work'/"\$1") || { echo "ns-rsh: no host \$1" >&2; exit 255; }
shift
exec ip netns exec "\$ns" /bin/sh -c "\$1"
EOF
chmod +x "$work/ns-rsh"

echo "# cloud_shaped.sh: $hosts hosts x $slots ranks, link $link, per-flow cap $flow, RINGFUSE_SOCKETS_PER_PEER=${RINGFUSE_SOCKETS_PER_PEER:-default}"
hosts_arg=$(IFS=,; echo "${host_list[*]}")
# The launcher passes RINGFUSE_* variables on to remote ranks. These hosts share this machine's
# hostname and /dev/shm, so left to `auto` their ranks would (rightly) prove they can share
# memory: TCP is what separate hosts would use.
ip netns exec "$prefix-h0" env RINGFUSE_TIMEOUT_S=${RINGFUSE_TIMEOUT_S:-600} \
  RINGFUSE_TRANSPORT=${RINGFUSE_TRANSPORT:-tcp} \
  "$run" -np $((hosts * slots)) -H "$hosts_arg" --rsh-agent "$work/ns-rsh" -- "$perf" "${perf_args[@]}"
for ((i = 0; i < hosts; i++)); do
  echo "# host $i egress: $(ip netns exec "$prefix-h$i" tc -s class show dev eth0 classid 1:1 | grep -o 'Sent [0-9]* bytes' || true)"
  # TC_STATS=1: the per-flow leaves that carried more than 1 MB (how the flows spread), and
  # the packets each dropped (its queue full).
  if [[ "${TC_STATS:-0}" == 1 ]]; then
    ip netns exec "$prefix-h$i" tc -s class show dev eth0 | grep -A1 "parent 1:1 " |
      grep -oE "class htb 1:[0-9a-f]+|Sent [0-9]+ bytes [0-9]+ pkt \(dropped [0-9]+" |
      paste - - | tr -d '(' |
      awk '$5 > 1000000 { printf "#   leaf %s: %s bytes, %s dropped\n", $3, $5, $10 }'
  fi
done
