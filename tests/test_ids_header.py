"""Packet-header keywords (ack, seq, window, tcp.mss, icmp_id, icmp_seq, id, tos, fragbits, fragoffset, ipopts),
header buffers (ipv4.hdr, ipv6.hdr, tcp.hdr, udp.hdr, icmpv6.hdr), `alert ipv4` / `alert ipv6` and `prefilter`:
crafted packets through the real Inspector and IDS stage."""
from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6PacketTooBig, IPv6, IPv6ExtHdrFragment

from gateway.ids.header import field_value, header_buffer
from gateway.ids.rules import RuleError, parse_rule
from gateway.packet import decode

from .test_ids_engine import alerts, inspector, run

A, B = "10.10.0.10", "198.18.0.10"


@pytest.fixture(autouse=True)
def _hs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_HS_CACHE", str(tmp_path / "hs"))


def lines(*rules: str) -> str:
    return "\n".join(rules)


def sids(tmp_path, rules: str, pkts) -> list[int]:
    insp, events, _ = inspector(tmp_path, rules)
    run(insp, pkts)
    return sorted(e["alert"]["signature_id"] for e in alerts(events))


def test_tcp_header_numbers(tmp_path):
    syn = bytes(IP(src=A, dst=B) / TCP(sport=4000, dport=80, flags="S", seq=77, ack=0, window=1234,
                                       options=[("MSS", 500)]))
    plain = bytes(IP(src=A, dst=B) / TCP(sport=4001, dport=80, flags="A", seq=9, ack=12345, window=999))
    rules = lines(
        "alert tcp any any -> any any (seq:77; sid:1;)",
        "alert tcp any any -> any any (ack:12345; sid:2;)",
        "alert tcp any any -> any any (window:1234; sid:3;)",
        "alert tcp any any -> any any (window:!1234; prefilter; sid:4;)",
        "alert tcp any any -> any any (tcp.mss:<536; sid:5;)",
        "alert tcp any any -> any any (tcp.mss:>536; sid:6;)",
        "alert tcp any any -> any any (tcp.flags:S; tcp.seq:77; sid:7;)",
    )
    # sid 6: the packet without an MSS option has no mss, so not even a > test holds
    assert sids(tmp_path, rules, [syn, plain]) == [1, 2, 3, 4, 5, 7]


def test_icmp_id_seq_and_mtu(tmp_path):
    echo = bytes(IP(src=A, dst=B) / ICMP(type=8, id=21781, seq=2216))
    unreach = bytes(IP(src=A, dst=B) / ICMP(type=3, code=1) / (b"\x00" * 8))
    echo6 = bytes(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(id=7, seq=8))
    toobig = bytes(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6PacketTooBig(mtu=1000) / (b"\x00" * 40))
    rules = lines(
        "alert icmp any any -> any any (icmp_id:21781; sid:1;)",
        "alert icmp any any -> any any (icmp_seq:2216; sid:2;)",
        "alert icmp any any -> any any (icmp_id:0; sid:3;)",         # type 3 has no id: never matches
        "alert icmp any any -> any any (icmp_id:7; icmp_seq:8; sid:4;)",
        "alert ipv6 any any -> any any (icmpv6.mtu:<1280; sid:5;)",
        "alert ip any any -> any any (icmpv6.hdr; content:\"|02 00|\"; depth:2; sid:6;)",
    )
    assert sids(tmp_path, rules, [echo, unreach, echo6, toobig]) == [1, 2, 4, 5, 6]


def test_ip_header_fields_and_options(tmp_path):
    rr = bytes(IP(src=A, dst=B, id=4242, tos=0x10, flags="DF", options=[IPOption_RR()]) / UDP(sport=1, dport=2))
    plain = bytes(IP(src=A, dst=B, id=1, tos=0, flags=0) / UDP(sport=1, dport=2))
    rules = lines(
        "alert ip any any -> any any (id:4242; sid:1;)",
        "alert ip any any -> any any (tos:16; sid:2;)",
        "alert ip any any -> any any (tos:!x10; sid:3;)",
        "alert ip any any -> any any (fragbits:D; sid:4;)",
        "alert ip any any -> any any (fragbits:!D; sid:5;)",
        "alert ip any any -> any any (ipopts:rr; sid:6;)",
        "alert ip any any -> any any (ipopts:any; sid:7;)",
        "alert ip any any -> any any (ipopts:ts; sid:8;)",
        "alert ip any any -> any any (fragoffset:0; sid:9;)",
        "alert ip any any -> any any (ipv4.hdr; content:\"|10 92|\"; offset:4; depth:2; sid:10;)",
        "alert udp any any -> any any (udp.hdr; content:\"|00 01 00 02|\"; depth:4; sid:11;)",
    )
    got = sids(tmp_path, rules, [rr, plain])
    assert got == [1, 2, 3, 4, 5, 6, 7, 9, 9, 10, 11, 11]


