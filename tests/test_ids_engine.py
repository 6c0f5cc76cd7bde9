"""Detection engine, prefilter and IDS stage: crafted traffic through the real Inspector and stages."""
from __future__ import annotations

import json

import pytest
from scapy.layers.dns import DNS, DNSQR

from gateway.cli import main
from gateway.config import Config
from gateway.ids.engine import DetectionEngine
from gateway.ids.prefilter import BufferPrefilter
from gateway.ids.rules import parse_rule
from gateway.pipeline import Inspector, Verdict
from gateway.signatures import SignatureSet
from gateway.stages import build_stages

from .conftest import handshake, icmp, tcp, tcp_conversation, udp

C, S = "10.10.0.10", "198.18.0.10"


@pytest.fixture(autouse=True)
def _hs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_HS_CACHE", str(tmp_path / "hs"))


def inspector(tmp_path, rules: str, ips: bool = False):
    path = tmp_path / "t.rules"
    path.write_text(rules)
    cfg = Config()
    sigs = SignatureSet(root=tmp_path, rule_files=(path,), yara_files=(), lists={}, mail_files=())
    events: list[dict] = []
    stages = build_stages(cfg, sigs, ips=ips)
    return Inspector(cfg, stages, sink=events.append), events, stages[-1]


def conversation(requests: list[tuple[bytes, bool]], cport=40000, sport=80):
    """Handshake, then each (payload, from_client) as one segment with correct seq/ack."""
    return tcp_conversation(requests, C, S, cport, sport)


def run(insp, pkts):
    verdicts = [insp.process(p, 1700000000 + i * 0.01) for i, p in enumerate(pkts)]
    insp.finish()
    return verdicts


def alerts(events):
    return [e for e in events if e["event_type"] == "alert"]


# ------------------------------------------------------------------------------------------ prefilter

def test_prefilter_hits_nocase_nul_bytes_and_shared_patterns(tmp_path):
    pf = BufferPrefilter([(b"abc", False, 0), (b"ABC", True, 1), (b"a\x00b", False, 2), (b"abc", False, 3)],
                         cache_dir=None)
    assert len(pf) == 3      # identical (pattern, nocase) share one expression
    hits = sorted(i for t in pf.scan(b"xxABCxx") for i in t)
    assert hits == [1]
    hits = sorted(i for t in pf.scan(b"abc a\x00b") for i in t)
    assert hits == [0, 1, 2, 3]
    assert pf.scan(b"a b") == [] and pf.scan(b"") == []


def test_prefilter_cache_roundtrip(tmp_path):
    entries = [(b"needle%d" % i, i % 2 == 0, i) for i in range(50)]
    first = BufferPrefilter(entries, cache_dir=tmp_path)
    second = BufferPrefilter(entries, cache_dir=tmp_path)
    assert not first.from_cache and second.from_cache
    assert sorted(i for t in second.scan(b"..NEEDLE4..needle7") for i in t) == [4, 7]
    (next(tmp_path.glob("*.hsdb"))).write_bytes(b"garbage")      # a corrupt cache is recompiled
    third = BufferPrefilter(entries, cache_dir=tmp_path)
    assert not third.from_cache and [i for t in third.scan(b"needle9") for i in t] == [9]


# ------------------------------------------------------------------------------------------ engine

def test_only_candidate_rules_are_evaluated():
    rules = [parse_rule(f'alert tcp any any -> any any (content:"pattern-{i:04d}"; sid:{i + 1};)')
             for i in range(2000)]
    rules.append(parse_rule('alert udp any any -> any any (content:"pattern-0001"; sid:9999;)'))
    eng = DetectionEngine(rules, cache_dir=None)
    from gateway.flow import Flow
    from gateway.packet import decode
    pkt = decode(tcp(C, S, 1, 80, "PA", 1, 1, b"...pattern-0042..."), 1.0)
    flow = Flow(1, (), pkt, True)
    out = eng.inspect(pkt, flow, True, pkt.payload, [], established=True)
    assert [m.rule.sid for m in out] == [43]
    assert eng.evaluated == 1        # one candidate out of 2001 rules
    upkt = decode(udp(C, S, 1, 53, b"pattern-0001"), 1.0)
    eng.evaluated = 0
    out = eng.inspect(upkt, Flow(2, (), upkt, True), True, upkt.payload, [], established=False)
    assert [m.rule.sid for m in out] == [9999] and eng.evaluated == 1   # tcp rules never compared


