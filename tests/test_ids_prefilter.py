"""Prefilter precision: anchored fast patterns (offset/depth/startswith/endswith) are candidates only where
their content can match, in both the Hyperscan and the small-literal path, and never lose a real match."""
from __future__ import annotations

import pytest

from gateway.flow import Flow
from gateway.ids.engine import DetectionEngine
from gateway.ids.prefilter import BufferPrefilter
from gateway.ids.rules import parse_rule
from gateway.packet import decode

from .conftest import tcp, udp
from .test_ids_engine import alerts, conversation, inspector, run

C, S = "10.10.0.10", "198.18.0.10"


@pytest.fixture(autouse=True)
def _hs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_HS_CACHE", str(tmp_path / "hs"))


def _hits(pf, data: bytes) -> list[int]:
    return sorted(i for t in pf.scan(data) for i in t)


ANCHORED = [
    (b"abc", False, 0, None, (3, 3, False)),           # startswith / depth:3
    (b"abc", False, 1, None, (5, 7, False)),           # offset:2; depth:5 -> ends at 5..7
    (b"abc", False, 2, None, (3, None, True)),         # endswith
    (b"z", False, 3, None, (1, 1, True)),              # depth:1; endswith: the buffer is "z"
    (b"XY", True, 4, None, (4, None, False)),          # offset:2, nocase
    (b"abc", False, 5),                                # anywhere
]


@pytest.mark.parametrize("small_db", [len(ANCHORED), 0], ids=["literal-path", "hyperscan-path"])
def test_anchored_patterns_hit_only_where_the_content_may_sit(tmp_path, small_db, monkeypatch):
    from gateway.ids import prefilter
    monkeypatch.setattr(prefilter, "SMALL_DB", small_db)
    extra = [(b"unrelated-%03d" % i, False, 100 + i) for i in range(3)]
    pf = BufferPrefilter(ANCHORED + extra, cache_dir=tmp_path)
    assert (pf.db is None) == (len(pf) <= small_db)
    assert _hits(pf, b"abc") == [0, 2, 5]
    assert _hits(pf, b"xxabc") == [1, 2, 5]
    assert _hits(pf, b"xxxxabc") == [1, 2, 5]
    assert _hits(pf, b"xxxxxabc") == [2, 5]             # starts past offset+depth
    assert _hits(pf, b"abcx") == [0, 5]
    assert _hits(pf, b"z") == [3]
    assert _hits(pf, b"zz") == []
    assert _hits(pf, b"..xy") == [4] and _hits(pf, b"xy..") == []
    # the same set from the on-disk cache behaves the same
    again = BufferPrefilter(ANCHORED + extra, cache_dir=tmp_path)
    assert again.from_cache == (again.db is not None)
    assert _hits(again, b"xxabc") == [1, 2, 5]


def test_anchor_is_part_of_the_cache_key(tmp_path):
    plain = BufferPrefilter([(b"p%02d" % i, False, i) for i in range(20)], cache_dir=tmp_path)
    anchored = BufferPrefilter([(b"p%02d" % i, False, i, None, (3, 3, False)) for i in range(20)],
                               cache_dir=tmp_path)
    assert not anchored.from_cache      # a different database, not the unanchored one
    assert _hits(plain, b"..p05") == [5] and _hits(anchored, b"..p05") == []
    assert _hits(anchored, b"p05..") == [5]


def _candidates(rules: list[str], payload: bytes) -> tuple[list[int], int]:
    eng = DetectionEngine([parse_rule(r) for r in rules], cache_dir=None)
    pkt = decode(tcp(C, S, 1234, 80, "PA", 1, 1, payload), 1.0)
    out = eng.inspect(pkt, Flow(1, (), pkt, True), True, pkt.payload, [], established=True)
    return [m.rule.sid for m in out], eng.evaluated


def test_payload_rules_with_anchored_fast_patterns():
    rules = ['alert tcp any any -> any any (content:"GET"; depth:3; sid:1;)',
             'alert tcp any any -> any any (content:"HTTP"; offset:4; depth:8; sid:2;)',
             'alert tcp any any -> any any (content:"|0d 0a 0d 0a|"; endswith; sid:3;)',
             'alert tcp any any -> any any (content:"GET"; content:"HTTP"; distance:0; sid:4;)']
    assert _candidates(rules, b"GET / HTTP/1.1\r\n\r\n") == ([1, 2, 3, 4], 4)
    # "GET" past depth 3, HTTP past offset 4 + depth 8, no trailing CRLFCRLF: not even candidates
    sids, evaluated = _candidates(rules, b"xGET /aaaaaaaaa HTTP/1.1\r\n\r\nx")
    assert sids == [4] and evaluated == 1
    # a relative fast pattern is never anchored (its position depends on the previous match)
    assert _candidates(rules, b"xxxxxxxxxxxxxxGET HTTP")[0] == [4]


