"""Flow table: bidirectional lookup, TCP state, timeouts, the size bound and its policy."""
from gateway.config import FlowSection
from gateway.flow import TCP_CLOSED, TCP_CLOSING, TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT, FlowTable
from gateway.packet import decode
from gateway.pipeline import Verdict

from .conftest import handshake, make_inspector, tcp, udp


def test_both_directions_share_one_flow_and_state_advances():
    t = FlowTable(FlowSection())
    states = []
    for data, by_client in handshake():
        flow, to_server, _ = t.lookup(decode(data, 1.0))
        assert to_server == by_client
        states.append(flow.tcp_state)
    assert states == [TCP_SYN_SENT, TCP_SYN_RECV, TCP_ESTABLISHED]
    assert len(t) == 1 and flow.pkts_toserver == 2 and flow.pkts_toclient == 1
    assert flow.client_ip == "10.10.0.10" and flow.sport == 80


def test_synack_first_orients_flow_to_the_real_client():
    t = FlowTable(FlowSection())
    flow, to_server, created = t.lookup(decode(tcp("198.18.0.10", "10.10.0.10", 80, 40000, "SA"), 1.0))
    assert created and not to_server and flow.client_ip == "10.10.0.10"


def test_fin_both_ways_and_rst_close():
    t = FlowTable(FlowSection())
    for data, _ in handshake():
        flow, *_ = t.lookup(decode(data, 1.0))
    t.lookup(decode(tcp("10.10.0.10", "198.18.0.10", 40000, 80, "FA", 1001, 5001), 2.0))
    t.lookup(decode(tcp("198.18.0.10", "10.10.0.10", 80, 40000, "FA", 5001, 1002), 2.0))
    assert flow.tcp_state == TCP_CLOSED and flow.end_reason == "fin"
    flow2, *_ = t.lookup(decode(tcp(sport=40001, flags="R"), 2.0))
    assert flow2.tcp_state == TCP_CLOSED and flow2.end_reason == "rst"


def test_timeouts_expire_on_packet_time():
    t = FlowTable(FlowSection(udp_timeout=30))
    t.lookup(decode(udp(sport=1), 0.0))
    t.lookup(decode(udp(sport=2), 20.0))
    assert t.expire(31.0) == 1 and len(t) == 1
    assert [f.cport for f in t.ended] == [1]


def test_full_table_expires_idle_then_refuses():
    t = FlowTable(FlowSection(max_flows=2, udp_timeout=10))
    t.lookup(decode(udp(sport=1), 0.0))
    t.lookup(decode(udp(sport=2), 0.0))
    assert t.lookup(decode(udp(sport=3), 5.0)) is None and t.refused_full == 1
    assert t.lookup(decode(udp(sport=3), 11.0)) is not None     # the idle ones made room
    assert len(t) == 1


def test_full_table_policy_applies_and_is_counted():
    for policy, verdict in (("drop", Verdict.DROP), ("accept", Verdict.ACCEPT)):
        insp = make_inspector({"flows": {"max_flows": 1, "on_full": policy}})
        insp.process(udp(sport=1), 0.0)
        assert insp.process(udp(sport=2), 0.0) == verdict
        assert insp.counts[(verdict, "flow_table_full")][0] == 1


def test_flow_event_at_end_carries_counters_and_firewall_rule():
    events = []
    insp = make_inspector(events=events)
    for data, _ in handshake():
        insp.process(data, 1.0)
    insp.finish()
    (flow_ev,) = [e for e in events if e["event_type"] == "flow"]
    assert flow_ev["src_ip"] == "10.10.0.10" and flow_ev["dest_port"] == 80 and flow_ev["proto"] == "TCP"
    assert flow_ev["flow"]["pkts_toserver"] == 2 and flow_ev["flow"]["pkts_toclient"] == 1
    assert flow_ev["flow"]["firewall"]["rule"] == "default:*"


