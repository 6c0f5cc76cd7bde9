"""Decode: struct-based IPv4/IPv6/TCP/UDP/ICMP, and clear errors on malformed input."""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop

from gateway.packet import ACK, PSH, SYN, DecodeError, decode, set_ipv6_text

from .conftest import icmp, tcp, udp


def test_ipv4_tcp_fields():
    p = decode(tcp("10.10.0.10", "198.18.0.10", 40000, 80, "PA", 7, 9, b"GET / HTTP/1.1\r\n\r\n", ttl=33), 1.5)
    assert (p.version, p.src_ip, p.dst_ip, p.sport, p.dport) == (4, "10.10.0.10", "198.18.0.10", 40000, 80)
    assert (p.seq, p.ack, p.tcp_flags, p.ttl, p.ts) == (7, 9, PSH | ACK, 33, 1.5)
    assert p.payload == b"GET / HTTP/1.1\r\n\r\n"
    assert p.proto_name == "TCP"


def test_tcp_options_and_ethernet_padding_ignored():
    raw = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="S", options=[("MSS", 1460)]))
    p = decode(raw + b"\x00" * 6)       # trailing link padding is not payload
    assert p.tcp_flags == SYN and p.tcp_hlen == 24 and p.payload == b""
    assert p.tcp_options.startswith(b"\x02\x04\x05\xb4")


def test_udp_and_icmp():
    p = decode(udp(payload=b"abc"))
    assert (p.proto, p.dport, p.payload) == (17, 53, b"abc")
    p = decode(icmp(type=8, payload=b"ping"))
    assert (p.proto, p.icmp_type, p.icmp_code) == (1, 8, 0)
    assert p.payload.endswith(b"ping")


def test_ipv6_with_extension_header():
    raw = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / TCP(dport=443, flags="S"))
    p = decode(raw)
    assert (p.version, p.proto, p.dport) == (6, 6, 443)
    assert p.src_ip == "2001:0db8:0000:0000:0000:0000:0000:0001"     # EVE's default, as Suricata's
    set_ipv6_text(True)
    try:
        assert p.src_ip == "2001:db8::1"
    finally:
        set_ipv6_text(False)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"\x50" + b"\x00" * 30, "version 5"),
    (b"\x45\x00\x00\x14", "shorter than the 20-byte header"),
    (b"\x44" + b"\x00" * 19, "header length 16"),
])
def test_malformed_ip_names_the_fault(data, message):
    with pytest.raises(DecodeError, match=message):
        decode(data)


def test_truncated_ipv4_total_length():
    raw = bytearray(tcp(payload=b"x" * 100))
    with pytest.raises(DecodeError, match="exceeds the 80 bytes captured"):
        decode(bytes(raw[:80]))


def test_bad_tcp_data_offset():
    raw = bytearray(tcp())
    raw[20 + 12] = 0x20                 # data offset 8 bytes
    with pytest.raises(DecodeError, match="tcp: data offset 8"):
        decode(bytes(raw))


def test_bad_udp_length():
    raw = bytearray(udp(payload=b"abcd"))
    struct.pack_into("!H", raw, 24, 200)
    with pytest.raises(DecodeError, match="udp: length field 200"):
        decode(bytes(raw))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decode_only_raises_decode_error(data):
    try:
        decode(data)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=59), st.binary(min_size=1, max_size=8))
def test_fuzz_mutated_packets(pos, junk):
    raw = bytearray(tcp(payload=b"hello world" * 3))
    raw[pos:pos + len(junk)] = junk
    try:
        decode(bytes(raw))
    except DecodeError:
        pass


# Every field of a decoded packet, for each kind of datagram. decode builds packets without
# Packet.__init__ (speed), so a slot it forgot would only show up as an AttributeError much later.
_NO_L4 = {"sport": 0, "dport": 0, "tcp_flags": 0, "seq": 0, "ack": 0, "window": 0, "tcp_hlen": 0,
          "tcp_options": b"", "icmp_type": -1, "icmp_code": -1}
_DRIVER = {"indev": None, "outdev": None, "pcap_cnt": None, "reply": False, "frame": None, "linktype": 101,
           "tunnel": None}


def _fields(p):
    return {name: getattr(p, name) for name in type(p).__slots__}