def test_flow_no_stream_rule_is_not_anchored():
    rule = parse_rule('alert tcp any any -> any any (flow:no_stream; content:"GET"; depth:3; sid:7;)')
    eng = DetectionEngine([rule], cache_dir=None)
    pf = eng.groups[6].prefilters.get("pkt_data") or next(iter(eng.groups[6].port_prefilters.values()))
    assert all(len(k) == 2 for k in pf.patterns)     # scanned in stream data, evaluated on the payload


def test_http_rules_with_anchored_buffers_still_alert(tmp_path):
    insp, events, _ = inspector(tmp_path,
        'alert http any any -> any any (msg:"ua is z"; http.user_agent; content:"z"; depth:1; endswith; sid:1;)\n'
        'alert http any any -> any any (msg:"php end"; http.uri; content:".php"; endswith; sid:2;)\n'
        'alert http any any -> any any (msg:"host digit"; http.host; content:"1"; depth:1; sid:3;)\n'
        'alert http any any -> any any (msg:"method"; http.method; content:"GET"; startswith; sid:4;)\n')
    req_hit = b"GET /a/b.php HTTP/1.1\r\nHost: 1.2.3.4\r\nUser-Agent: z\r\n\r\n"
    req_miss = b"GET /a/b.php?x HTTP/1.1\r\nHost: a1.example\r\nUser-Agent: Mozilla z\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    run(insp, conversation([(req_hit, True), (ok, False), (req_miss, True), (ok, False)]))
    got = sorted(a["alert"]["signature_id"] for a in alerts(events))
    assert got == [1, 2, 3, 4, 4]


@pytest.mark.parametrize("small_db", [8, 0], ids=["literal-path", "hyperscan-path"])
def test_scan_memo_equals_scan_and_stays_bounded(tmp_path, small_db, monkeypatch):
    from gateway.ids import prefilter
    monkeypatch.setattr(prefilter, "SMALL_DB", small_db)
    entries = [(b"mozilla", True, 1), (b"GET", False, 2, [80]), (b"GET", False, 3, [-1 - 8080]),
               (b"z", False, 4, None, (1, 1, True))]
    pf = BufferPrefilter(entries, cache_dir=tmp_path)
    assert (pf.db is None) == (small_db > 0)
    for data in (b"GET", b"Mozilla/5.0", b"z", b"zz", b"", b"nothing"):
        for dport, sport in ((80, 1234), (1234, 8080), (443, 1234)):
            want = sorted(i for t in pf.scan(data, dport, sport) for i in t)
            assert sorted(i for t in pf.scan_memo(data, dport, sport) for i in t) == want   # fills the memo
            assert sorted(i for t in pf.scan_memo(data, dport, sport) for i in t) == want   # answers from it
    assert sorted(i for t in pf.scan_memo(bytearray(b"GET"), 80, 1) for i in t) == [2]    # unhashable: scanned
    monkeypatch.setattr(prefilter, "MEMO_ENTRIES", 4)
    for n in range(20):
        pf.scan_memo(b"buffer %d" % n)
    assert len(pf.memo) <= 4
    pf.scan_memo(b"x" * (prefilter.MEMO_MAX_LEN + 1))
    assert b"x" * (prefilter.MEMO_MAX_LEN + 1) not in pf.memo


def test_bsize_bounds_the_anchor():
    rule = parse_rule('alert http any any -> any any (http.user_agent; content:"Mozilla"; bsize:7; sid:1;)')
    eng = DetectionEngine([rule], cache_dir=None)
    ((name, _, pf, _),) = [b for _, bufs in eng.groups[6].tx_kinds[("http", True)] for b in bufs]
    assert name == "http.user_agent"
    assert _hits(pf, b"Mozilla") == [0]
    assert _hits(pf, b"Mozilla/5.0") == [] and _hits(pf, b"xMozilla") == []
    rule = parse_rule('alert http any any -> any any (http.uri; content:"/a"; bsize:<10; sid:2;)')
    eng = DetectionEngine([rule], cache_dir=None)
    ((_, _, pf, _),) = [b for _, bufs in eng.groups[6].tx_kinds[("http", True)] for b in bufs]
    assert _hits(pf, b"/x/a") == [0] and _hits(pf, b"/xxxxxxx/a") == []


def test_payload_databases_per_direction():
    rules = [parse_rule('alert tcp any any -> any any (flow:to_server; content:"request-side"; sid:1;)'),
             parse_rule('alert tcp any any -> any any (flow:to_client; content:"response-side"; sid:2;)'),
             parse_rule('alert tcp any any -> any any (content:"either-side"; sid:3;)')]
    eng = DetectionEngine(rules, cache_dir=None)
    payload = b"request-side response-side either-side"
    for to_server, want in ((True, [1, 3]), (False, [2, 3])):
        eng.evaluated = 0
        pkt = decode(tcp(C, S, 1234, 80, "PA", 1, 1, payload), 1.0)
        out = eng.inspect(pkt, Flow(1, (), pkt, True), to_server, pkt.payload, [], established=True)
        assert [m.rule.sid for m in out] == want
        assert eng.evaluated == 2       # the other direction's rule is not even a candidate


