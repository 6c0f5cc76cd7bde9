"""Rule actions as Suricata applies them: action-order, the scope of a drop/pass (packet or flow), IP-only rules,
the EVE `verdict` object, `drop` events (events.drop_flows), reject variants and X-Forwarded-For in alerts.
Crafted packets through the real Inspector and stages."""
from __future__ import annotations

import pytest

from gateway.config import ConfigError, from_dict
from gateway.ids.rules import parse_rule
from gateway.pipeline import Inspector, Verdict
from gateway.signatures import SignatureSet
from gateway.stages import build_stages

from .conftest import tcp, udp
from .test_ids_engine import alerts, conversation

A, B = "10.10.0.10", "198.18.0.10"


@pytest.fixture(autouse=True)
def _hs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_HS_CACHE", str(tmp_path / "hs"))


def replay(tmp_path, rules: str, pkts, ips: bool = False, raw: dict | None = None):
    path = tmp_path / "t.rules"
    path.write_text(rules)
    cfg = from_dict(raw or {})
    sigs = SignatureSet(root=tmp_path, rule_files=(path,), yara_files=(), lists={}, mail_files=())
    events: list[dict] = []
    insp = Inspector(cfg, build_stages(cfg, sigs, ips=ips), sink=events.append)
    verdicts = [insp.process(p, 1700000000 + i * 0.01) for i, p in enumerate(pkts)]
    insp.finish()
    return verdicts, events


def sids(events) -> list[int]:
    return [e["alert"]["signature_id"] for e in alerts(events)]


def drops(events) -> list[dict]:
    return [e for e in events if e["event_type"] == "drop"]


def test_action_order_decides_whether_pass_or_alert_wins(tmp_path):
    rules = ("alert udp any any -> any 53 (content:\"x\"; sid:1;)\n"
             "pass udp any any -> any 53 (content:\"x\"; sid:2;)\n")
    pkts = [udp(payload=b"x")]
    _, events = replay(tmp_path, rules, pkts)
    assert sids(events) == []                      # default order: pass, drop, reject, alert
    _, events = replay(tmp_path, rules, pkts, raw={"ids": {"action_order": ["alert", "pass", "drop", "reject"]}})
    assert sids(events) == [1]
    assert alerts(events)[0]["verdict"] == {"action": "pass"}     # the packet was still passed


def test_packet_drop_of_a_udp_content_rule_keeps_inspecting_the_flow(tmp_path):
    # a payload match outside a TCP stream is a packet match: the drop acts on that packet only
    rules = "drop udp any any -> any 53 (content:\"bad\"; sid:1;)\n"
    pkts = [udp(payload=b"bad"), udp(payload=b"good"), udp(payload=b"bad")]
    verdicts, events = replay(tmp_path, rules, pkts, ips=True)
    assert verdicts == [Verdict.DROP, Verdict.ACCEPT, Verdict.DROP]
    assert sids(events) == [1, 1]
    assert [d["drop"]["reason"] for d in drops(events)] == ["rules", "rules"]
    assert all(e["verdict"] == {"action": "drop"} for e in alerts(events))


def test_ip_only_rule_fires_on_the_first_packet_of_each_direction(tmp_path):
    rules = "alert udp any any -> any any (sid:1;)\n"
    pkts = [udp(A, B, 4000, 53), udp(A, B, 4000, 53), udp(B, A, 53, 4000), udp(B, A, 53, 4000)]
    _, events = replay(tmp_path, rules, pkts)
    assert [e["src_ip"] for e in alerts(events)] == [A, B]


def test_flow_drop_in_ids_mode_stops_detection_but_forwards(tmp_path):
    # an IP-only drop acts on the flow; without --ips packets pass, but the flow is not inspected any more
    rules = ("drop udp any any -> any 53 (sid:1;)\n"
             "alert udp any any -> any 53 (content:\"x\"; sid:2;)\n")
    pkts = [udp(payload=b"a"), udp(payload=b"x")]
    verdicts, events = replay(tmp_path, rules, pkts)
    assert Verdict.DROP not in verdicts           # (BYPASS: nothing is left to inspect in the flow)
    assert sids(events) == [1]
    assert alerts(events)[0]["alert"]["action"] == "allowed"
    assert alerts(events)[0]["verdict"] == {"action": "alert"}
    assert drops(events) == []                    # the drop log is an IPS log


@pytest.mark.parametrize("flows,expected", [("start", ["rules", "flow drop"]),
                                            ("all", ["rules", "flow drop", "flow drop", "flow drop"])])
def test_drop_events_of_a_dropped_flow(tmp_path, flows, expected):
    rules = "drop udp any any -> any 53 (noalert; sid:7;)\n"
    pkts = [udp(A, B, 4000, 53), udp(A, B, 4000, 53), udp(B, A, 53, 4000), udp(B, A, 53, 4000)]
    verdicts, events = replay(tmp_path, rules, pkts, ips=True, raw={"events": {"drop_flows": flows}})
    assert verdicts == [Verdict.DROP] * 4
    assert sids(events) == []                     # noalert: no alert, but the drop event names the rule
    got = drops(events)
    assert [d["drop"]["reason"] for d in got] == expected
    assert got[0]["alert"]["signature_id"] == 7 and "alert" not in got[1]
    if flows == "start":                          # once per direction
        assert [d["direction"] for d in got] == ["to_server", "to_client"]


