"""TCP reassembly: in order, out of order, overlaps (first wins), gaps, depth, limits, wraparound."""

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pipeline import Verdict

from .conftest import Recorder, handshake, make_inspector, tcp

C, S = "10.10.0.10", "198.18.0.10"


def _session(stream_cfg=None, cseq=1000, sseq=5000):
    rec = Recorder()
    raw = {"stream": stream_cfg} if stream_cfg else {}
    insp = make_inspector(raw, extra_stages=[rec])
    for data, _ in handshake(C, S, cseq=cseq, sseq=sseq):
        insp.process(data, 1.0)
    return insp, rec


def _send(insp, seq, payload, client=True, ack=None, flags="PA", ts=1.0):
    if client:
        return insp.process(tcp(C, S, 40000, 80, flags, seq, ack if ack is not None else 5001, payload), ts)
    return insp.process(tcp(S, C, 80, 40000, flags, seq, ack if ack is not None else 1001, payload), ts)


def test_in_order_both_directions():
    insp, rec = _session()
    _send(insp, 1001, b"GET / HTTP/1.1\r\n")
    _send(insp, 1017, b"Host: x\r\n\r\n")
    _send(insp, 5001, b"HTTP/1.1 200 OK\r\n\r\n", client=False)
    assert rec.data[True] == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert rec.data[False] == b"HTTP/1.1 200 OK\r\n\r\n"


def test_out_of_order_is_buffered_then_released():
    insp, rec = _session()
    _send(insp, 1006, b"world")
    assert rec.data[True] == b""
    _send(insp, 1001, b"hello")
    assert rec.data[True] == b"helloworld"
    assert insp.stages[1].pending_total == 0


def test_overlap_first_wins_and_mismatch_counted():
    insp, rec = _session()
    _send(insp, 1001, b"AAAA")
    _send(insp, 1003, b"ZZBB")          # rewrites "AA" with "ZZ": ignored, tail "BB" is new
    assert rec.data[True] == b"AAAABB"
    _send(insp, 1009, b"DDDD")          # buffered ahead
    _send(insp, 1009, b"EEEEFF")        # overlaps the buffered segment: first wins, tail kept
    _send(insp, 1007, b"CC")
    assert rec.data[True] == b"AAAABBCCDDDDFF"
    stream = insp.flows.flows[next(iter(insp.flows.flows))].streams[0]
    assert stream.overlap_mismatch >= 1


def test_retransmission_is_not_delivered_twice():
    insp, rec = _session()
    _send(insp, 1001, b"abc")
    _send(insp, 1001, b"abc")
    _send(insp, 1004, b"def")
    assert rec.data[True] == b"abcdef"


def test_fast_open_syn_data_starts_the_stream():
    # TCP Fast Open: the SYN's data is the stream's first bytes (at ISN + 1) and the next segment continues it;
    # a retransmitted SYN with the same data is not delivered again
    rec = Recorder()
    insp = make_inspector(extra_stages=[rec])
    insp.process(tcp(C, S, 40000, 80, "S", 1000, 0, b"GET /a"), 1.0)
    assert rec.data[True] == b"GET /a"
    insp.process(tcp(C, S, 40000, 80, "S", 1000, 0, b"GET /a"), 1.1)
    insp.process(tcp(S, C, 80, 40000, "SA", 5000, 1007), 1.2)
    insp.process(tcp(C, S, 40000, 80, "A", 1007, 5001, b"bc HTTP/1.1\r\n\r\n"), 1.3)
    assert rec.data[True] == b"GET /abc HTTP/1.1\r\n\r\n"
    assert rec.gaps == 0


def test_fast_open_data_the_server_refuses_is_taken_from_the_resend():
    # the SYN/ACK acknowledges only the SYN: the server never read the SYN's bytes, so the bytes the client
    # sends next at ISN + 1 (here other ones) are the stream, not an overlap of what the SYN carried
    rec = Recorder()
    insp = make_inspector(extra_stages=[rec])
    insp.process(tcp(C, S, 40000, 80, "S", 1000, 0, b"GET /harmless"), 1.0)
    insp.process(tcp(S, C, 80, 40000, "SA", 5000, 1001), 1.1)
    insp.process(tcp(C, S, 40000, 80, "PA", 1001, 5001, b"GET /real HTTP/1.1\r\n\r\n"), 1.2)
    assert rec.data[True] == b"GET /harmless" + b"GET /real HTTP/1.1\r\n\r\n"   # both were inspected
    assert rec.gaps == 1            # ... but not as one stream: content cannot match across the two
    stream = next(iter(insp.flows.flows.values())).streams[0]
    assert stream.delivered == len(b"GET /real HTTP/1.1\r\n\r\n") and stream.overlap_mismatch == 0


