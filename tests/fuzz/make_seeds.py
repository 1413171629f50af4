#!/usr/bin/env python3
"""Writes the committed seed corpora under corpus/<target>/ (re-run after changing a format)."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- protobuf by hand (store.proto) ---
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, n):
    return varint(num << 3) + varint(n)


def field_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint((num << 3) | 2) + varint(len(b)) + b


def request(req_id, op_field, body):
    return field_varint(1, req_id) + field_bytes(op_field, body)


def frame(body):
    return struct.pack(">I", len(body)) + body


SET, GET, WAIT, ADD, REMOVE, CHECK, HELLO, AUTH = range(2, 10)
set_kv = request(1, SET, field_bytes(1, "ringfuse/mesh/addr/0") + field_bytes(2, "127.0.0.1:4242"))
get_k = request(2, GET, field_bytes(1, "ringfuse/mesh/addr/0") + field_varint(2, 50))
wait_k = request(3, WAIT, field_bytes(1, "a") + field_bytes(1, "b") + field_varint(2, 20))
add_k = request(4, ADD, field_bytes(1, "count") + field_varint(2, 1))
add_neg = request(5, ADD, field_bytes(1, "count") + field_varint(2, -(1 << 63)))
remove_k = request(6, REMOVE, field_bytes(1, "count"))
check_k = request(7, CHECK, field_bytes(1, "a") + field_bytes(1, "count"))
hello = request(1, HELLO, field_bytes(1, b"\x01" * 16))
auth = request(2, AUTH, field_bytes(1, b"\x02" * 32))
huge_timeout = request(8, GET, field_bytes(1, "never") + field_varint(2, (1 << 63) - 1))
# mode byte first: 0 parse only, 1 raw unauthenticated, 2 handshake + raw, 3 handshake + framed
write("store_frame", "parse_set", b"\x00" + frame(set_kv))
write("store_frame", "raw_hello_auth_wrong", b"\x01" + frame(hello) + frame(auth))
write("store_frame", "raw_set_unauthenticated", b"\x01" + frame(set_kv))
write("store_frame", "raw_http", b"\x01GET / HTTP/1.1\r\nHost: x\r\n\r\n")
write("store_frame", "raw_oversized", b"\x01\xff\xff\xff\xff")
write("store_frame", "authed_sequence",
      b"\x02" + frame(set_kv) + frame(get_k) + frame(add_k) + frame(add_neg) + frame(add_neg)
      + frame(wait_k) + frame(check_k) + frame(remove_k))
write("store_frame", "authed_truncated", b"\x02" + frame(set_kv)[:-3])
write("store_frame", "authed_hello_again", b"\x02" + frame(hello))
write("store_frame", "framed_get", b"\x03" + get_k)
write("store_frame", "framed_huge_timeout", b"\x03" + huge_timeout)
write("store_frame", "framed_empty", b"\x03")

# --- environment: NAME=VALUE lines ---
env = {
    "ringfuse_world": "RINGFUSE_RANK=1\nRINGFUSE_SIZE=4\nRINGFUSE_LOCAL_RANK=1\nRINGFUSE_LOCAL_SIZE=2\n"
                      "RINGFUSE_CROSS_RANK=0\nRINGFUSE_CROSS_SIZE=2\nRINGFUSE_STORE_ADDR=[::1]:29500\n"
                      "RINGFUSE_JOB_ID=job\nRINGFUSE_JOB_SECRET=s3cret\n",
    "torchrun_world": "RANK=0\nWORLD_SIZE=2\nMASTER_ADDR=10.0.0.1\nMASTER_PORT=65535\n"
                      "TORCHELASTIC_USE_AGENT_STORE=True\nLOCAL_WORLD_SIZE=2\nLOCAL_RANK=0\n",
    "mpirun_only": "OMPI_COMM_WORLD_SIZE=4\nOMPI_COMM_WORLD_RANK=2\n",
    "tunables": "RINGFUSE_ALGO=rhd\nRINGFUSE_TRANSPORT=shm\nRINGFUSE_TIMEOUT_S=1e-3\n"
                "RINGFUSE_CONNECT_TIMEOUT_S=604800\nRINGFUSE_FUSION_THRESHOLD=64m\n"
                "RINGFUSE_CYCLE_TIME_MS=0.05\nRINGFUSE_CACHE_CAPACITY=1048576\n"
                "RINGFUSE_STALL_TIMEOUT_S=60\nRINGFUSE_STALL_ABORT_S=120\nRINGFUSE_TIMELINE=/tmp/t\n",
    "bad_values": "RINGFUSE_RANK=-1\nRINGFUSE_SIZE=99999999999999999999\nRINGFUSE_FUSION_THRESHOLD=1025G\n"
                  "RINGFUSE_TIMEOUT_S=nan\n",
    "empty": "",
}
for name, text in env.items():
    write("environment", name, text)
write("environment", "timeout_1e-6", "RINGFUSE_TIMEOUT_S=1e-6\nRINGFUSE_CONNECT_TIMEOUT_S=0.0000001\n")

# --- hostfiles ---
write("hostfile", "openmpi", "# MPIJob\nworker-0.svc slots=2 max_slots=4\nworker-1.svc slots=2\n")
write("hostfile", "colon", "node-a:4\nnode-b:4  # trailing comment\r\n\n")
write("hostfile", "ipv6_and_plain", "fe80::1\n10.0.0.2\n10.0.0.2 slots=3\n")
write("hostfile", "bad", "host slots=0\nhost slots=x\n:3\nhost foo\n")
write("hostfile", "big_slots", "a slots=2147483647\na slots=1\n")

# --- -H values ---
write("host_list", "simple", "node-a:2,node-b:2")
write("host_list", "ipv6", "[::1]:2,[fe80::1%eth0],127.0.0.2")
write("host_list", "merge", "localhost:1, localhost:3 ,127.0.0.1")
write("host_list", "bad", "a:,:2,[::1,[x]y")
write("host_list", "big_slots", "a:2147483647,a:1")

# --- DNS answers (raw wire format) ---
def dns_answer(name, addrs, rcode=0, qtype=1):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"
    header = struct.pack(">HHHHHH", 0x1234, 0x8180 | rcode, 1, len(addrs), 0, 0)
    question = labels + struct.pack(">HH", qtype, 1)
    answers = b""
    for a in addrs:
        answers += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + bytes(int(x) for x in a.split("."))
    return header + question + answers


write("dns_answer", "three_records",
      dns_answer("trainer.default.svc.cluster.local", ["10.0.0.3", "10.0.0.1", "10.0.0.10"]))
write("dns_answer", "duplicates", dns_answer("svc.local", ["10.0.0.1", "10.0.0.1"]))
write("dns_answer", "nxdomain", dns_answer("missing.local", [], rcode=3))
write("dns_answer", "no_data", dns_answer("svc.local", []))
write("dns_answer", "many", dns_answer("svc.local", ["10.1.%d.%d" % (i // 250, i % 250) for i in range(70)]))
write("dns_answer", "truncated", dns_answer("svc.local", ["10.0.0.1"])[:-3])

# --- engine messages (little-endian, same layout as engine/wire.hpp) ---
def u8(v): return struct.pack("<B", v)
def u32(v): return struct.pack("<I", v)
def i32(v): return struct.pack("<i", v)
def u64(v): return struct.pack("<Q", v)
def i64(v): return struct.pack("<q", v)
def f64(v): return struct.pack("<d", v)
def string(s): return u32(len(s)) + s.encode()


def fingerprint(name, shape, op_type=0, dtype=2, op=0, root=-1, device=0):
    return (u8(op_type) + u8(dtype) + u8(op) + u8(0) + i32(root) + u8(device) + f64(1.0) + f64(1.0)
            + u32(len(shape)) + b"".join(i64(d) for d in shape) + string(name))


cycle = u8(4) + u32(3) + u64(7) + u8(0) + u32(0) + u64(8) + u8(1) + fingerprint("grad/c", [10, 3]) \
    + u64(9) + u8(0) + u32(3)
write("engine_messages", "cycle_message", b"\x00" + cycle)
write("engine_messages", "cycle_message_join", b"\x00" + u8(1) + u32(0))
response = (u8(0) + string("") + u32(3)
            + u64(7) + u8(0) + u32(1)
            + u64(8) + u8(1) + fingerprint("grad/g", [4, 5], op_type=1) + u32(2) + i64(4) + i64(6)
            + u64(9) + u8(2) + fingerprint("grad/x", [2], device=1) + string("mismatch: rank 1 has f64")
            + u32(2) + i32(0) + i32(3) + u8(3) + i32(3))
write("engine_messages", "cycle_response", b"\x01" + response)
write("engine_messages", "cycle_response_abort", b"\x01" + u8(1) + string("rank 2 lost") + u32(0) + u32(0) + u8(0) + i32(-1))
# The cache-index round: busy|indexed, first seq 12, indices 0 and 1, no announcements; and the
# answer releasing one of them.
write("engine_messages", "cycle_message_indexed", b"\x00" + u8(4 | 8) + u64(12) + u32(2) + u32(0) + u32(1) + u32(0))
write("engine_messages", "cycle_response_indexed", b"\x01" + u8(0) + string("") + u32(0) + u32(0) + u8(2 | 4) + i32(-1) + u32(1))
write("engine_messages", "huge_count", b"\x00" + u8(0) + u32(0xffffffff))
write("engine_messages", "huge_count_response", b"\x01" + u8(0) + string("") + u32(0xffffffff))