def test_reject_variants_and_their_verdict(tmp_path):
    assert parse_rule("rejectdst tcp any any -> any any (sid:1;)").reject_target == "to_server"
    assert parse_rule("rejectboth tcp any any -> any any (sid:1;)").reject_target == "both"
    r = parse_rule("rejectsrc tcp any any -> any any (sid:1;)")
    assert (r.action, r.reject_target) == ("reject", "to_client")
    rules = "reject udp any any -> any 53 (content:\"x\"; sid:1;)\n"
    verdicts, events = replay(tmp_path, rules, [udp(payload=b"x")], ips=True)
    assert verdicts == [Verdict.REJECT]
    want = {"action": "drop", "reject_target": "to_client", "reject": ["icmp-prohib"]}
    assert alerts(events)[0]["verdict"] == want and drops(events)[0]["verdict"] == want
    _, events = replay(tmp_path, rules, [udp(payload=b"x")])         # IDS: reported, not done
    assert alerts(events)[0]["verdict"] == dict(want, action="alert")
    # rejectdst inline: the kernel's REJECT answers only the sender, so the packet is dropped silently
    verdicts, events = replay(tmp_path, "rejectdst tcp any any -> any 80 (flags:S; sid:2;)\n", [tcp()], ips=True)
    assert verdicts == [Verdict.DROP]
    assert alerts(events)[0]["verdict"] == {"action": "drop", "reject_target": "to_server", "reject": ["tcp-reset"]}


def _xff_request(xff: bytes) -> list[bytes]:
    req = b"GET /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: " + xff + b"\r\n\r\n"
    return conversation([(req, True), (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nuid", False)])


@pytest.mark.parametrize("deployment,mode,check", [
    ("reverse", "extra-data", lambda e: e["alert"]["xff"] == "10.3.3.3"),
    ("forward", "extra-data", lambda e: e["alert"]["xff"] == "10.2.2.2"),
    ("forward", "overwrite", lambda e: e["dest_ip"] == "10.2.2.2" and "xff" not in e["alert"]),
])
def test_xff_in_alerts(tmp_path, deployment, mode, check):
    rules = "alert http any any -> any any (http.response_body; content:\"uid\"; sid:1;)\n"
    raw = {"events": {"xff": {"enabled": True, "mode": mode, "deployment": deployment}}}
    _, events = replay(tmp_path, rules, _xff_request(b"10.2.2.2:8080, 10.3.3.3"), raw=raw)
    assert len(alerts(events)) == 1 and check(alerts(events)[0])
    _, events = replay(tmp_path, rules, _xff_request(b"not-an-address"), raw=raw)
    assert "xff" not in alerts(events)[0]["alert"]
    _, events = replay(tmp_path, rules, _xff_request(b"10.2.2.2"))                 # off by default
    assert "xff" not in alerts(events)[0]["alert"]


@pytest.mark.parametrize("raw,key", [
    ({"ids": {"action_order": ["pass", "drop", "alert"]}}, "ids.action_order"),
    ({"events": {"drop_flows": "some"}}, "events.drop_flows"),
    ({"events": {"xff": {"mode": "replace"}}}, "events.xff.mode"),
    ({"events": {"xff": {"deployment": "sideways"}}}, "events.xff.deployment"),
    ({"events": {"xff": {"header": "X Forwarded"}}}, "events.xff.header"),
    ({"events": {"xff": {"enabled": "yes"}}}, "events.xff.enabled"),
])
def test_action_and_event_settings_are_validated(raw, key):
    with pytest.raises(ConfigError) as e:
        from_dict(raw)
    assert e.value.key == key


def test_teredo_inner_packet_is_inspected_and_rejected(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

    inner = IPv6(src="2001:0:4137:9e50::1", dst="2001:db8::68") / ICMPv6EchoRequest()
    teredo = bytes(IP(src=A, dst=B) / UDP(sport=40000, dport=3544) / inner)
    origin = bytes(IP(src=A, dst=B) / UDP(sport=40000, dport=3544) / (b"\x00\x00" + b"\x11" * 6 + bytes(inner)))
    not_teredo = bytes(IP(src=A, dst=B) / UDP(sport=40001, dport=3544) / (b"\x00\x01" + b"\x00" * 60))
    rules = "reject icmp any any -> any any (sid:2;)\n"
    verdicts, events = replay(tmp_path, rules, [teredo, origin, not_teredo], ips=True)
    assert verdicts == [Verdict.DROP, Verdict.DROP, Verdict.ACCEPT]   # no RST into a tunnel: the carrier drops
    got = alerts(events)
    assert len(got) == 1 and got[0]["proto"] == "IPv6-ICMP" and got[0]["pkt_src"] == "teredo tunnel"
    assert got[0]["verdict"] == {"action": "drop", "reject_target": "to_client", "reject": ["icmp-prohib"]}
