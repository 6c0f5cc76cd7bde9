"""decode-event rules on what the decoder refuses (DecodeError events) and on fragment anomalies
(frag_overlap, frag_invalid_length, frag_pkt_too_large): crafted packets through the real Inspector and IDS."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

from gateway.pipeline import Verdict

from .test_ids_engine import alerts, inspector, run

A6, B6 = "2001:db8::1", "2001:db8::2"
RULES = """\
alert pkthdr any any -> any any (decode-event:ipv4.trunc_pkt; sid:1;)
alert pkthdr any any -> any any (decode-event:ipv6.frag_overlap; sid:2;)
alert pkthdr any any -> any any (decode-event:ipv6.frag_invalid_length; sid:3;)
alert pkthdr any any -> any any (decode-event:ipv6.frag_pkt_too_large; sid:4;)
alert pkthdr any any -> any any (decode-event:tcp.pkt_too_small; sid:5;)
alert pkthdr any any -> 198.18.0.0/15 any (decode-event:ipv4.trunc_pkt; sid:6;)
"""


@pytest.fixture(autouse=True)
def _hs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_HS_CACHE", str(tmp_path / "hs"))


def _frag6(offset: int, more: bool, data: bytes, ident: int = 7) -> bytes:
    return bytes(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(nh=6, id=ident, offset=offset, m=int(more)) / data)


def test_truncated_ipv4_alerts_without_addresses(tmp_path):
    insp, events, _ = inspector(tmp_path, RULES)
    whole = bytes(IP(src="10.0.0.1", dst="198.18.0.2") / TCP() / (b"x" * 40))
    run(insp, [whole[:50], whole])
    got = alerts(events)
    # the address-bound rule 6 cannot be tested on a packet without a decoded header
    assert [e["alert"]["signature_id"] for e in got] == [1]
    assert "src_ip" not in got[0] and got[0]["packet_info"]["linktype_name"] == "RAW"
    assert any(e["event_type"] == "anomaly" for e in events)


def test_fragment_overlap_and_invalid_length(tmp_path):
    insp, events, _ = inspector(tmp_path, RULES)
    seg = bytes(TCP(sport=1, dport=2, flags="S")) + b"A" * 12    # 32 bytes
    run(insp, [_frag6(0, True, seg[:16]), _frag6(1, True, seg[8:24]), _frag6(3, False, seg[24:]),
               _frag6(0, True, b"B" * 12, ident=8)])
    got = [e["alert"]["signature_id"] for e in alerts(events)]
    assert got.count(2) == 1 and got.count(3) == 1 and 4 not in got


def test_fragment_past_65535_bytes(tmp_path):
    insp, events, _ = inspector(tmp_path, RULES)
    run(insp, [_frag6(8190, False, b"C" * 24)])
    assert [e["alert"]["signature_id"] for e in alerts(events)] == [4]


def test_ips_drop_rule_on_undecodable_packet(tmp_path):
    insp, events, _ = inspector(tmp_path, "drop pkthdr any any -> any any (decode-event:tcp.pkt_too_small; sid:9;)",
                                ips=True)
    short_tcp = bytes(IP(src="10.0.0.1", dst="10.0.0.2", proto=6) / (b"\x00" * 8))
    assert run(insp, [short_tcp]) == [Verdict.DROP]
    assert alerts(events)[0]["alert"]["action"] == "blocked"


def test_nothing_after_a_useless_fragment_header(tmp_path):
    rules = ("alert pkthdr any any -> any any (decode-event:ipv6.trunc_exthdr; sid:1;)\n"
             "alert pkthdr any any -> any any (decode-event:ipv6.exthdr_useless_fh; sid:2;)\n")
    insp, events, _ = inspector(tmp_path, rules)
    run(insp, [bytes(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(nh=6, id=1, offset=0, m=0))])
    assert sorted(e["alert"]["signature_id"] for e in alerts(events)) == [1, 2]
