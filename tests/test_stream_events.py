"""Suricata stream events raised by the stream stage and matched by `stream-event` rules."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from gateway.config import from_dict
from gateway.flow import tcp_timestamps
from gateway.ids.rules import RuleError, parse_rule
from gateway.pipeline import Inspector
from gateway.signatures import SignatureSet
from gateway.stages import build_stages

from .conftest import handshake, tcp

C, S = "10.10.0.10", "198.18.0.10"


@pytest.fixture(autouse=True)
def _hs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_HS_CACHE", str(tmp_path / "hs"))


def run(tmp_path, rules: str, pkts, stream: dict | None = None, ips: bool = False) -> list[tuple[int, int]]:
    """Replay `pkts`; -> sorted (signature_id, packet number from 1) of the alerts."""
    path = tmp_path / "t.rules"
    path.write_text(rules)
    cfg = from_dict({"stream": stream or {}, "gateway": {"bypass": False}})
    sigs = SignatureSet(root=tmp_path, rule_files=(path,), yara_files=(), lists={}, mail_files=())
    events: list[dict] = []
    insp = Inspector(cfg, build_stages(cfg, sigs, ips=ips), sink=events.append)
    for i, p in enumerate(pkts, 1):
        insp.process(p, 1700000000 + i * 0.01, pcap_cnt=i)
    insp.finish()
    return sorted((e["alert"]["signature_id"], e["pcap_cnt"]) for e in events if e["event_type"] == "alert")


def hs() -> list[bytes]:
    return [d for d, _ in handshake(C, S, cseq=1000, sseq=5000)]


def test_depth_reached_once_per_direction(tmp_path):
    rule = "alert tcp any any -> any any (stream-event:reassembly_depth_reached; sid:1;)"
    pkts = hs() + [
        tcp(C, S, 40000, 80, "PA", 1001, 5001, b"a" * 30),      # 4: within depth
        tcp(C, S, 40000, 80, "PA", 1031, 5001, b"b" * 30),      # 5: goes past 50 bytes
        tcp(C, S, 40000, 80, "PA", 1061, 5001, b"c" * 30),      # 6: after the depth: no second event
        tcp(S, C, 80, 40000, "PA", 5001, 1091, b"d" * 50),      # 7: ends exactly at the depth
        tcp(S, C, 80, 40000, "PA", 5051, 1091, b"e" * 10),      # 8: first segment past it
        tcp(S, C, 80, 40000, "PA", 5061, 1091, b"f" * 10),      # 9
    ]
    assert run(tmp_path, rule, pkts, {"depth": 50}) == [(1, 5), (1, 8)]


def test_seq_gap_when_the_peer_acks_unseen_bytes(tmp_path):
    rules = ("alert tcp any any -> any any (stream-event:reassembly_seq_gap; sid:1;)\n"
             "alert tcp any any -> any any (stream-event:stream.reassembly_seq_gap; content:\"world\"; sid:2;)")
    pkts = hs() + [
        tcp(C, S, 40000, 80, "PA", 1001, 5001, b"hello"),
        tcp(C, S, 40000, 80, "PA", 1011, 5001, b"world"),       # 5 bytes lost before it: buffered
        tcp(S, C, 80, 40000, "A", 5001, 1016),                  # 6: server acks them all: the hole is skipped
        tcp(C, S, 40000, 80, "PA", 1016, 5001, b"again"),
    ]
    assert run(tmp_path, rules, pkts) == [(1, 6)]


def test_no_gap_event_for_in_order_data_or_a_rst(tmp_path):
    rule = "alert tcp any any -> any any (stream-event:reassembly_seq_gap; sid:1;)"
    pkts = hs() + [
        tcp(C, S, 40000, 80, "PA", 1001, 5001, b"hello"),
        tcp(C, S, 40000, 80, "PA", 1011, 5001, b"world"),
        tcp(S, C, 80, 40000, "RA", 5001, 1006),
    ]
    assert run(tmp_path, rule, pkts) == []


def _ts(tsval: int, tsecr: int) -> list:
    return [("Timestamp", (tsval, tsecr))]


def test_invalid_timestamp_answer_to_a_syn_is_ignored(tmp_path):
    # bug 3286 (Linux evasion): the "server" answers the SYN with a RST and a FIN echoing a timestamp the
    # client never sent; Suricata flags them and ignores them, and the real handshake and request follow
    def pkt(src, dst, sport, dport, flags, seq, ack, opts=(), payload=b""):
        return bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack,
                                                 options=list(opts)) / payload)
    rules = ("alert tcp any any -> any any (stream-event:pkt_invalid_timestamp; sid:1;)\n"
             "alert tcp any any -> any any (content:\"GET /evil\"; sid:2;)")
    pkts = [
        pkt(C, S, 40000, 80, "S", 1000, 0, _ts(777, 0)),
        pkt(S, C, 80, 40000, "RA", 0, 1001, _ts(100, 100)),        # 2: bad echo: ignored
        pkt(S, C, 80, 40000, "FA", 0, 1001, _ts(100, 100)),        # 3: bad echo: ignored
        pkt(C, S, 40000, 80, "R", 1001, 0),                        # 4: not the abort of the SYN: ignored
        pkt(S, C, 80, 40000, "SA", 5000, 1001, _ts(900, 777)),     # 5: the real answer
        pkt(C, S, 40000, 80, "A", 1001, 5001, _ts(778, 900)),
        pkt(C, S, 40000, 80, "PA", 1001, 5001, _ts(778, 900), b"GET /evil HTTP/1.1\r\n\r\n"),
    ]
    assert run(tmp_path, rules, pkts) == [(1, 2), (1, 3), (2, 7)]


def test_timestamp_echo_of_the_syn_is_valid(tmp_path):
    rule = "alert tcp any any -> any any (stream-event:pkt_invalid_timestamp; sid:1;)"
    pkts = [
        bytes(IP(src=C, dst=S) / TCP(sport=40000, dport=80, flags="S", seq=1000, options=_ts(777, 0))),
        bytes(IP(src=S, dst=C) / TCP(sport=80, dport=40000, flags="SA", seq=5000, ack=1001, options=_ts(9, 777))),
        # a client without timestamps: any non-zero echo is invalid
        bytes(IP(src=C, dst=S) / TCP(sport=40001, dport=80, flags="S", seq=1000)),
        bytes(IP(src=S, dst=C) / TCP(sport=80, dport=40001, flags="SA", seq=5000, ack=1001, options=_ts(9, 5))),
    ]
    assert run(tmp_path, rule, pkts) == [(1, 4)]


def test_tcp_timestamps_option_parsing():
    opts = b"\x01\x01\x08\x0a" + (5).to_bytes(4, "big") + (6).to_bytes(4, "big")
    assert tcp_timestamps(opts) == (5, 6)
    assert tcp_timestamps(b"\x02\x04\x05\xb4") is None
    assert tcp_timestamps(b"\x08\x0a\x00") is None          # truncated
    assert tcp_timestamps(b"\x02\x00\x08\x0a") is None      # zero length option: stop


def test_stream_event_we_never_raise_is_rejected():
    with pytest.raises(RuleError, match="stream-event: pkt_invalid_ack is not raised"):
        parse_rule("alert tcp any any -> any any (stream-event:pkt_invalid_ack; sid:1;)")
    r = parse_rule("alert tcp any any -> any any (stream-event:stream.reassembly_depth_reached; sid:1;)")
    assert r.stream_events == ("reassembly_depth_reached",)


def test_data_after_a_rst_from_the_same_sender_resumes_the_stream(tmp_path):
    # security-4710: a RST "from the client" followed by the client's request: the RST was injected
    rules = ("alert tcp any any -> any any (stream-event:suspected_rst_inject; sid:1;)\n"
             "alert tcp any any -> any any (content:\"ultrasurf\"; sid:2;)")
    pkts = hs() + [
        tcp(C, S, 40000, 80, "RA", 1001, 5001),                                 # 4: acceptable RST
        tcp(S, C, 80, 40000, "PA", 5001, 1001, b"ultrasurf?"),                  # 5: the peer: still reset
        tcp(C, S, 40000, 80, "PA", 1001, 5001, b"GET /ultrasurf HTTP/1.1\r\n"),  # 6: the sender goes on
        tcp(C, S, 40000, 80, "PA", 1026, 5001, b"X: ultrasurf\r\n"),            # 7: no second event
    ]
    assert run(tmp_path, rules, pkts) == [(1, 6), (2, 6), (2, 7)]


def test_rst_at_another_sequence_number_is_not_an_injection(tmp_path):
    rule = "alert tcp any any -> any any (stream-event:suspected_rst_inject; sid:1;)"
    pkts = hs() + [
        tcp(C, S, 40000, 80, "RA", 1500, 5001),             # not at the client's next byte: not acceptable
        tcp(C, S, 40000, 80, "PA", 1001, 5001, b"more"),
        tcp(C, S, 40000, 80, "RA", 1005, 5001),             # RSTs after the end change nothing
        tcp(C, S, 40000, 80, "A", 1005, 5001),
    ]
    assert run(tmp_path, rule, pkts) == []


# ------------------------------------------------------------------- content split over TCP segments

def test_content_split_over_segments_matches_on_the_completing_packet(tmp_path):
    rules = ("alert tcp any any -> any any (content:\"Let Me In\"; sid:1;)\n"
             "alert tcp any any -> any any (content:\"Le\"; content:\"In!\"; distance:0; sid:2;)\n"
             "alert tcp any any -> any any (content:\"Me In\"; depth:5; sid:3;)\n"
             "alert tcp any any -> any any (content:\"Please\"; sid:4;)")
    pkts = hs() + [
        tcp(S, C, 80, 40000, "PA", 5001, 1001, b"Please "),
        tcp(S, C, 80, 40000, "PA", 5008, 1001, b"Let "),
        tcp(S, C, 80, 40000, "PA", 5012, 1001, b"Me "),
        tcp(S, C, 80, 40000, "PA", 5015, 1001, b"In!"),
        tcp(S, C, 80, 40000, "PA", 5018, 1001, b" bye"),      # the tail still holds it all: no second alert
    ]
    # sid 3 is anchored to the buffer start: only the packet's own bytes; sid 4 once, on its packet
    assert run(tmp_path, rules, pkts, ips=True) == [(1, 7), (2, 7), (4, 4)]


def test_no_window_across_a_gap(tmp_path):
    rule = "alert tcp any any -> any any (content:\"Let Me In\"; sid:1;)"
    pkts = hs() + [
        tcp(C, S, 40000, 80, "PA", 1001, 5001, b"Let "),
        tcp(C, S, 40000, 80, "PA", 1010, 5001, b"Me In"),       # 5 bytes never seen before it
        tcp(S, C, 80, 40000, "A", 5001, 1015),                  # the server acks them: the hole is skipped
        tcp(C, S, 40000, 80, "PA", 1015, 5001, b"!"),
    ]
    assert run(tmp_path, rule, pkts) == []


def test_fast_pattern_in_an_earlier_segment_and_the_rest_in_this_one(tmp_path):
    # the rule's fast pattern (its longest content) arrived a segment before the content that completes it:
    # the payload scan also covers the stream's last `lead` bytes (the longest window fast pattern less one,
    # here sid 2's 40 bytes), so sid 1 is found; in the first stream the fast pattern lies further back
    rules = ('alert tcp any any -> any any (content:"Authorization-Token"; content:"DROPTABLE"; distance:0; '
             'sid:1;)\n'
             'alert tcp any any -> any any (content:"' + "L" * 40 + '"; content:"end"; distance:0; sid:2;)')
    pkts = hs() + [
        tcp(C, S, 40000, 80, "PA", 1001, 5001, b"x-Authorization-Token: 1;"),
        tcp(C, S, 40000, 80, "PA", 1026, 5001, b" DROPTABLE users"),
        tcp(C, S, 40000, 80, "PA", 1042, 5001, b" DROPTABLE again"),    # already matched by the stream so far
    ]
    assert run(tmp_path, rules, pkts) == [(1, 5)]
    far = hs() + [
        tcp(C, S, 40000, 80, "PA", 1001, 5001, b"x-Authorization-Token: 1;" + b"." * 60),
        tcp(C, S, 40000, 80, "PA", 1086, 5001, b" DROPTABLE users"),
    ]
    assert run(tmp_path, rules, far) == []


def test_refused_fast_open_data_event_and_the_real_request_is_parsed(tmp_path):
    # a SYN carrying a harmless request the server refuses (its SYN/ACK acknowledges only the SYN), then the
    # real one: the event is raised on the SYN/ACK and the HTTP rules see the real request (the SYN's own was
    # inspected when it came: it was on the wire)
    rules = ('alert tcp any any -> any any (stream-event:3whs_synack_tfo_data_ignored; sid:1;)\n'
             'alert http any any -> any any (http.uri; content:"/real"; sid:2;)\n'
             'alert http any any -> any any (http.uri; content:"/harmless"; sid:3;)\n')
    pkts = [tcp(C, S, 40000, 80, "S", 1000, 0, b"GET /harmless HTTP/1.1\r\n\r\n"),
            tcp(S, C, 80, 40000, "SA", 5000, 1001),
            tcp(C, S, 40000, 80, "PA", 1001, 5001, b"GET /real HTTP/1.1\r\nHost: x\r\n\r\n"),
            tcp(S, C, 80, 40000, "PA", 5001, 1035, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]
    got = run(tmp_path, rules, pkts)
    assert (1, 2) in got and (2, 3) in got and (3, 1) in got