def test_ip_version_protocols_and_ipv6_hdr(tmp_path):
    v4 = bytes(IP(src=A, dst=B) / UDP(sport=5, dport=6) / b"PING")
    v6 = bytes(IPv6(src="fd00::1", dst="fd00::2", hlim=64) / UDP(sport=5, dport=6) / b"PING")
    rules = lines(
        'alert ipv4 any any -> any any (content:"PING"; sid:1;)',
        'alert ipv6 any any -> any any (content:"PING"; sid:2;)',
        'alert ip any any -> any any (ipv6.hdr; content:"|40|"; offset:7; depth:1; sid:3;)',
        'alert tcp any any -> any any (tcp.hdr; content:"|00 05|"; depth:2; sid:4;)',
    )
    assert sids(tmp_path, rules, [v4, v6]) == [1, 2, 3]


def test_field_values_missing_for_other_protocols():
    p = decode(bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1, dport=2)))
    assert field_value(p, "ip.tos") is None and field_value(p, "tcp.ack") is None
    assert field_value(p, "icmp.id") is None and header_buffer(p, "ipv4.hdr") == b""
    assert len(header_buffer(p, "ipv6.hdr")) == 40 and len(header_buffer(p, "udp.hdr")) == 8


@pytest.mark.parametrize("text, reason", [
    ("ipopts:bogus", "ipopts: unknown option"),
    ("fragbits:X", "fragbits: unknown bit"),
    ("tos:300", "tos: 300 outside"),
    ("window:70000", "window: 70000 outside"),
    ("prefilter:1", "prefilter"),
    ("ack:1; ack:2", "ack: given twice"),
])
def test_bad_values_rejected(text, reason):
    with pytest.raises(RuleError, match=reason):
        parse_rule(f"alert tcp any any -> any any ({text}; sid:1;)")


def test_tcp_only_keyword_on_udp_rule_rejected():
    with pytest.raises(RuleError, match="needs TCP"):
        parse_rule("alert udp any any -> any any (seq:1; sid:1;)")


def test_decode_events_on_pkthdr_rules(tmp_path):
    # SEC option (0x82) must be 11 bytes long: a 4-byte one is ipv4.opt_invalid_len
    bad_opt = IP(src=A, dst=B, options=[]) / UDP(sport=1, dport=2)
    raw = bytearray(bytes(bad_opt))
    raw = bytes([0x46]) + raw[1:20] + b"\x82\x04\x00\x00" + raw[20:]
    raw = raw[:2] + len(raw).to_bytes(2, "big") + raw[4:]
    atomic = bytes(IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrFragment(offset=0, m=0) / UDP(sport=1, dport=2))
    clean = bytes(IP(src=A, dst=B) / TCP(sport=1, dport=2, options=[("SAck", ())]))   # empty SACK is valid
    rules = lines(
        "alert pkthdr any any -> any any (decode-event:ipv4.opt_invalid_len; sid:1;)",
        "alert pkthdr any any -> any any (decode-event:decoder.ipv6.exthdr_useless_fh; sid:2;)",
        "alert pkthdr any any -> any any (decode-event:tcp.opt_invalid_len; sid:3;)",
    )
    assert sids(tmp_path, rules, [raw, atomic, clean]) == [1, 2]


def test_decode_event_we_never_raise_is_rejected():
    with pytest.raises(RuleError, match="decode-event: ipv4.frag_ignored is not detected"):
        parse_rule("alert pkthdr any any -> any any (decode-event:ipv4.frag_ignored; sid:1;)")


def test_dsize_operators_that_require_a_payload(tmp_path):
    # Suricata: !=, >, >=, ranges and =N>0 need a payload; < and <= also match an empty packet
    empty = bytes(IP(src=A, dst=B) / TCP(sport=1, dport=2, flags="A"))
    rules = lines(
        "alert tcp any any -> any any (dsize:!9; sid:1;)",
        "alert tcp any any -> any any (dsize:<10; sid:2;)",
        "alert tcp any any -> any any (dsize:>=0; sid:3;)",
        "alert tcp any any -> any any (dsize:0; sid:4;)",
    )
    assert sids(tmp_path, rules, [empty]) == [2, 4]


def test_fragbits_modifier_positions():
    for text, mode in (("+D", "all"), ("D+", "all"), ("*MD", "any"), ("!R", "not"), ("MD", "exact")):
        r = parse_rule(f"alert ip any any -> any any (fragbits:{text}; sid:1;)")
        assert r.pkt_checks[0].test.mode == mode
    with pytest.raises(RuleError, match="more than one modifier"):
        parse_rule("alert ip any any -> any any (fragbits:+*D; sid:1;)")


def test_quoted_numbers_accepted():
    r = parse_rule('alert icmp any any -> any any (icmp_id:"21781"; icmp_seq:!7; sid:1;)')
    assert [(c.field, c.test.op, c.test.value) for c in r.pkt_checks] == [("icmp.id", "=", 21781),
                                                                           ("icmp.seq", "!=", 7)]
