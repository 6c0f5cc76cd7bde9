"""IPv4/IPv6 fragment reassembly: order, overlaps (first wins), bounds, timeouts."""
import pytest
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.packet import Raw

from gateway.config import FragmentSection
from gateway.fragments import Defragmenter
from gateway.packet import DecodeError, decode

from .conftest import Recorder, make_inspector


def _frags(payload=b"A" * 3000, size=1000, ip_id=7):
    pkt = IP(src="10.10.0.10", dst="198.18.0.10", id=ip_id) / UDP(sport=1111, dport=2222) / payload
    return [bytes(f) for f in fragment(pkt, fragsize=size)]


def test_in_order_and_out_of_order():
    for order in ([0, 1, 2, 3], [3, 1, 0, 2]):
        d = Defragmenter(FragmentSection())
        frags = _frags()
        results = [d.add(decode(frags[i])) for i in order]
        assert results[:-1] == [None] * 3
        whole = results[-1]
        assert whole.proto == 17 and whole.dport == 2222 and whole.payload == b"A" * 3000
        assert len(d) == 0 and d.reassembled == 1


def test_overlap_first_wins_and_is_counted():
    d = Defragmenter(FragmentSection())
    udp_hdr = bytes(UDP(sport=1, dport=2, len=8 + 24))[:8]
    # offsets in 8-byte units: [0,16) header+X, [16,24) Y, then a rewrite of [8,24) with Z, [24,32) W
    f0 = IP(src="10.0.0.1", dst="10.0.0.2", id=9, proto=17, flags="MF", frag=0) / Raw(udp_hdr + b"X" * 8)
    f1 = IP(src="10.0.0.1", dst="10.0.0.2", id=9, proto=17, flags="MF", frag=2) / Raw(b"Y" * 8)
    evil = IP(src="10.0.0.1", dst="10.0.0.2", id=9, proto=17, flags="MF", frag=1) / Raw(b"Z" * 16)
    last = IP(src="10.0.0.1", dst="10.0.0.2", id=9, proto=17, frag=3) / Raw(b"W" * 8)
    assert d.add(decode(bytes(f0))) is None
    assert d.add(decode(bytes(f1))) is None
    assert d.add(decode(bytes(evil))) is None
    whole = d.add(decode(bytes(last)))
    assert whole.payload == b"X" * 8 + b"Y" * 8 + b"W" * 8
    assert d.overlaps_mismatched == 1


def test_hole_waits_and_bounds_evict_oldest():
    d = Defragmenter(FragmentSection(max_datagrams=2))
    for ip_id in (1, 2, 3):
        assert d.add(decode(_frags(ip_id=ip_id)[0])) is None
    assert len(d) == 2 and d.evicted == 1
    # datagram 1 was evicted: its remaining fragments never complete it
    rest = _frags(ip_id=1)[1:]
    assert [d.add(decode(f)) for f in rest] == [None] * len(rest)


def test_oversized_datagram_is_malformed():
    d = Defragmenter(FragmentSection(max_datagram_bytes=2000))
    frags = _frags()
    d.add(decode(frags[0]))
    with pytest.raises(DecodeError, match="max_datagram_bytes"):
        d.add(decode(frags[2]))


def test_timeout_drops_stale_datagram():
    d = Defragmenter(FragmentSection(timeout=5))
    frags = _frags()
    d.add(decode(frags[0], ts=0.0))
    d.add(decode(_frags(ip_id=99)[0], ts=10.0))      # a new datagram triggers the sweep
    assert d.timed_out == 1
    assert all(d.add(decode(f, ts=10.0)) is None for f in frags[1:])


def test_ipv6_fragments():
    payload = b"B" * 2500
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=5) / UDP(sport=5, dport=6) / payload
    from scapy.layers.inet6 import fragment6
    frags = [bytes(f) for f in fragment6(pkt, 1280)]
    d = Defragmenter(FragmentSection())
    out = [d.add(decode(f)) for f in frags]
    assert out[-1].payload == payload and out[-1].dport == 6


def test_inspector_reassembles_tcp_fragments_into_the_stream():
    rec = Recorder()
    insp = make_inspector(extra_stages=[rec])
    syn = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="S", seq=100)
    data = IP(src="10.0.0.1", dst="10.0.0.2", id=42) / TCP(sport=1234, dport=80, flags="PA", seq=101) / (b"Q" * 2000)
    insp.process(bytes(syn), 1.0)
    for f in fragment(data, fragsize=800):
        insp.process(bytes(f), 1.1)
    assert rec.data[True] == b"Q" * 2000
