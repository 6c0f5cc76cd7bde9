"""Shared test helpers: craft packets with scapy (tests only; never on the hot path)."""
from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from gateway.config import Config, from_dict
from gateway.firewall import FirewallStage
from gateway.pipeline import Inspector, Stage
from gateway.stream import StreamStage


def tcp(src="10.10.0.10", dst="198.18.0.10", sport=40000, dport=80, flags="S", seq=1000, ack=0,
        payload=b"", v6=False, **ip) -> bytes:
    l3 = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst, **ip)
    return bytes(l3 / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / payload)


def udp(src="10.10.0.10", dst="198.18.0.10", sport=40000, dport=53, payload=b"", v6=False) -> bytes:
    l3 = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    return bytes(l3 / UDP(sport=sport, dport=dport) / payload)


def icmp(src="10.10.0.10", dst="198.18.0.10", type=8, code=0, payload=b"") -> bytes:
    return bytes(IP(src=src, dst=dst) / ICMP(type=type, code=code) / payload)


def handshake(client="10.10.0.10", server="198.18.0.10", cport=40000, sport=80, cseq=1000, sseq=5000,
              **kw) -> list[tuple[bytes, bool]]:
    """The three packets of a TCP handshake as (bytes, sent_by_client)."""
    return [
        (tcp(client, server, cport, sport, "S", cseq, **kw), True),
        (tcp(server, client, sport, cport, "SA", sseq, cseq + 1, **kw), False),
        (tcp(client, server, cport, sport, "A", cseq + 1, sseq + 1, **kw), True),
    ]


def tcp_conversation(segments: list[tuple[bytes, bool]], client: str = "10.10.0.10", server: str = "198.18.0.10",
                     cport: int = 40000, sport: int = 80, acks: bool = False) -> list[bytes]:
    """A handshake, then each (payload, from_client) as one segment with correct sequence and ACK numbers; with
    `acks`, the peer's pure ACK after each segment, as real stacks send it."""
    pkts = [d for d, _ in handshake(client, server, cport, sport)]
    seq = {True: 1001, False: 5001}
    for payload, from_client in segments:
        src, dst, sp, dp = (client, server, cport, sport) if from_client else (server, client, sport, cport)
        pkts.append(tcp(src, dst, sp, dp, "PA", seq[from_client], seq[not from_client], payload))
        seq[from_client] += len(payload)
        if acks:
            pkts.append(tcp(dst, src, dp, sp, "A", seq[not from_client], seq[from_client]))
    return pkts


class Recorder(Stage):
    """A stage that records what it was shown (stream bytes per direction, gaps)."""

    name = "recorder"

    def __init__(self):
        self.data = {True: b"", False: b""}
        self.gaps = 0
        self.packets = 0

    def on_packet(self, ctx):
        self.packets += 1
        if ctx.stream_data:
            self.data[ctx.to_server] += ctx.stream_data
        self.gaps += ctx.stream_gap


@pytest.fixture
def events():
    return []


def make_inspector(raw: dict | None = None, extra_stages=(), events=None) -> Inspector:
    """The foundation pipeline (firewall, stream reassembly) plus `extra_stages`, so these tests see
    the core's own behaviour (e.g. when a flow becomes bypassable) whatever later stages add."""
    cfg = from_dict(raw or {}) if raw is not None else Config()
    sink = events.append if events is not None else None
    return Inspector(cfg, [FirewallStage(cfg), StreamStage(cfg.stream), *extra_stages], sink=sink)