@pytest.mark.parametrize("raw, expected", [
    (tcp("10.0.0.1", "10.0.0.2", 1234, 80, "PA", 7, 9, b"data", id=77, ttl=5),
     {**_NO_L4, "version": 4, "proto": 6, "ttl": 5, "ip_id": 77, "frag_id": 77, "ip_hlen": 20, "length": 44,
      "sport": 1234, "dport": 80, "tcp_flags": PSH | ACK, "seq": 7, "ack": 9, "window": 8192, "tcp_hlen": 20,
      "payload": b"data"}),
    (udp("10.0.0.1", "10.0.0.2", 5353, 53, b"q"),
     {**_NO_L4, "version": 4, "proto": 17, "ttl": 64, "ip_id": 1, "frag_id": 1, "ip_hlen": 20, "length": 29,
      "sport": 5353, "dport": 53, "payload": b"q"}),
    (icmp("10.0.0.1", "10.0.0.2", 3, 1, b"xyz"),
     {**_NO_L4, "version": 4, "proto": 1, "ttl": 64, "ip_id": 1, "frag_id": 1, "ip_hlen": 20, "length": 31,
      "icmp_type": 3, "icmp_code": 1, "payload": b"\x00\x00\x00\x00xyz"}),
    (bytes(IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / b"gre!"),
     {**_NO_L4, "version": 4, "proto": 47, "ttl": 64, "ip_id": 1, "frag_id": 1, "ip_hlen": 20, "length": 24,
      "payload": b"gre!"}),
    (bytes(IP(src="10.0.0.1", dst="10.0.0.2", proto=6, flags="MF", frag=0, id=9) / b"12345678"),
     {**_NO_L4, "version": 4, "proto": 6, "ttl": 64, "ip_id": 9, "frag_id": 9, "ip_hlen": 20, "length": 28,
      "more_frags": True, "payload": b"12345678"}),
    (bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=9) / TCP(sport=1, dport=2, flags="S", seq=3)),
     {**_NO_L4, "version": 6, "proto": 6, "ttl": 9, "ip_id": 0, "frag_id": 0, "ip_hlen": 40, "length": 60,
      "sport": 1, "dport": 2, "tcp_flags": SYN, "seq": 3, "window": 8192, "tcp_hlen": 20, "payload": b""}),
    (bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=59)),
     {**_NO_L4, "version": 6, "proto": 59, "ttl": 64, "ip_id": 0, "frag_id": 0, "ip_hlen": 40, "length": 40,
      "payload": b""}),
    (bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=5, offset=0, m=0)
           / UDP(sport=7, dport=8) / b"atomic"),
     {**_NO_L4, "version": 6, "proto": 17, "ttl": 64, "ip_id": 0, "frag_id": 5, "ip_hlen": 48, "length": 62,
      "sport": 7, "dport": 8, "payload": b"atomic"}),
    (bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=6, offset=1, m=1, nh=17)
           / b"12345678"),
     {**_NO_L4, "version": 6, "proto": 17, "ttl": 64, "ip_id": 0, "frag_id": 6, "ip_hlen": 48, "length": 56,
      "frag_offset": 8, "more_frags": True, "payload": b"12345678"}),
], ids=["tcp4", "udp4", "icmp4", "other4", "frag4", "tcp6", "nonext6", "atomicfrag6", "frag6"])
def test_every_field_is_set(raw, expected):
    p = decode(raw, 2.5)
    want = {"frag_offset": 0, "more_frags": False, **_DRIVER, **expected, "ts": 2.5, "data": raw,
            "src": p.src, "dst": p.dst}
    assert _fields(p) == want
    assert len(p.src) == len(p.dst) == (4 if p.version == 4 else 16)


def test_tcp_option_walk():
    from gateway.packet import tcp_option
    opts = b"\x01\x01\x02\x04\x05\xb4\x08\x0a" + bytes(range(8)) + b"\x00"
    assert tcp_option(opts, 2) == b"\x05\xb4"
    assert tcp_option(opts, 8) == bytes(range(8))
    assert tcp_option(opts, 3) is None                   # absent (end of list)
    assert tcp_option(b"\x02\x09\x05\xb4", 2) is None     # length runs past the options
    assert tcp_option(b"\x02\x01\x05", 2) is None         # length < 2