def test_rule_for_most_ports_is_no_candidate_on_the_ports_it_leaves_out(tmp_path):
    # ET's P2P rules name 1024:65535: a DNS query to port 53 holding their fast pattern is not a candidate
    rule = parse_rule('alert udp any any -> any 1024: (msg:"high"; content:"|00 00 00 00 00|"; sid:1;)')
    eng = DetectionEngine([rule], cache_dir=None)
    pf = eng.groups[17].prefilters["pkt_data"]          # the UDP group's payload database
    data = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    assert pf.scan(data, 53, 40000) == []
    assert [i for t in pf.scan(data, 5353, 40000) for i in t] == [0]
    assert [i for t in pf.scan(data, 40001, 53) for i in t] == [0]
    # and through the whole pipeline: an alert on the high port only
    insp, events, _ = inspector(tmp_path, 'alert udp any any -> any 1024: (msg:"high"; '
                                          'content:"|00 00 00 00 00|"; sid:1;)\n')
    run(insp, [udp(C, S, 40000, 53, data), udp(C, S, 40000, 5353, data)])
    assert [a["dest_port"] for a in alerts(events)] == [5353]


def test_compile_all_on_threads_builds_what_compile_builds(tmp_path, monkeypatch):
    """Databases built by compile_all on several threads find what one built alone finds, including two
    databases of the very same patterns (one cache entry) written at the same time; before it runs a
    deferred prefilter finds nothing."""
    from gateway.ids import prefilter as pfmod

    monkeypatch.setattr(pfmod, "usable_cpus", lambda: 4)
    words = [b"alpha", b"bravo", b"charlie", b"delta", b"echo", b"foxtrot", b"golf", b"hotel"]
    sets = [[(w + b"%d" % i, i % 2 == 0, n) for n, w in enumerate(words)] for i in range(6)]
    sets.append(list(sets[0]))                      # the same digest twice: one cache file, two writers
    sets.append([(b"x", False, 0)])                 # a small set: substring checks, no Hyperscan
    cache = tmp_path / "hs"
    deferred = [BufferPrefilter(s, build=False) for s in sets]
    assert all(_hits(pf, b"alpha0 ECHO0 x") == [] for pf in deferred)
    pfmod.compile_all(deferred, cache)
    alone = [BufferPrefilter(s, None) for s in sets]
    probes = [b"alpha0 ECHO0 golf0", b"BRAVO3 delta3 hotel5", b"nothing", b"x", b"CHARLIE2charlie2"]
    for a, b in zip(deferred, alone):
        for data in probes:
            assert _hits(a, data) == _hits(b, data)
    assert _hits(deferred[0], b"ALPHA0 bravo0") == [0, 1]      # the even sets are nocase
    assert _hits(deferred[1], b"ALPHA1 bravo1") == [1]
    assert len(list(cache.glob("*.hsdb"))) == 6 and not list(cache.glob("*.tmp"))
    again = [BufferPrefilter(s, build=False) for s in sets]
    pfmod.compile_all(again, cache)
    assert sum(pf.from_cache for pf in again) == 7


def test_usable_cpus_follows_the_affinity_mask():
    """A process pinned to one CPU compiles on one thread, however many the machine has."""
    import subprocess
    import sys

    code = ("import os; from gateway.ids.prefilter import usable_cpus; "
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); print(usable_cpus())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "1"


def test_rules_naming_another_app_protocol_are_no_candidates():
    # one pattern, four rules: any protocol (0), ftp (1), http (2), ftp for port 21 only (3)
    pf = BufferPrefilter([(b"SITE", True, 0), (b"SITE", True, 1), (b"SITE", True, 2), (b"SITE", True, 3, [21])],
                         cache_dir=None)
    pf.set_apps({1: "ftp", 2: "http", 3: "ftp"}.get)

    def found(app, dport=80):
        return sorted(i for t in pf.scan(b"GET /site HTTP/1.1", dport, 40000, app) for i in t)
    assert found(None) == [0, 1, 2]                 # protocol not known yet: every rule
    assert found("http") == [0, 2]
    assert found("ftp") == [0, 1]
    assert found("ftp", 21) == [0, 1, 3]
    assert found("http", 21) == [0, 2]
    assert found("tls") == [0]


def test_an_ftp_payload_rule_stays_quiet_on_http_and_fires_on_ftp(tmp_path):
    rules = ('alert ftp any any -> any any (msg:"ftp site"; flow:to_server; content:"SITE"; nocase; sid:1;)\n'
             'alert tcp any any -> any any (msg:"any site"; flow:to_server; content:"SITE"; nocase; sid:2;)\n')
    insp, events, _ = inspector(tmp_path, rules)
    run(insp, conversation([(b"GET /site HTTP/1.1\r\nHost: h\r\n\r\n", True)]))
    assert sorted(a["alert"]["signature_id"] for a in alerts(events)) == [2]
    events.clear()
    run(insp, conversation([(b"220 ftp.example FTP ready\r\n", False), (b"SITE CHMOD 777 x\r\n", True)],
                           cport=40001, sport=21))
    assert sorted(a["alert"]["signature_id"] for a in alerts(events)) == [1, 2]
