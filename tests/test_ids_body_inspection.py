"""When HTTP bodies are inspected: as they arrive in IPS mode (Suricata's http-body-inline), and in IDS mode
once complete, at their minimal inspect size, or when the flow ends (Suricata's libhtp defaults)."""
from __future__ import annotations

import dataclasses

import pytest

from gateway.config import Config, ConfigError, from_dict
from gateway.pipeline import Inspector
from gateway.signatures import SignatureSet
from gateway.stages import build_stages

from .test_ids_engine import _hs_cache, alerts, conversation  # noqa: F401

RULES = ('alert http any any -> any any (msg:"evil body"; flow:to_client; file.data; content:"EVIL"; sid:1;)\n'
         'alert http any any -> any any (msg:"evil upload"; flow:to_server; http.request_body; content:"BAD"; '
         'sid:2;)\n')
REQUEST = b"GET /f HTTP/1.1\r\nHost: a.example\r\n\r\n"


def _inspector(tmp_path, ips=False, **ids):
    path = tmp_path / "t.rules"
    path.write_text(RULES)
    cfg = Config()
    cfg = dataclasses.replace(cfg, ids=dataclasses.replace(cfg.ids, **ids))
    sigs = SignatureSet(root=tmp_path, rule_files=(path,), yara_files=(), lists={}, mail_files=())
    events: list[dict] = []
    return Inspector(cfg, build_stages(cfg, sigs, ips=ips), sink=events.append), events


def _alerting_packets(insp, events, pkts, finish=True):
    """Index of the packet each alert came on (None: at the end of the flow), in order."""
    out = []
    for i, p in enumerate(pkts):
        before = len(alerts(events))
        insp.process(p, 1700000000 + i * 0.01)
        out += [(i, a["alert"]["signature_id"]) for a in alerts(events)[before:]]
    if finish:
        before = len(alerts(events))
        insp.finish()
        out += [(None, a["alert"]["signature_id"]) for a in alerts(events)[before:]]
    return out


def _response(body_parts: list[bytes], length: int | None = None):
    total = sum(len(b) for b in body_parts) if length is None else length
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total
    return [(REQUEST, True), (head + body_parts[0], False)] + [(b, False) for b in body_parts[1:]]


def test_ids_mode_inspects_a_response_body_once_complete(tmp_path):
    # "EVIL" is in the first segment; the body completes three segments later
    parts = [b"EVIL" + b"a" * 996, b"b" * 1000, b"c" * 1000, b"d" * 1000]
    pkts = conversation(_response(parts))
    insp, events = _inspector(tmp_path)
    assert _alerting_packets(insp, events, pkts) == [(len(pkts) - 1, 1)]


def test_ips_mode_inspects_a_response_body_as_it_arrives(tmp_path):
    parts = [b"EVIL" + b"a" * 996, b"b" * 1000, b"c" * 1000, b"d" * 1000]
    pkts = conversation(_response(parts))
    insp, events = _inspector(tmp_path, ips=True)
    assert _alerting_packets(insp, events, pkts) == [(len(pkts) - 4, 1)]
    # the same in IDS mode when http_body_inline says so
    insp, events = _inspector(tmp_path, http_body_inline="yes")
    assert _alerting_packets(insp, events, pkts) == [(len(pkts) - 4, 1)]


def test_ids_mode_inspects_a_body_at_its_minimal_inspect_size(tmp_path):
    parts = [b"EVIL" + b"a" * 996, b"b" * 1000, b"c" * 1000, b"d" * 1000]
    pkts = conversation(_response(parts, length=100_000))     # a long download, still running
    insp, events = _inspector(tmp_path, response_body_minimal_inspect_size=2500)
    # 1,000 then 2,000 bytes wait; at 3,000 the body reaches 2,500 and is inspected
    assert _alerting_packets(insp, events, pkts, finish=False) == [(len(pkts) - 2, 1)]
    # no second alert for the same transaction when more arrives or the flow ends
    insp.finish()
    assert len(alerts(events)) == 1


def test_ids_mode_inspects_a_cut_off_body_when_the_flow_ends(tmp_path):
    parts = [b"a" * 1000, b"EVIL" + b"b" * 996]
    pkts = conversation(_response(parts, length=100_000))     # the capture ends mid-download
    insp, events = _inspector(tmp_path)
    assert _alerting_packets(insp, events, pkts) == [(None, 1)]
    ev = alerts(events)[0]
    assert ev["pkt_src"] == "stream (flow timeout)" and ev["direction"] == "to_client"
    assert ev["src_port"] == 80 and ev["dest_port"] == 40000 and "packet" not in ev
    assert ev["http"]["url"] == "/f"


def test_a_clean_cut_off_body_gives_nothing_at_the_flow_end(tmp_path):
    pkts = conversation(_response([b"a" * 1000, b"b" * 1000], length=100_000))
    insp, events = _inspector(tmp_path)
    assert _alerting_packets(insp, events, pkts) == []


def test_ids_mode_request_body(tmp_path):
    body = [b"BAD" + b"x" * 997, b"y" * 1000]
    head = b"POST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2000\r\n\r\n"
    pkts = conversation([(head + body[0], True), (body[1], True)])
    insp, events = _inspector(tmp_path)
    assert _alerting_packets(insp, events, pkts) == [(len(pkts) - 1, 2)]
    insp, events = _inspector(tmp_path, ips=True)
    assert _alerting_packets(insp, events, pkts) == [(len(pkts) - 2, 2)]


def test_body_inspection_config_is_checked():
    cfg = from_dict({"ids": {"http_body_inline": "no", "response_body_minimal_inspect_size": 4096}})
    assert cfg.ids.http_body_inline == "no" and cfg.ids.response_body_minimal_inspect_size == 4096
    with pytest.raises(ConfigError, match="ids.http_body_inline"):
        from_dict({"ids": {"http_body_inline": "sometimes"}})
    with pytest.raises(ConfigError, match="ids.request_body_minimal_inspect_size"):
        from_dict({"ids": {"request_body_minimal_inspect_size": -1}})