def test_alert_event_fields_and_ports(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'alert tcp $HOME_NET any -> any 80 (msg:"hit"; flow:established,to_server; content:"evil"; '
        'classtype:trojan-activity; metadata:created_at 2024_01_01; sid:10; rev:3;)\n'
        'alert tcp any any -> any 8080 (msg:"wrong port"; content:"evil"; sid:11;)\n')
    run(insp, conversation([(b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n", True)]))
    (a,) = alerts(events)
    assert a["alert"] == {"action": "allowed", "gid": 1, "signature_id": 10, "rev": 3, "signature": "hit",
                          "category": "A Network Trojan was detected", "severity": 1,
                          "metadata": {"created_at": ["2024_01_01"]}}
    assert a["src_ip"] == C and a["dest_port"] == 80
    assert a["app_proto"] == "http" and a["direction"] == "to_server"


def test_http_rule_fires_once_per_transaction_across_directions(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'alert http any any => any any (msg:"uri+status"; http.uri; content:"/a"; http.stat_code; '
        'content:"404"; sid:1;)\n'
        'alert http any any -> any any (msg:"uri"; http.uri; content:"/a"; sid:2;)\n')
    req = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    res = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    res200 = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    run(insp, conversation([(req, True), (res, False), (req, True), (res200, False)]))
    sids = [a["alert"]["signature_id"] for a in alerts(events)]
    assert sids.count(2) == 2          # two transactions
    assert sids.count(1) == 1          # only the first one got a 404
    first = next(a for a in alerts(events) if a["alert"]["signature_id"] == 1)
    assert first["direction"] == "to_client" and first["http"]["status"] == 404


def test_dns_query_rule_on_udp(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'alert dns any any -> any any (msg:"dns"; dns.query; content:"evil.example"; nocase; sid:5;)\n')
    q = bytes(DNS(id=7, rd=1, qd=DNSQR(qname="www.EVIL.example")))
    run(insp, [udp(C, S, 5555, 53, q), udp(C, S, 5556, 53, bytes(DNS(id=8, qd=DNSQR(qname="good.example"))))])
    (a,) = alerts(events)
    assert a["alert"]["signature_id"] == 5 and a["dns"]["queries"][0]["rrname"] == "www.EVIL.example"


def test_flowbits_set_then_isset_and_noalert(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'alert tcp any any -> any any (msg:"login"; content:"USER"; flowbits:set,logged; flowbits:noalert; sid:1;)\n'
        'alert tcp any any -> any any (msg:"after login"; content:"RETR"; flowbits:isset,logged; sid:2;)\n'
        'alert tcp any any -> any any (msg:"not logged"; content:"RETR"; flowbits:isnotset,logged; sid:3;)\n')
    run(insp, conversation([(b"USER bob\r\n", True), (b"RETR x\r\n", True)], sport=2121))
    run(insp, conversation([(b"RETR y\r\n", True)], cport=40001, sport=2121))
    sids = sorted(a["alert"]["signature_id"] for a in alerts(events))
    assert sids == [2, 3]


def test_threshold_limit_and_detection_filter(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'alert icmp any any -> any any (msg:"limit"; itype:8; threshold:type limit,track by_src,count 2,seconds 60; sid:1;)\n'
        'alert icmp any any -> any any (msg:"df"; itype:8; detection_filter:track by_src,count 3,seconds 60; sid:2;)\n')
    run(insp, [icmp(C, S, 8) for _ in range(6)])
    sids = [a["alert"]["signature_id"] for a in alerts(events)]
    assert sids.count(1) == 2 and sids.count(2) == 3


def test_header_keywords(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'alert tcp any any -> any any (msg:"syn"; flags:S; sid:1;)\n'
        'alert tcp any any -> any any (msg:"small"; dsize:<5; content:"ab"; sid:2;)\n'
        'alert ip any any -> any any (msg:"ttl"; ttl:7; sid:3;)\n'
        'alert icmp any any -> any any (msg:"echo reply"; itype:0; icode:0; sid:4;)\n')
    run(insp, [tcp(C, S, 1, 2, "S"), tcp(C, S, 3, 4, "A", payload=b"abc"),
               tcp(C, S, 5, 6, "A", payload=b"abcdef"), icmp(C, S, 0), icmp(C, S, 8)])
    run(insp, [bytes(__import__("scapy.layers.inet", fromlist=["IP"]).IP(src=C, dst=S, ttl=7) /
                     __import__("scapy.layers.inet", fromlist=["UDP"]).UDP())])
    sids = sorted(a["alert"]["signature_id"] for a in alerts(events))
    assert sids == [1, 2, 3, 4]


def test_ips_drop_blocks_the_rest_of_the_flow(tmp_path):
    rules = 'drop tcp any any -> any any (msg:"bad"; content:"bad"; sid:1;)\n'
    pkts = conversation([(b"bad stuff", True), (b"more", True)])
    insp, events, _ = inspector(tmp_path, rules, ips=True)
    verdicts = run(insp, pkts)
    assert verdicts[3] == Verdict.DROP and verdicts[4] == Verdict.DROP
    (a,) = alerts(events)
    assert a["alert"]["action"] == "blocked"
    (d,) = [e for e in events if e["event_type"] == "drop"]
    assert d["drop"]["reason"] == "rules" and d["alert"]["signature_id"] == 1
    insp, events, _ = inspector(tmp_path, rules, ips=False)       # IDS: alert only
    verdicts = run(insp, pkts)
    assert Verdict.DROP not in verdicts and alerts(events)[0]["alert"]["action"] == "allowed"


def test_reject_and_pass(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'reject tcp any any -> any any (msg:"rej"; content:"x"; sid:1;)\n', ips=True)
    assert run(insp, conversation([(b"x", True)]))[3] == Verdict.REJECT
    insp, events, _ = inspector(tmp_path,
        'pass tcp any any -> any any (msg:"trusted"; content:"hello"; sid:1;)\n'
        'alert tcp any any -> any any (msg:"any data"; content:"o"; sid:2;)\n')
    run(insp, conversation([(b"hello", True), (b"foo", True)]))
    assert alerts(events) == []        # pass first, and the flow is no longer inspected


def test_bad_rules_are_reported_and_unreadable_file_refused(tmp_path, capsys):
    pcap = tmp_path / "a.pcap"
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    wrpcap(str(pcap), [Ether() / IP(p) for p in conversation([(b"zzz", True)])])
    rules = tmp_path / "r.rules"
    rules.write_text('alert tcp any any -> any any (msg:"ok"; content:"zzz"; sid:1;)\n'
                     'alert tcp any any -> any any (msg:"bad"; nosuchkeyword; sid:2;)\n')
    code = main(["replay", "--no-progress", str(pcap), "--rules", str(rules)])
    out, _ = capsys.readouterr()
    evs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [e["alert"]["signature_id"] for e in evs if e["event_type"] == "alert"] == [1]
    code = main(["replay", "--no-progress", str(pcap), "--rules", str(tmp_path / "missing.rules")])
    assert code == 2 and "missing.rules" in capsys.readouterr().err


def test_detection_never_raises_out_of_the_stage(tmp_path):
    insp, _events, stage = inspector(tmp_path, 'alert tcp any any -> any any (content:"a"; sid:1;)\n')

    def boom(*a, **k):
        raise RuntimeError("bug")
    stage.engine.inspect = boom
    verdicts = run(insp, conversation([(b"a", True)]))
    assert Verdict.DROP not in verdicts and stage.errors == len(verdicts) and "bug" in stage.last_error


def test_file_data_pattern_split_across_body_segments(tmp_path):
    # the prefilter scans a growing body incrementally; a pattern cut by a segment boundary must still hit
    insp, events, _ = inspector(tmp_path,
        'alert http any any -> any any (msg:"body"; flow:to_client; file.data; content:"MALICIOUS-MARKER"; sid:1;)\n'
        'alert http any any -> any any (msg:"uri+body"; http.uri; content:"/dl"; file.data; content:"tail-end"; sid:2;)\n')
    body = b"A" * 3000 + b"MALICIOUS-MARKER" + b"B" * 3000 + b"tail-end"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    resp = head + body
    cut = len(head) + 3008                      # inside the marker
    chunks = [(b"GET /dl HTTP/1.1\r\nHost: h\r\n\r\n", True), (resp[:cut], False), (resp[cut:cut + 1500], False),
              (resp[cut + 1500:], False)]
    run(insp, conversation(chunks))
    assert sorted(a["alert"]["signature_id"] for a in alerts(events)) == [1, 2]


def test_failed_rule_reevaluated_when_its_buffer_changes(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'alert http any any -> any any (msg:"late"; flow:to_client; file.data; content:"start"; content:"late"; '
        'distance:0; sid:3;)\n')
    body = b"start" + b"x" * 2000 + b"late"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    run(insp, conversation([(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True), (resp[:200], False),
                            (resp[200:], False)]))
    assert [a["alert"]["signature_id"] for a in alerts(events)] == [3]


def test_stream_versus_packet_payload(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'alert tcp any any -> any any (msg:"stream"; content:"HELLOWORLD"; sid:1;)\n'
        'alert tcp any any -> any any (msg:"packet"; flow:no_stream; content:"HELLOWORLD"; sid:2;)\n'
        'alert tcp any any -> any any (msg:"packet part"; flow:no_stream; content:"HELLO"; sid:3;)\n')
    pkts = [d for d, _ in handshake(C, S, 40000, 80)]
    # "WORLD" arrives first (out of order), then "HELLO" fills the hole: the stream sees HELLOWORLD at once
    pkts += [tcp(C, S, 40000, 80, "PA", 1006, 5001, b"WORLD"), tcp(C, S, 40000, 80, "PA", 1001, 5001, b"HELLO")]
    run(insp, pkts)
    assert sorted(a["alert"]["signature_id"] for a in alerts(events)) == [1, 3]


def test_transaction_rule_answers_remembered_by_buffers_stay_per_transaction(tmp_path):
    # both rules read only their buffers: their answers are remembered by the buffers' contents
    # (engine._tx_match_memo), and still every transaction gets its own alert
    insp, events, stage = inspector(tmp_path,
        'alert http any any -> any any (msg:"ua"; http.user_agent; content:"EvilBot"; sid:1;)\n'
        'alert http any any -> any any (msg:"ua not"; http.user_agent; content:"Bot"; '
        'content:!"EvilBot"; sid:2;)\n')
    def req(ua):
        return b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: " + ua + b"\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    run(insp, conversation([(req(b"EvilBot/1"), True), (ok, False), (req(b"EvilBot/1"), True), (ok, False),
                            (req(b"GoodBot/2"), True), (ok, False), (req(b"EvilBot/1"), True), (ok, False)]))
    assert [a["alert"]["signature_id"] for a in alerts(events)] == [1, 1, 2, 1]
    assert stage.engine._eval_memo          # the answers were remembered