def test_malformed_is_counted_logged_and_policy_applied():
    for policy, verdict in (("drop", Verdict.DROP), ("accept", Verdict.ACCEPT)):
        events = []
        insp = make_inspector({"gateway": {"malformed_policy": policy}}, events=events)
        assert insp.process(b"\x45\x00\x00", 3.0) == verdict
        assert insp.counts[(verdict, "malformed")] == [1, 3]
        assert events[0]["event_type"] == "anomaly" and "ipv4" in events[0]["anomaly"]["event"]


def test_stage_exception_never_escapes():
    from gateway.pipeline import Stage

    class Broken(Stage):
        def on_packet(self, ctx):
            raise RuntimeError("bug")

    insp = make_inspector(extra_stages=[Broken()])
    assert insp.process(udp(), 1.0) == Verdict.DROP
    assert insp.errors == 1 and "RuntimeError" in insp.last_error


def test_tick_expires_idle_flows_without_a_packet():
    events = []
    insp = make_inspector({"flows": {"udp_timeout": 5}}, events=events)
    insp.process(udp(), 100.0)
    insp.tick(103.0)
    assert len(insp.flows) == 1 and not events
    insp.tick(106.0)
    assert len(insp.flows) == 0 and [e["event_type"] for e in events] == ["flow"]


def test_timeout_follows_tcp_state_through_data_fin_and_rst():
    cfg = FlowSection(tcp_new_timeout=11, tcp_established_timeout=22, tcp_closed_timeout=33)
    t = FlowTable(cfg)
    timeouts = []
    for data, _ in handshake():
        flow, *_ = t.lookup(decode(data, 1.0))
        timeouts.append(flow.timeout)
    assert timeouts == [11, 11, 22]
    # data both ways (the established fast path) keeps state and timeout
    for i in range(3):
        t.lookup(decode(tcp("10.10.0.10", "198.18.0.10", 40000, 80, "PA", 1001 + i, 5001, b"x"), 2.0))
        t.lookup(decode(tcp("198.18.0.10", "10.10.0.10", 80, 40000, "A", 5001, 1002 + i), 2.0))
    assert (flow.tcp_state, flow.timeout, flow.pkts_toserver, flow.pkts_toclient) == (TCP_ESTABLISHED, 22, 5, 4)
    t.lookup(decode(tcp("10.10.0.10", "198.18.0.10", 40000, 80, "FA", 1004, 5001), 3.0))
    assert (flow.tcp_state, flow.timeout, flow.fin_seen) == (TCP_CLOSING, 33, 1)
    # a midstream flow: its first ACK makes it established; a later RST closes it
    mid, *_ = t.lookup(decode(tcp(sport=40001, flags="A", seq=7, ack=9), 4.0))
    assert (mid.midstream, mid.tcp_state, mid.timeout) == (True, TCP_ESTABLISHED, 22)
    t.lookup(decode(tcp(sport=40001, flags="PA", seq=7, ack=9, payload=b"y"), 4.0))
    t.lookup(decode(tcp(sport=40001, flags="R", seq=8), 4.5))
    assert (mid.tcp_state, mid.timeout, mid.end_reason) == (TCP_CLOSED, 33, "rst")


def test_syn_on_a_closed_flow_starts_a_new_one():
    t = FlowTable(FlowSection())
    for data, _ in handshake():
        first, *_ = t.lookup(decode(data, 1.0))
    t.lookup(decode(tcp(flags="R", seq=1001), 2.0))
    assert first.tcp_state == TCP_CLOSED
    second, to_server, created = t.lookup(decode(tcp(flags="S", seq=9000), 3.0))
    assert created and to_server and second is not first and second.flow_id != first.flow_id
    assert t.ended == [first] and len(t) == 1
    # a retransmitted SYN of an open connection does not
    again, _, created = t.lookup(decode(tcp(flags="S", seq=9000), 3.1))
    assert again is second and not created


def test_inspector_raises_the_gc_first_generation_threshold():
    import gc

    from gateway.config import Config
    from gateway.pipeline import GC_GEN0_THRESHOLD, Inspector, tune_gc

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        Inspector(Config(), [])
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)
        gc.set_threshold(50_000, 10, 10)       # a higher setting is the operator's: never lowered
        tune_gc()
        assert gc.get_threshold()[0] == 50_000
    finally:
        gc.set_threshold(*saved)
