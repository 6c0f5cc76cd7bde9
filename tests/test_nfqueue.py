"""gateway/inline/nfqueue.py (netlink wire format) and the worker's EVE sink."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.inline import nfqueue as nq
from gateway.inline.worker import AppendLines
from tests.labhelp import needs_lab, unique_prefix

REPO = Path(__file__).resolve().parent.parent


def attr(atype: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, atype) + payload + b"\0" * (-n & 3)


def packet_message(pid: int, payload: bytes, mark: int | None = None, indev: int = 0, outdev: int = 0) -> bytes:
    attrs = attr(nq.NFQA_PACKET_HDR, struct.pack("!IHB", pid, 0x0800, 2))
    if indev:
        attrs += attr(nq.NFQA_IFINDEX_INDEV, struct.pack("!I", indev))
    if outdev:
        attrs += attr(nq.NFQA_IFINDEX_OUTDEV, struct.pack("!I", outdev))
    if mark is not None:
        attrs += attr(nq.NFQA_MARK, struct.pack("!I", mark))
    attrs += attr(9, b"\x00" * 12)                 # NFQA_HWADDR: skipped
    attrs += attr(nq.NFQA_PAYLOAD, payload)
    body = struct.pack("=BBH", 2, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), nq.NFQNL_MSG_PACKET, 0, 0, 0) + body


def test_parse_packet_reads_id_mark_devices_and_payload():
    payload = bytes(range(45))                     # odd length: attribute padding must not leak in
    msg = packet_message(0xDEADBEEF, payload, mark=0x300000, indev=3, outdev=7)
    buf = bytearray(msg + b"\xff" * 16)            # junk past the datagram is ignored
    assert nq.parse_packet(buf, len(msg)) == (0xDEADBEEF, 0x300000, 3, 7, payload)


def test_parse_packet_defaults_and_truncation():
    msg = packet_message(5, b"abc")
    assert nq.parse_packet(msg, len(msg)) == (5, 0, 0, 0, b"abc")
    assert nq.parse_packet(msg, 10) is None                     # shorter than the headers
    long = packet_message(6, b"0123456789abcdef")
    cut = nq.parse_packet(bytearray(long) + b"JUNK", len(long) - 8)   # datagram ends inside the payload
    assert cut == (6, 0, 0, 0, b"01234567")


def test_error_reply_raises_with_the_reason():
    err = struct.pack("=IHHII", 36, nq.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -16) + b"\0" * 16
    with pytest.raises(nq.NfQueueError, match="busy"):
        nq.parse_packet(err, len(err))
    ack = struct.pack("=IHHII", 36, nq.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", 0) + b"\0" * 16
    assert nq.parse_packet(ack, len(ack)) is None


def test_verdict_messages_layout():
    m = nq.verdict_message(3, 77, nq.NF_REPEAT, mark=0x200000)
    length, mtype, flags, _, _ = struct.unpack_from("=IHHII", m)
    assert length == len(m) == 16 + 4 + 12 + 8
    assert mtype == nq.NFQNL_MSG_VERDICT and flags == nq.NLM_F_REQUEST
    assert struct.unpack_from("!H", m, 18)[0] == 3              # res_id = queue, big-endian
    assert struct.unpack_from("=HH", m, 20) == (12, nq.NFQA_VERDICT_HDR)
    assert struct.unpack_from("!II", m, 24) == (nq.NF_REPEAT, 77)
    assert struct.unpack_from("=HH", m, 32) == (8, nq.NFQA_MARK)
    assert struct.unpack_from("!I", m, 36)[0] == 0x200000
    b = nq.batch_verdict_message(1, 1000)
    assert struct.unpack_from("=IH", b) == (len(b), nq.NFQNL_MSG_VERDICT_BATCH)
    assert struct.unpack_from("!II", b, 24) == (nq.NF_ACCEPT, 1000)
    assert len(nq.verdict_message(0, 1, nq.NF_DROP)) == 32      # no mark attribute unless asked


def test_eve_lines_of_concurrent_workers_never_interleave(tmp_path):
    path = tmp_path / "eve.json"
    writers = 4
    lines_each = 3000
    pids = []
    for w in range(writers):
        pid = os.fork()
        if pid == 0:
            try:
                sink = AppendLines(path)
                for i in range(lines_each):
                    # lines of different sizes, some past the 64 KB flush threshold in total
                    sink.write(json.dumps({"w": w, "i": i, "pad": "x" * (i % 200)}) + "\n")
                sink.close()
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    lines = path.read_text().splitlines()
    assert len(lines) == writers * lines_each
    seen = {}
    for line in lines:
        ev = json.loads(line)                       # raises if two lines were mixed
        assert ev["i"] == seen.get(ev["w"], -1) + 1  # each worker's lines stay in order
        seen[ev["w"]] = ev["i"]


BIND_TWICE = """
import sys
from gateway.inline.nfqueue import NfQueue, NfQueueError
a = NfQueue(7, maxlen=16, fail_open=True)
try:
    NfQueue(7)
