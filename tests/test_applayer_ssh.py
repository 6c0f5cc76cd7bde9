"""SSH parser (applayer/ssh.py): banners, binary packets up to NEWKEYS, HASSH, anomalies, bounds, fuzzing."""
from __future__ import annotations

import hashlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.applayer.detect import detect
from gateway.applayer.ssh import BANNER_DONE, FINISHED, MAX_BANNER, SshParser, parse_banner

CLIENT_ALGS = (b"curve25519-sha256,ext-info-c", b"ssh-ed25519,rsa-sha2-512", b"aes128-ctr,aes256-gcm@openssh.com",
               b"aes256-ctr", b"hmac-sha2-256", b"hmac-sha1", b"none,zlib@openssh.com", b"zlib", b"", b"")


def packet(code: int, payload: bytes = b"", pad: int = 4) -> bytes:
    """One unencrypted SSH binary packet."""
    body = bytes([code]) + payload
    return struct.pack(">IB", 1 + len(body) + pad, pad) + body + b"\0" * pad


def kexinit(algs=CLIENT_ALGS, cookie: bytes = b"C" * 16) -> bytes:
    lists = b"".join(struct.pack(">I", len(a)) + a for a in algs)
    return packet(20, cookie + lists + b"\0" + b"\0\0\0\0")


def test_parse_banner():
    assert parse_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2") == (b"2.0", b"OpenSSH_9.2p1")
    assert parse_banner(b"SSH-1.99-Cisco-1.25") == (b"1.99", b"Cisco-1.25")
    assert parse_banner(b"SSH-2.0-") == (b"2.0", b"")
    assert parse_banner(b"SSH-Single-") == (b"Single", b"")
    for bad in (b"SSH--x", b"SSH-2.0", b"ssh-2.0-x", b"HTTP/1.1 200 OK", b""):
        assert parse_banner(bad) is None


def test_session_both_sides_split_anywhere():
    client = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" + kexinit() + packet(21) + b"\x8f" * 64     # then encrypted
    server = b"SSH-2.0-dropbear_2016.74\r\n" + kexinit() + packet(30, b"x" * 300) + packet(21)
    p = SshParser()
    kinds = []
    for i in range(len(client)):        # one byte at a time
        kinds += [(e.kind, e.to_server) for e in p.feed(client[i:i + 1], True)]
    kinds += [(e.kind, e.to_server) for e in p.feed(server, False)]
    assert kinds == [("banner", True), ("kexinit", True), ("encrypted", True),
                     ("banner", False), ("kexinit", False), ("encrypted", False)]
    s = p.session
    assert (s.client.proto_version, s.client.software_version) == (b"2.0", b"OpenSSH_9.2p1")
    assert s.server.software_version == b"dropbear_2016.74"
    # HASSH: kex; encryption, MAC, compression of the side's own direction
    assert s.client.hassh_string == b"curve25519-sha256,ext-info-c;aes128-ctr,aes256-gcm@openssh.com;" \
                                    b"hmac-sha2-256;none,zlib@openssh.com"
    assert s.client.hassh == hashlib.md5(s.client.hassh_string).hexdigest().encode()
    assert s.server.hassh_string == b"curve25519-sha256,ext-info-c;aes256-ctr;hmac-sha1;zlib"
    assert s.done and p.done and s.anomalies == []
    assert s.buffers("ssh.software", True) == [b"OpenSSH_9.2p1"]
    assert s.buffers("ssh.proto", False) == [b"2.0"]
    assert s.buffers("ssh.hassh", False) == [s.client.hassh]        # the client's, whatever the direction
    assert s.buffers("ssh.hassh.server.string", True) == [s.server.hassh_string]
    assert p.feed(b"more encrypted bytes", True) == []


