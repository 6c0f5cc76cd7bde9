"""AppLayerStage: protocol detection per flow, parser feeding from the stream stage, anomalies, bounds."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR

from gateway.applayer.stage import PROBE_BYTES, AppLayerStage, RequestLineView
from gateway.config import Config
from gateway.pipeline import Inspector, Stage
from gateway.stages import build_stages

from .conftest import handshake, tcp, udp

C, S = "10.10.0.10", "198.18.0.10"


class TxRecorder(Stage):
    """Records the (app, tx) pairs the app-layer stage reports per packet."""

    name = "txrec"

    def __init__(self):
        self.seen = []

    def on_packet(self, ctx):
        st = ctx.flow.state.get("applayer")
        if st is not None and st.ctx is ctx:
            self.seen.append(list(st.updated))


def make(events=None):
    cfg = Config()
    rec = TxRecorder()
    stages = build_stages(cfg) + [rec]
    insp = Inspector(cfg, stages, sink=(events.append if events is not None else None))
    return insp, rec, next(s for s in stages if isinstance(s, AppLayerStage))


def segments(chunks, cport=40000, sport=80):
    pkts = [d for d, _ in handshake(C, S, cport, sport)]
    cseq, sseq = 1001, 5001
    for data, from_client in chunks:
        if from_client:
            pkts.append(tcp(C, S, cport, sport, "PA", cseq, sseq, data))
            cseq += len(data)
        else:
            pkts.append(tcp(S, C, sport, cport, "PA", sseq, cseq, data))
            sseq += len(data)
    return pkts


def feed(insp, pkts):
    for i, p in enumerate(pkts):
        insp.process(p, 1700000000 + i * 0.01)


def test_http_detected_by_content_on_any_port_and_transactions_reported():
    insp, rec, stage = make()
    feed(insp, segments([(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", True),
                         (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", False)], sport=8081))
    flow = next(iter(insp.flows.flows.values()))
    assert flow.app_proto == "http" and stage.detected == {"http": 1}
    txs = [t for lst in rec.seen for _, t in lst]
    assert txs and all(getattr(t, "uri", None) == b"/x" for t in txs)


def test_request_line_offered_before_headers_complete():
    insp, rec, _ = make()
    feed(insp, segments([(b"GET /early HTTP/1.1\r\nHost: a\r\n", True)]))
    (app, view), = rec.seen[-1]
    assert app == "http" and isinstance(view, RequestLineView)
    assert view.buffer("http.uri") == b"/early" and view.buffer("http.host") is None


def test_split_detection_waits_for_more_bytes():
    insp, rec, _ = make()
    feed(insp, segments([(b"GE", True), (b"T / HTTP/1.0\r\n\r\n", True)]))
    flow = next(iter(insp.flows.flows.values()))
    assert flow.app_proto == "http"
    assert any(t.uri == b"/" for lst in rec.seen for _, t in lst)


def test_dns_over_udp_and_unknown_protocol_given_up():
    insp, _rec, _ = make()
    q = bytes(DNS(id=1, qd=DNSQR(qname="example.org")))
    feed(insp, [udp(C, S, 5000, 53, q), udp(C, S, 5001, 9999, b"\x00garbage that is not dns")])
    by_port = {f.sport: f for f in insp.flows.flows.values()}
    assert by_port[53].app_proto == "dns" and by_port[9999].app_proto is None
    assert by_port[9999].state["applayer"].failed


def test_probe_is_bounded_and_flow_becomes_bypassable():
    insp, _rec, stage = make()
    junk = bytes(range(256)) * 4
    feed(insp, segments([(b"\x01" + junk, True)] + [(junk, True)] * (PROBE_BYTES // len(junk) + 2)))
    flow = next(iter(insp.flows.flows.values()))
    st_ = flow.state["applayer"]
    assert st_.failed and st_.probe == [bytearray(), bytearray()]
    assert stage.done(flow)


def test_anomaly_events_are_logged_and_capped():
    events = []
    insp, _rec, stage = make(events)
    bad = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(10)) + b"Content-Length: zz\r\n\r\n"
    feed(insp, segments([(bad, True)] + [(b"GET / HTTP/1.1\r\nContent-Length: q\r\n\r\n", True)] * 60))
    anomalies = [e for e in events if e["event_type"] == "anomaly"]
    assert anomalies and all(e["anomaly"]["app_proto"] == "http" for e in anomalies)
    assert stage.anomaly_total > 32 and len(anomalies) == 32     # counted, but logged at most 32 per flow


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.booleans()), max_size=8),
       st.sampled_from([80, 443, 53, 25, 1234]))
def test_arbitrary_bytes_never_raise(chunks, port):
    insp, _rec, _ = make()
    feed(insp, segments(chunks, sport=port))
    assert insp.errors == 0, insp.last_error


def test_a_parser_bug_gives_up_the_flow_instead_of_dropping(monkeypatch):
    insp, _rec, stage = make()

    def boom(self, data, to_server):
        raise RuntimeError("parser bug")
    monkeypatch.setattr("gateway.applayer.http.HttpParser.feed", boom)
    pkts = segments([(b"GET / HTTP/1.1\r\n\r\n", True), (b"GET /2 HTTP/1.1\r\n\r\n", True)])
    verdicts = [insp.process(p, 1700000000 + i * 0.01) for i, p in enumerate(pkts)]
    assert insp.errors == 0 and stage.errors == 1 and "parser bug" in stage.last_error
    assert all(v == 0 for v in verdicts)
    assert next(iter(insp.flows.flows.values())).state["applayer"].failed