except NfQueueError as e:
    print("second:", e)
print(open("/proc/net/netfilter/nfnetlink_queue").read())
"""


@pytest.mark.netns
@needs_lab
def test_bind_configures_the_queue_and_refuses_a_second_listener():
    ns = f"{unique_prefix()}-nq"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", BIND_TWICE], capture_output=True,
                           text=True, timeout=30, cwd=REPO, check=False)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)
    assert r.returncode == 0, r.stderr
    assert "second:" in r.stdout and "another process bound" in r.stdout, r.stdout
    row = [line.split() for line in r.stdout.splitlines() if line.split()[:1] == ["7"]]
    assert row, r.stdout
    assert row[0][3] == "2" and int(row[0][4]) > 65000          # copy mode packet, whole packets


def _reference_parse(msg: bytes, n: int):
    """The attribute walk written plainly: what parse_packet must return, fast path or not."""
    mlen = struct.unpack_from("=I", msg)[0]
    end, off, found = min(n, mlen), 20, {}
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", msg, off)
        if alen < 4:
            break
        atype &= 0x3FFF
        if atype == nq.NFQA_PAYLOAD:
            return (*(found.get(t, 0) for t in (1, 3, 5, 6)), msg[off + 4:min(off + alen, end)])
        if atype in (1, 3, 5, 6) and off + 8 <= end:
            found[atype] = struct.unpack_from("!I", msg, off + 4)[0]
        off += (alen + 3) & ~3
    return (*(found.get(t, 0) for t in (1, 3, 5, 6)), b"")


@pytest.mark.parametrize("layout", [
    (1, 5, 6, 9, 10),             # what the kernel sends for a forwarded packet (seen in the lab)
    (1, 5, 6, 3, 9, 14, 10),      # ... with a mark and skb info
    (1, 5, 7, 6, 8, 10),          # bridge: physical devices in between (not the fast-path prefix)
    (1, 6, 10),                   # output hook: no indev
    (5, 1, 6, 10),                # another order
])
def test_parse_packet_fast_path_and_plain_walk_agree(layout):
    values = {1: struct.pack("!IHB", 0xA1B2C3D4, 0x0800, 2), 3: struct.pack("!I", 0x80000001),
              5: struct.pack("!I", 0x0102), 6: struct.pack("!I", 0x0A0B0C0D), 7: struct.pack("!I", 9),
              8: struct.pack("!I", 8), 9: b"\x00\x06" + bytes(10), 14: struct.pack("!II", 1, 2)}
    payload = bytes(range(200)) * 7
    attrs = b"".join(attr(t, payload if t == nq.NFQA_PAYLOAD else values[t]) for t in layout)
    body = struct.pack("=BBH", 2, 0, 0) + attrs
    msg = struct.pack("=IHHII", 16 + len(body), nq.NFQNL_MSG_PACKET, 0, 0, 0) + body
    want = _reference_parse(msg, len(msg))
    assert want[4] == payload
    assert nq.parse_packet(bytearray(msg) + bytes(64), len(msg)) == want
    for cut in (21, 30, 44, 47, 48, 49, 60, 100):            # datagrams cut short anywhere
        assert nq.parse_packet(bytearray(msg[:cut]) + b"\xee" * 64, cut) == _reference_parse(msg, cut)
