"""TLS parser: JA3/JA3S and certificate fields against Suricata's expected values, framing, fuzzing."""
from __future__ import annotations

import hashlib
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.applayer.tls import _BUFFERS, TlsLimits, TlsParser, TlsSession, buffer_getter, is_grease

from .test_applayer_pcaputil import DATA, tcp_streams


def session_of(name: str, index: int = 0, parser: TlsParser | None = None):
    client, server = tcp_streams(DATA / name)[index]
    p = parser or TlsParser()
    events = p.feed(client, True) + p.feed(server, False)
    return p.session, events


def test_ja3_and_ja3s_match_suricata():
    # Values from suricata-verify bug-8336 rules (ja3.hash / ja3s.hash contents that must alert).
    s, ev = session_of("tls-ja3-bug-8336.pcap")
    assert s.ja3_hash == "fae0e5d973c96ae1888b99538efa0363"
    assert s.ja3s_hash == "907bf3ecef1c987c889946b737b43de8"
    assert s.ja3_hash == hashlib.md5(s.ja3_string.encode()).hexdigest()
    assert s.ja3s_string == "771,4866,51-43"
    assert s.version_string == "TLS 1.3" and s.buffer("tls.version") == b"TLS 1.3"
    assert s.buffer("ja3.hash") == b"fae0e5d973c96ae1888b99538efa0363"
    kinds = [e.kind for e in ev]
    assert kinds.index("client_hello") < kinds.index("server_hello")
    assert s.encrypted[False]                   # TLS 1.3: server side encrypted after ServerHello


def test_certificate_fields_match_suricata():
    s, ev = session_of("tls-fingerprint-alert.pcap")
    assert s.buffer("tls.cert_fingerprint") == b"90:86:a4:3b:f5:cf:1b:2e:4e:f7:97:96:f9:de:ba:b9:66:35:86:3f"
    assert s.buffer("tls.sni") == b"www.google.com"
    assert s.subject == b"C=US, ST=California, L=Mountain View, O=Google Inc, CN=www.google.com"
    assert s.issuer == b"C=US, O=Google Inc, CN=Google Internet Authority G2"
    assert s.buffers("tls.subjectaltname") == [b"www.google.com"]
    assert len(s.buffers("tls.certs")) >= 2 and s.certs[0][:1] == b"\x30"
    assert "certificate" in [e.kind for e in ev]


def test_nul_byte_in_subject_is_kept():
    s, _ = session_of("tls-subject-zero.pcap")
    assert s.buffer("tls.cert_subject") == (b"C=US, ST=WA, L=Redmond, O=Microsoft Corporat\x00on, "
                                            b"OU=Microsoft Corporation, CN=go.microsoft.com")


def test_buffer_getters_give_what_buffer_gives():
    # the IDS prefilter reads single TLS buffers through buffer_getter; it must equal TlsSession.buffer
    sessions = [session_of("tls-fingerprint-alert.pcap")[0], session_of("tls-ja3-bug-8336.pcap")[0], TlsSession()]
    for keyword in _BUFFERS:
        get = buffer_getter(keyword)
        for s in sessions:
            assert get(s) == s.buffer(keyword), keyword
    assert buffer_getter("tls.certs") is None and buffer_getter("tls.nope") is None
    assert buffer_getter("tls.sni")(sessions[0]) == b"www.google.com"


def test_sslv2_hello_upgraded_to_tls():
    # Expected EVE values from suricata-verify sslv2-tls-upgrade-01.
    s, _ = session_of("sslv2-tls-upgrade.pcap")
    assert s.serial == "55" and s.version_string == "TLSv1"
    assert s.fingerprint == "8c:90:bd:2a:b3:ae:e6:0b:d0:ea:b7:86:b0:1a:e4:b1:cc:57:ef:22"
    assert s.subject == (b"C=US, ST=California, L=Sunnyvale, O=NetScreen Technologies, Inc., OU=Security Team, "
                         b"CN=sigdb.secteam.netscreen.com, Email=aturner@netscreen.com")
    assert s.not_before == "2003-03-29T00:57:44" and s.not_after == "2008-03-27T00:57:44"
    assert s.not_before_epoch == 1048899464 and s.not_after_epoch == 1206579464


def test_client_hello_fragmented_over_records():
    s, _ = session_of("tls-client-hello-frag.pcap")
    assert s.sni == b"www.google.com" and s.ja3_hash


# ---------------------------------------------------------------------------- crafted handshakes
def _ext(etype: int, body: bytes) -> bytes:
    return struct.pack("!HH", etype, len(body)) + body