def test_gap_skipped_when_peer_acks_unseen_bytes():
    insp, rec = _session()
    _send(insp, 1001, b"head")
    _send(insp, 1015, b"tail")                    # bytes 1005..1014 never seen
    assert rec.data[True] == b"head"
    _send(insp, 5001, b"", client=False, ack=1019, flags="A")   # server got everything
    _send(insp, 1019, b"more")
    assert rec.data[True] == b"headtailmore"
    assert rec.gaps == 1


def test_depth_limits_inspection_and_enables_bypass():
    insp, rec = _session({"depth": 10})
    assert _send(insp, 1001, b"0123456") == Verdict.ACCEPT
    v = _send(insp, 1008, b"789abcdef")
    assert rec.data[True] == b"0123456789"
    assert v == Verdict.BYPASS                   # depth reached: nothing left to inspect
    assert _send(insp, 1017, b"more") == Verdict.BYPASS


def test_max_pending_bypass_policy():
    insp, _rec = _session({"max_pending": 100, "on_limit": "bypass"})
    _send(insp, 2001, b"x" * 150)                # far ahead, over the per-direction bound
    assert insp.stages[1].limit_hits == 1
    assert _send(insp, 1001, b"late") == Verdict.BYPASS
    assert insp.stages[1].pending_total == 0


def test_max_pending_drop_policy():
    insp, _rec = _session({"max_pending": 100, "on_limit": "drop"})
    assert _send(insp, 2001, b"x" * 150) == Verdict.DROP
    assert _send(insp, 1001, b"late") == Verdict.DROP


def test_memcap_across_flows():
    rec = Recorder()
    insp = make_inspector({"stream": {"memcap": 250, "max_pending": 200}}, extra_stages=[rec])
    for port in (40001, 40002):
        for data, _ in handshake(C, S, cport=port):
            insp.process(data, 1.0)
        insp.process(tcp(C, S, port, 80, "PA", 2001, 5001, b"y" * 150), 1.0)
    assert insp.stages[1].limit_hits == 1


def test_sequence_wraparound():
    insp, rec = _session(cseq=0xFFFFFFF0)
    first = 0xFFFFFFF1
    _send(insp, (first + 10) & 0xFFFFFFFF, b"B" * 20)   # after the wrap, out of order
    _send(insp, first, b"A" * 10)
    assert rec.data[True] == b"A" * 10 + b"B" * 20


def test_midstream_pickup():
    rec = Recorder()
    insp = make_inspector(extra_stages=[rec])
    insp.process(tcp(C, S, 40000, 80, "PA", 777, 1, b"abc"), 1.0)
    insp.process(tcp(C, S, 40000, 80, "PA", 780, 1, b"def"), 1.0)
    assert rec.data[True] == b"abcdef"
    rec2 = Recorder()
    insp2 = make_inspector({"stream": {"midstream": False}}, extra_stages=[rec2])
    insp2.process(tcp(C, S, 40000, 80, "PA", 777, 1, b"abc"), 1.0)
    assert rec2.data[True] == b""


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(1, 400), min_size=1, max_size=30),
       st.randoms(use_true_random=False), st.integers(0, 3))
def test_any_segmentation_and_order_yields_the_stream(data, cuts, rnd, dups):
    """Split the stream anywhere, shuffle, duplicate some segments: the same bytes come out, once."""
    insp, rec = _session()
    segs, off = [], 0
    for c in cuts:
        if off >= len(data):
            break
        segs.append((off, data[off:off + c]))
        off += c
    if off < len(data):
        segs.append((off, data[off:]))
    segs += [rnd.choice(segs) for _ in range(dups)]
    rnd.shuffle(segs)
    for off, seg in segs:
        _send(insp, 1001 + off, seg)
    assert rec.data[True] == data