def test_banner_line_ends_and_waiting():
    p = SshParser()
    assert p.feed(b"SSH-2.0-x\r", True) == []           # CR last: an LF may follow
    assert p.session.client.state < BANNER_DONE
    assert [e.kind for e in p.feed(b"\n", True)] == ["banner"]
    p = SshParser()
    assert [e.kind for e in p.feed(b"SSH-2.0-lf\n" + packet(21), False)] == ["banner", "encrypted"]
    p = SshParser()
    assert [e.kind for e in p.feed(b"SSH-2.0-cr\r" + packet(2, b"ignored"), False)] == ["banner"]
    assert p.session.server.software_version == b"cr"


def test_anomalies():
    p = SshParser()
    assert [(e.kind, e.info) for e in p.feed(b"SSH--x\r\n", True)] == [("anomaly", "invalid_banner")]
    assert p.feed(b"SSH-2.0-late\r\n", True) == []      # the side is given up
    p = SshParser()
    ev = p.feed(b"SSH-2.0-x\r\n" + b"\0\0\0\x01\0\0", False)
    assert [e.info for e in ev if e.kind == "anomaly"] == ["invalid_record"]
    p = SshParser()
    ev = p.feed(b"SSH-2.0-x\r\n" + struct.pack(">IBB", 70000, 4, 20) + b"k" * 10, True)
    assert [e.info for e in ev if e.kind == "anomaly"] == ["long_kex_record"]
    assert p.feed(b"k" * (70000 - 2 - 10), True) == []         # skipped by its length, not kept
    assert [e.kind for e in p.feed(packet(21), True)] == ["encrypted"]


def test_long_banner_is_parsed_and_its_rest_skipped():
    long_sw = b"L" * 1000
    p = SshParser()
    ev = p.feed(b"SSH-2.0-" + long_sw[:500], True)         # no line end within MAX_BANNER
    assert [(e.kind, e.info) for e in ev] == [("banner", ""), ("anomaly", "long_banner")]
    assert len(p.session.client.software_version) == MAX_BANNER - len(b"SSH-2.0-")
    assert p.feed(long_sw[500:], True) == []                # still the banner line: skipped, not kept
    assert p.session.client._buf == b""
    assert [e.kind for e in p.feed(b" comment\r\n" + packet(21), True)] == ["encrypted"]
    p = SshParser()
    ev = p.feed(b"SSH-2.0-" + long_sw + b"\r\n", True)      # a long line that arrived whole
    assert [e.info for e in ev] == ["", "long_banner"]
    assert p.session.client.state == BANNER_DONE


def test_detection():
    assert detect(b"SSH-2.0-OpenSSH_9.2\r\n", b"", "tcp", 40000, 2222) == "ssh"
    assert detect(b"", b"SSH-2.0-dropbear\r\n", "tcp", 40000, 22) == "ssh"
    assert detect(b"", b"ssh-2.0-x\r\n", "tcp", 40000, 22) == "ssh"   # Suricata's probe ignores case
    assert detect(b"SS", b"", "tcp", 40000, 22) is None                # a prefix: wait
    assert detect(b"GET / HTTP/1.1\r\n", b"", "tcp", 40000, 22) == "http"   # content decides, not port 22


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.booleans(), st.lists(st.integers(1, 64), max_size=8))
def test_fuzz_never_raises_and_stays_bounded(data, to_server, cuts):
    p = SshParser()
    pos = 0
    for n in cuts + [len(data)]:
        for e in p.feed(data[pos:pos + n], to_server):
            assert e.tx is p.session
        pos += n
    side = p.session.side(to_server)
    assert len(side._buf) <= max(MAX_BANNER, 6 + 65535 + 4)
    assert side.state <= FINISHED and all(isinstance(a, str) for a in p.session.anomalies)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=80)), max_size=6), st.integers(1, 40))
def test_fuzz_packets_after_a_banner(pkts, cut):
    data = b"SSH-2.0-fuzz\r\n" + b"".join(packet(code, body) for code, body in pkts)
    p = SshParser()
    kinds = []
    for i in range(0, len(data), cut):
        kinds += [e.kind for e in p.feed(data[i:i + cut], True)]
    assert kinds[0] == "banner"
    codes = [c for c, _ in pkts]
    if 21 in codes:
        assert kinds.count("encrypted") == 1 and p.session.client.state == FINISHED
