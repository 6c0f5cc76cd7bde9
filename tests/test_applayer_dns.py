"""DNS parser: scapy-crafted messages, TCP framing split anywhere, hostile names, fuzzing, captures."""
from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX

from gateway.applayer.dns import DnsLimits, DnsParser, parse_message

from .test_applayer_pcaputil import DATA, tcp_streams, udp_datagrams


def query(name="www.example.com", qtype="A", qid=0x1234) -> bytes:
    return bytes(DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype)))


def answer(qid=0x1234) -> bytes:
    an = (DNSRR(rrname="www.example.com", type="CNAME", rdata="edge.example.net", ttl=60)
          / DNSRR(rrname="edge.example.net", type="A", rdata="198.18.0.7", ttl=30)
          / DNSRR(rrname="edge.example.net", type="AAAA", rdata="2001:db8::7")
          / DNSRRMX(rrname="example.com", preference=10, exchange="mx.example.com")
          / DNSRR(rrname="example.com", type="TXT", rdata=[b"v=spf1 -all", b"second"])
          / DNSRR(rrname="7.0.18.198.in-addr.arpa", type="PTR", rdata="edge.example.net")
          / DNSRR(rrname="example.com", type="NS", rdata="ns1.example.com"))
    return bytes(DNS(id=qid, qr=1, aa=1, rd=1, ra=1, rcode=0, qd=DNSQR(qname="www.example.com"),
                     an=an, ancount=7))


def test_udp_query_and_answer_pair():
    p = DnsParser()
    ev = p.feed(query(), True)
    assert [e.kind for e in ev] == ["query"]
    tx = ev[0].tx
    assert tx.buffers("dns.query") == [b"www.example.com"]          # no trailing dot
    q = tx.query
    assert q.rd and not q.is_response and q.questions == [(b"www.example.com", 1, 1)]
    ev = p.feed(answer(), False)
    assert [e.kind for e in ev] == ["response"] and ev[0].tx is tx
    r = tx.response
    got = [(rr.rrtype, rr.value) for rr in r.answers]
    assert got == [
        (5, b"edge.example.net"), (1, "198.18.0.7"), (28, "2001:db8::7"), (15, (10, b"mx.example.com")),
        (16, [b"v=spf1 -all", b"second"]), (12, b"edge.example.net"), (2, b"ns1.example.com"),
    ]
    assert r.rcode_name == "NOERROR" and r.aa and r.ra and r.complete
    assert tx.buffers("dns.answers.rrname")[0] == b"www.example.com"
    assert b"edge.example.net" in tx.buffers("dns.response.rrname")


def test_nxdomain_and_flags():
    m = parse_message(bytes(DNS(id=9, qr=1, rcode=3, qd=DNSQR(qname="nope.example"))))
    assert m.rcode_name == "NXDOMAIN" and m.is_response and not m.answers


def test_tcp_framing_split_at_every_byte():
    wire = b"".join(struct.pack("!H", len(m)) + m for m in (query(qid=1), query("b.example", qid=2)))
    whole = DnsParser(tcp=True).feed(wire, True)
    p = DnsParser(tcp=True)
    pieces = []
    for i in range(len(wire)):
        pieces += p.feed(wire[i:i + 1], True)
    names = [e.tx.buffers("dns.query") for e in pieces]
    assert names == [e.tx.buffers("dns.query") for e in whole] == [[b"www.example.com"], [b"b.example"]]


def test_compression_pointer_loop_is_an_anomaly_not_a_hang():
    hdr = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    looping = hdr + b"\x03abc\xc0\x0c" + b"\x00\x01\x00\x01"          # points back at itself
    m = parse_message(looping)
    assert "infinite_loop" in m.anomalies and not m.complete
    self_ptr = hdr + b"\xc0\x0c\x00\x01\x00\x01"
    assert "infinite_loop" in parse_message(self_ptr).anomalies


def test_overlong_name_is_truncated_like_suricata():
    hdr = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    label = b"\x3f" + b"a" * 63
    msg = hdr + label * 40 + b"\x00\x00\x01\x00\x01"                   # 2560 bytes of name
    m = parse_message(msg)
    assert len(m.questions[0][0]) == 1025 and "name_too_long" in m.anomalies and m.complete


def test_truncated_and_short_messages():
    p = DnsParser()
    assert [e.info for e in p.feed(b"\x00\x01\x02", True)] == ["malformed_data"]
    ev = p.feed(query()[:-3], True)
    assert "malformed_data" in [e.info for e in ev if e.kind == "anomaly"]
    assert ev[0].kind == "query"                                        # header still reported


def test_unsolicited_response_and_z_flag():
    p = DnsParser()
    ev = p.feed(bytes(DNS(id=5, qr=1, z=1, qd=DNSQR(qname="x.example"))), False)
    assert {"unsolicited_response", "z_flag_set"} <= {e.info for e in ev if e.kind == "anomaly"}


def test_pending_queries_are_bounded():
    p = DnsParser(limits=DnsLimits(max_pending=8))
    for i in range(50):
        p.feed(query(qid=i), True)
    assert len(p.pending) == 8


def test_capture_query_name():
    p = DnsParser()
    names = []
    for payload, sport, dport in udp_datagrams(DATA / "dns-query-name.pcap"):
        for e in p.feed(payload, dport == 53):
            if e.kind == "query":
                names += e.tx.buffers("dns.query")
            if e.kind == "response":
                assert b"suricata-ids.org" in e.tx.buffers("dns.response.rrname")
    assert names == [b"www.suricata-ids.org"]


def test_buffers_follow_the_direction_of_the_message():
    # suricata-verify dns-answer-name: the request itself carries an answer record, and
    # dns.answers.rrname matches it to_server as well as the real answers to_client.
    p = DnsParser()
    seen = []
    for payload, _, dport in udp_datagrams(DATA / "dns-answer-name.pcap"):
        for e in p.feed(payload, dport == 53):
            if e.kind in ("query", "response"):
                ts = e.kind == "query"
                seen.append((e.kind, e.tx.buffers("dns.answers.rrname", ts), e.tx.buffers("dns.response.rrname", ts)))
    assert seen == [("query", [b"oisf.net"], []),
                    ("response", [b"oisf.net", b"oisf.net"], [b"oisf.net", b"oisf.net", b"oisf.net"])]


def test_capture_truncated_rnames_over_tcp():
    (client, _), = tcp_streams(DATA / "dns-truncated-rname.pcap")
    p = DnsParser(tcp=True)
    ev = p.feed(client, True)
    q = next(e for e in ev if e.kind == "query").tx.query
    assert q.questions and all(len(name) == 1025 for name, _, _ in q.questions)
    assert {"name_too_long", "too_many_records"} <= {e.info for e in ev if e.kind == "anomaly"}


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_random_bytes_never_raise(data, tcp, to_server):
    for e in DnsParser(tcp=tcp).feed(data, to_server):
        assert not e.info.startswith("internal_error")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=10))
def test_mutated_answers_never_raise(mutations):
    msg = bytearray(answer())
    for pos, val in mutations:
        msg[pos % len(msg)] = val
    m = parse_message(bytes(msg))
    assert m is not None
    for e in DnsParser().feed(bytes(msg), False):
        assert not e.info.startswith("internal_error")
