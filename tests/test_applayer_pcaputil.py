"""Tiny pcap reader and TCP stream assembler for the app-layer tests (no scapy: it is slow on 200 files).

Only what the test captures need: classic pcap, Ethernet (+VLAN) or BSD loopback, IPv4/IPv6, TCP/UDP.
Streams are ordered by sequence number from the SYN; duplicates and retransmissions are dropped.
"""
from __future__ import annotations

import struct
from pathlib import Path

DATA = Path(__file__).parent / "data" / "applayer"


def read_pcap(path: Path):
    """Yield (src, sport, dst, dport, proto, tcp_seq, tcp_flags, payload) per TCP/UDP packet."""
    raw = path.read_bytes()
    magic = raw[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack_from(endian + "I", raw, 20)[0]
    pos = 24
    while pos + 16 <= len(raw):
        incl = struct.unpack_from(endian + "I", raw, pos + 8)[0]
        frame = raw[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        if linktype == 1:
            off, etype = 14, struct.unpack_from("!H", frame, 12)[0]
            while etype in (0x8100, 0x88A8):
                etype = struct.unpack_from("!H", frame, off + 2)[0]
                off += 4
        elif linktype == 0:
            fam = struct.unpack_from("<I", frame, 0)[0]
            off, etype = 4, (0x0800 if fam == 2 else 0x86DD)
        else:
            continue
        if etype == 0x0800:
            ihl = (frame[off] & 0x0F) * 4
            total = struct.unpack_from("!H", frame, off + 2)[0]
            proto = frame[off + 9]
            src, dst = frame[off + 12:off + 16], frame[off + 16:off + 20]
            l4, end = off + ihl, off + total
        elif etype == 0x86DD:
            plen = struct.unpack_from("!H", frame, off + 4)[0]
            proto = frame[off + 6]
            src, dst = frame[off + 8:off + 24], frame[off + 24:off + 40]
            l4, end = off + 40, off + 40 + plen
        else:
            continue
        if proto == 6:
            sport, dport, seq = struct.unpack_from("!HHI", frame, l4)
            doff = (frame[l4 + 12] >> 4) * 4
            flags = frame[l4 + 13]
            yield src, sport, dst, dport, 6, seq, flags, frame[l4 + doff:end]
        elif proto == 17:
            sport, dport = struct.unpack_from("!HH", frame, l4)
            yield src, sport, dst, dport, 17, 0, 0, frame[l4 + 8:end]


def tcp_streams(path: Path) -> list[tuple[bytes, bytes]]:
    """[(client_bytes, server_bytes)] per TCP connection, in order of first appearance."""
    conns: dict = {}
    for src, sport, dst, dport, proto, seq, flags, payload in read_pcap(path):
        if proto != 6:
            continue
        a, b = (src, sport), (dst, dport)
        key = frozenset((a, b))
        c = conns.setdefault(key, {"client": None, "isn": {}, "segs": {a: {}, b: {}}})
        c["segs"].setdefault(a, {})
        if flags & 0x02:
            c["isn"][a] = (seq + 1) & 0xFFFFFFFF
            if not flags & 0x10:
                c["client"] = a
        if payload:
            if c["client"] is None:
                c["client"] = a
            c["segs"][a].setdefault(seq, payload)
    out = []
    for key, c in conns.items():
        client = c["client"]
        if client is None:
            continue
        server = next(iter(key - {client}))
        sides = []
        for side in (client, server):
            segs = c["segs"].get(side, {})
            if not segs:
                sides.append(b"")
                continue
            isn = c["isn"].get(side, min(segs))
            buf = bytearray()
            for seq in sorted(segs, key=lambda s: (s - isn) & 0xFFFFFFFF):
                off = (seq - isn) & 0xFFFFFFFF
                data = segs[seq]
                if off > len(buf):
                    break                      # a hole: stop, as a stream engine would wait
                if off + len(data) > len(buf):
                    buf += data[len(buf) - off:]
            sides.append(bytes(buf))
        out.append((sides[0], sides[1]))
    return out


def udp_datagrams(path: Path):
    """[(payload, sport, dport)] for every UDP packet."""
    return [(p, sp, dp) for _, sp, _, dp, proto, _, _, p in read_pcap(path) if proto == 17]


def test_reader_assembles_the_evader_exchange():
    streams = tcp_streams(DATA / "http-evader" / "000.pcap")
    assert len(streams) == 1
    client, server = streams[0]
    assert client.startswith(b"GET /chunked/eicar.txt/chunked HTTP/1.1\r\n")
    assert server.startswith(b"HTTP/1.1 200 ok\r\n") and server.endswith(b"0\r\n\r\n")


def test_reader_handles_loopback_captures():
    streams = tcp_streams(DATA / "dns-truncated-rname.pcap")
    assert streams and len(streams[0][0]) > 1000