def client_hello(sni=b"example.org", grease=True) -> bytes:
    ciphers = ([0x2A2A] if grease else []) + [0x1301, 0xC02F, 0x002F]
    exts = b""
    if grease:
        exts += _ext(0x0A0A, b"")
    name = b"\x00" + struct.pack("!H", len(sni)) + sni
    exts += _ext(0, struct.pack("!H", len(name)) + name)
    groups = ([0x3A3A] if grease else []) + [29, 23]
    exts += _ext(10, struct.pack("!H", 2 * len(groups)) + b"".join(struct.pack("!H", g) for g in groups))
    exts += _ext(11, b"\x01\x00")
    alpn = b"\x02h2\x08http/1.1"
    exts += _ext(16, struct.pack("!H", len(alpn)) + alpn)
    exts += _ext(43, b"\x04\x03\x04\x03\x03")
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 2 * len(ciphers))
            + b"".join(struct.pack("!H", c) for c in ciphers) + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def records(handshake: bytes, size: int = 16384) -> bytes:
    out = b""
    for i in range(0, len(handshake), size):
        part = handshake[i:i + size]
        out += b"\x16\x03\x01" + struct.pack("!H", len(part)) + part
    return out


def test_ja3_string_drops_grease_everywhere():
    p = TlsParser()
    p.feed(records(client_hello()), True)
    s = p.session
    assert s.ja3_string == "771,4865-49199-47,0-10-11-16-43,29-23,0"
    assert s.sni == b"example.org" and s.alpn == [b"h2", b"http/1.1"]
    assert s.supported_versions == [0x0304, 0x0303]
    assert is_grease(0x2A2A) and is_grease(0xFAFA) and not is_grease(0x2A2B)


def test_handshake_spanning_records_and_split_anywhere():
    wire = records(client_hello(), size=7)                  # a record every 7 handshake bytes
    whole = TlsParser()
    whole.feed(wire, True)
    for seed in range(5):
        rnd = random.Random(seed)
        p = TlsParser()
        i = 0
        while i < len(wire):
            n = rnd.randint(1, 11)
            p.feed(wire[i:i + n], True)
            i += n
        assert p.session.ja3_string == whole.session.ja3_string != ""
        assert p.session.sni == b"example.org"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 3000), max_size=10))
def test_capture_split_points_do_not_change_results(cuts):
    client, server = tcp_streams(DATA / "tls-fingerprint-alert.pcap")[0]

    def run(cut_list):
        p = TlsParser()
        kinds = []
        for data, ts in ((client, True), (server, False)):
            prev = 0
            for c in sorted({c % (len(data) + 1) for c in cut_list}) + [len(data)]:
                kinds += [(e.kind, e.info) for e in p.feed(data[prev:c], ts)]
                prev = c
        s = p.session
        return kinds, s.ja3_hash, s.ja3s_hash, s.subject, s.issuer, s.serial, s.fingerprint, s.certs

    assert run(cuts) == run([])


def test_oversized_record_gives_up_direction():
    p = TlsParser()
    ev = p.feed(b"\x16\x03\x01\xff\xff" + b"\x00" * 10, True)
    assert [e.info for e in ev] == ["invalid_record_length"]
    assert p.feed(records(client_hello()), True) == []      # given up
    ev = p.feed(b"\x16\x03\x03\x00\x04\x0e\x00\x00\x00", False)   # ServerHelloDone: other side fine
    assert not [e for e in ev if e.kind == "anomaly"]


def test_handshake_message_size_is_bounded():
    p = TlsParser(TlsLimits(max_handshake=1000))
    ev = p.feed(b"\x16\x03\x01\x00\x04\x0b\x01\x00\x00", False)
    assert [e.info for e in ev] == ["handshake_invalid_length"]


def test_not_tls_at_all():
    p = TlsParser()
    ev = p.feed(b"GET / HTTP/1.1\r\n\r\n", True)
    assert [e.kind for e in ev] == ["anomaly"] and p._dirs[True].dead


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_random_bytes_never_raise(data, to_server):
    p = TlsParser()
    for e in p.feed(b"\x16\x03\x01" + data, to_server) + p.feed(data, not to_server):
        assert not e.info.startswith("internal_error")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1, max_size=12))
def test_mutated_handshakes_never_raise(mutations):
    client, server = tcp_streams(DATA / "tls-fingerprint-alert.pcap")[0]
    c, s = bytearray(client), bytearray(server)
    for pos, val in mutations:
        buf = c if pos % 2 else s
        buf[pos % len(buf)] = val
    p = TlsParser()
    for e in p.feed(bytes(c), True) + p.feed(bytes(s), False):
        assert not e.info.startswith("internal_error")
