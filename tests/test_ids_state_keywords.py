"""State and rate keywords: hostbits, flowint, threshold backoff / by_flow, detection_filter unique_on, and
Suricata's rule ordering for them (writers before readers). Crafted packets through the real Inspector."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP

from gateway.ids.rules import RuleError, parse_rule

from .test_ids_engine import alerts, inspector, run
from .test_ids_header import lines

A, B, C = "10.10.0.10", "198.18.0.10", "198.18.0.11"


@pytest.fixture(autouse=True)
def _hs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_HS_CACHE", str(tmp_path / "hs"))


def sids(tmp_path, rules: str, pkts) -> list[int]:
    insp, events, _ = inspector(tmp_path, rules)
    run(insp, pkts)
    return [e["alert"]["signature_id"] for e in alerts(events)]


def udp(src, dst, payload=b"x", sport=1000, dport=2000) -> bytes:
    return bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def test_hostbits_live_on_the_host_whichever_side_set_them(tmp_path):
    rules = lines(
        'alert udp any any -> any any (content:"mark"; hostbits:set,seen,dst; hostbits:noalert; sid:1;)',
        # the host marked as a destination is now the source: the same bit
        'alert udp any any -> any any (content:"back"; hostbits:isset,seen,src; sid:2;)',
        'alert udp any any -> any any (content:"back"; hostbits:isnotset,seen,dst; sid:3;)',
        'alert udp any any -> any any (content:"other"; hostbits:isset,seen; sid:4;)',
    )
    got = sids(tmp_path, rules, [udp(A, B, b"mark"), udp(B, A, b"back"), udp(C, A, b"other")])
    assert got == [2, 3]


def test_hostbits_writers_run_before_readers_and_toggle(tmp_path):
    # sid 3 (reader) is listed first; Suricata orders set/toggle rules before isset ones
    rules = lines(
        "alert udp any any -> any any (hostbits:isset,t; sid:3;)",
        "alert udp any any -> any any (hostbits:set,t; sid:1;)",
        "alert udp any any -> any any (hostbits:toggle,t; sid:2;)",
    )
    assert sorted(sids(tmp_path, rules, [udp(A, B)])) == [1, 2]


def test_flowint_counts_per_flow(tmp_path):
    rules = lines(
        "alert udp any any -> any any (flowint:n,notset; flowint:n,=,0; noalert; sid:1;)",
        "alert udp any any -> any any (flowint:n,isset; flowint:n,+,1; noalert; sid:2;)",
        "alert udp any any -> any any (flowint:n,==,3; sid:3;)",
        "alert udp any any -> any any (flowint:n,>,3; flowint:n,<=,limit; sid:4;)",   # limit never set
    )
    pkts = [udp(A, B) for _ in range(5)] + [udp(A, B, sport=1001)]
    # new flow: sid 1 sets n=0, then (ordered after the writer-only rule) sid 2 adds 1 -> n=1 on packet 1
    assert sids(tmp_path, rules, pkts) == [3]


def test_threshold_backoff_by_flow(tmp_path):
    # (a port makes it a packet rule: an IP-only rule is evaluated on the first packet of each direction only)
    rules = "alert udp any any -> any 2000 (threshold:type backoff, track by_flow, count 2, multiplier 3; sid:1;)"
    insp, events, _ = inspector(tmp_path, rules)
    pkts = [udp(A, B) for _ in range(20)] + [udp(A, B, sport=7) for _ in range(2)]
    run(insp, pkts)
    # alerts on matches 2, 6 and 18 of the first flow and on match 2 of the second
    per_flow: dict[int, int] = {}
    for e in alerts(events):
        per_flow[e["flow_id"]] = per_flow.get(e["flow_id"], 0) + 1
    assert sorted(per_flow.values()) == [1, 3]


def test_detection_filter_unique_on_dst_port(tmp_path):
    rules = ("alert tcp any any -> any any (flags:S; detection_filter:track by_src, count 2, seconds 60, "
             "unique_on dst_port; sid:1;)")
    syn = [bytes(IP(src=A, dst=B) / TCP(sport=4000 + i, dport=p, flags="S")) for i, p in
           enumerate([80, 80, 81, 81, 82, 80])]
    # distinct ports 80, 81 (= count), then 82 is the third: that SYN and every later one alerts
    assert sids(tmp_path, rules, syn) == [1, 1]


@pytest.mark.parametrize("text, reason", [
    ("hostbits:isset,x,both", "hostbits: direction must be src or dst"),
    ("hostbits:set", "hostbits: expected"),
    ("flowint:n,+", "flowint: \\+ needs a value"),
    ("flowint:n,isset,3", "flowint: isset takes no value"),
    ("flowint:n,%,3", "flowint: expected"),
    ("threshold:type backoff, track by_flow, count 1, seconds 5", "missing multiplier"),
    ("threshold:type limit, track by_src, count 1, seconds 5, multiplier 2",
     "multiplier goes with type backoff"),
    ("detection_filter:track by_src, count 1, seconds 5, unique_on proto", "unique_on must be"),
    ("threshold:type limit, track by_src, count 1, seconds 5, unique_on dst_port", "unexpected"),
])
def test_bad_state_and_rate_options_rejected(text, reason):
    with pytest.raises(RuleError, match=reason):
        parse_rule(f"alert tcp any any -> any any ({text}; sid:1;)")
