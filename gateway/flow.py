"""Bidirectional flow table: TCP state, per-state timeouts, and a hard size bound.

A worker owns its table (shared-nothing): the kernel's queue-balance hash keeps both directions of a flow
on one queue. Timeouts run on packet time, so replay behaves like inline.
"""
from __future__ import annotations

import itertools

from .config import FlowSection
from .packet import (
    ACK,
    FIN,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    RST,
    SYN,
    Packet,
    ip_text,
    tcp_option,
)

# TCP states (the subset a middlebox can observe)
TCP_NEW, TCP_SYN_SENT, TCP_SYN_RECV, TCP_ESTABLISHED, TCP_CLOSING, TCP_CLOSED = range(6)
TCP_STATE_NAMES = ("new", "syn_sent", "syn_recv", "established", "closing", "closed")


class Flow:
    __slots__ = (
        "flow_id", "key", "proto", "version", "client", "server", "cport", "sport",
        "start_ts", "last_ts", "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient",
        "tcp_state", "fin_seen", "timeout",
        "verdict", "reason", "bypassed", "app_proto", "streams", "state",
        "fw_rule", "fw_log", "src_zone", "dst_zone", "alerted", "end_reason", "midstream",
    )

    def __init__(self, flow_id: int, key: tuple, pkt: Packet, client_is_src: bool):
        self.flow_id = flow_id
        self.key = key
        self.proto = pkt.proto
        self.version = pkt.version
        if client_is_src:
            self.client, self.cport, self.server, self.sport = pkt.src, pkt.sport, pkt.dst, pkt.dport
        else:
            self.client, self.cport, self.server, self.sport = pkt.dst, pkt.dport, pkt.src, pkt.sport
        self.start_ts = self.last_ts = pkt.ts
        self.pkts_toserver = self.pkts_toclient = 0
        self.bytes_toserver = self.bytes_toclient = 0
        self.tcp_state = TCP_NEW
        self.fin_seen = 0          # bit 1: client sent FIN, bit 2: server sent FIN
        self.timeout = 0.0
        self.verdict = None        # sticky verdict (a dropped or bypassed flow stays so)
        self.reason = ""
        self.bypassed = False
        self.app_proto = None
        self.streams = None        # (to_server, to_client) reassemblers, created by the stream stage
        self.state = {}            # per-stage state, keyed by stage name
        self.fw_rule = None        # name of the firewall rule that decided the flow
        self.fw_log = False
        self.src_zone = self.dst_zone = None
        self.alerted = False
        self.end_reason = "timeout"
        self.midstream = False

    @property
    def client_ip(self) -> str:
        return ip_text(self.client)

    @property
    def server_ip(self) -> str:
        return ip_text(self.server)

    @property
    def tcp_state_name(self) -> str:
        return TCP_STATE_NAMES[self.tcp_state]


def eof_packet(flow: Flow, to_server: bool) -> Packet:
    """A packet of one direction of the flow that carries nothing, for the last inspection when the flow ends
    (Suricata's end-of-stream pseudo packet): the flow's addresses and ports, its last time, no bytes."""
    p = Packet()
    p.ts = flow.last_ts
    p.data = b""
    p.version, p.proto = flow.version, flow.proto
    if to_server:
        p.src, p.dst, p.sport, p.dport = flow.client, flow.server, flow.cport, flow.sport
    else:
        p.src, p.dst, p.sport, p.dport = flow.server, flow.client, flow.sport, flow.cport
    p.ttl = p.ip_id = p.ip_hlen = p.length = 0
    return p


def tcp_timestamps(opts: bytes) -> tuple[int, int] | None:
    """(TSval, TSecr) of a TCP timestamps option (kind 8), or None."""
    value = tcp_option(opts, 8)
    if value is None or len(value) != 8:
        return None
    return int.from_bytes(value[:4], "big"), int.from_bytes(value[4:], "big")


def syn_sent_rejects(flow: Flow, pkt: Packet, to_server: bool) -> str | None:
    """Suricata's checks of a packet on a TCP flow in SYN_SENT (stream-tcp.c StreamTcpPacketStateSynSent) that
    make its stream engine ignore the packet: None when it is processed; else the stream event it raises ("" for
    none). A server answer whose timestamp echo is not the SYN's timestamp (bug 3286, a Linux evasion) raises
    pkt_invalid_timestamp; a client RST other than the abort of its own SYN (seq = ISN, window 0, ack = ISN+1)
    is ignored."""
    syn = flow.state.get("tcp_syn")
    if syn is None:
        return None
    isn, syn_ts = syn
    flags = pkt.tcp_flags
    if to_server:
        if not flags & RST or flags & SYN:
            return None
        ok = pkt.seq == isn and pkt.window == 0 and pkt.ack == (isn + 1) & 0xFFFFFFFF
        return None if ok else ""
    ts = tcp_timestamps(pkt.tcp_options) if pkt.tcp_options else None
    if ts is not None and ts[1] != 0 and ts[1] != (syn_ts or 0) and syn_ts != 0:
        return "pkt_invalid_timestamp"
    return None


class FlowTable:
    """Maps packets to flows. `lookup` returns None when the table is full and no flow can be expired;
    the caller applies `flows.on_full`."""

    def __init__(self, cfg: FlowSection, id_base: int = 0):
        self.cfg = cfg
        self.flows: dict[tuple, Flow] = {}
        self._ids = itertools.count(id_base + 1)
        self._timeouts = {
            PROTO_UDP: cfg.udp_timeout, PROTO_ICMP: cfg.icmp_timeout, PROTO_ICMPV6: cfg.icmp_timeout,
        }
        self.next_sweep = 0.0
        self.created = 0
        self.refused_full = 0
        self.ended: list[Flow] = []   # expired flows waiting for the Inspector to log them

    def __len__(self) -> int:
        return len(self.flows)

    def lookup(self, pkt: Packet) -> tuple[Flow, bool, bool] | None:
        """-> (flow, to_server, created) or None if the table is full."""
        a = (pkt.src, pkt.sport)
        b = (pkt.dst, pkt.dport)
        key = (pkt.proto, a, b) if a <= b else (pkt.proto, b, a)
        flow = self.flows.get(key)
        created = False
        if flow is not None and flow.tcp_state == TCP_CLOSED and pkt.proto == PROTO_TCP \
                and pkt.tcp_flags & (SYN | ACK) == SYN:
            # A new connection reusing the ports of one that was closed (RST or FIN both ways): the
            # old flow ends here and the SYN starts a new one with its own state and inspection.
            self.ended.append(self.flows.pop(key))
            flow = None
        if flow is None:
            if len(self.flows) >= self.cfg.max_flows:
                self.expire(pkt.ts, force=True)
                if len(self.flows) >= self.cfg.max_flows:
                    self.refused_full += 1
                    return None
            # The first packet's sender is the client, unless it is a server's SYN/ACK or the kernel's
            # conntrack says it travels in the reply direction (a worker restarted mid-connection).
            client_is_src = not pkt.reply
            if pkt.proto == PROTO_TCP and (pkt.tcp_flags & (SYN | ACK)) == (SYN | ACK):
                client_is_src = False
            elif pkt.proto == PROTO_TCP and not pkt.tcp_flags & SYN and pkt.payload[:5] == b"HTTP/":
                # picked up midstream with an HTTP response: its sender is the server (Suricata reverses
                # such a flow once protocol detection sees a response first)
                client_is_src = False
            flow = Flow(next(self._ids), key, pkt, client_is_src)
            if pkt.proto == PROTO_TCP and not pkt.tcp_flags & SYN:
                flow.midstream = True
            self.flows[key] = flow
            self.created += 1
            created = True
        to_server = pkt.src == flow.client and pkt.sport == flow.cport
        if to_server:
            flow.pkts_toserver += 1
            flow.bytes_toserver += pkt.length
        else:
            flow.pkts_toclient += 1
            flow.bytes_toclient += pkt.length
        flow.last_ts = pkt.ts
        if pkt.proto == PROTO_TCP:
            # Most TCP packets are plain data/ACKs of an established flow: no state change, and the
            # timeout is already the established one.
            if pkt.tcp_flags & (SYN | FIN | RST) or flow.tcp_state != TCP_ESTABLISHED:
                self._tcp_track(flow, pkt, to_server)
        else:
            flow.timeout = self._timeouts.get(pkt.proto, self.cfg.other_timeout)
        return flow, to_server, created

    def _tcp_track(self, flow: Flow, pkt: Packet, to_server: bool) -> None:
        flags = pkt.tcp_flags
        st = flow.tcp_state
        if st == TCP_SYN_SENT and syn_sent_rejects(flow, pkt, to_server) is not None:
            return      # Suricata's stream engine ignores it: no state change
        if st == TCP_CLOSED and not flags & RST:
            rst = flow.state.get("tcp_rst")
            if rst is not None and rst[0] == to_server:
                # Suricata (StreamTcpPacketStateClosed): the sender of the RST goes on talking, so the RST
                # was likely injected: the connection resumes in the state it had
                del flow.state["tcp_rst"]
                st = rst[1]
                flow.end_reason = "timeout"
        if flags & RST:
            if st != TCP_CLOSED:
                flow.state["tcp_rst"] = (to_server, st)     # who reset it, from which state
            st = TCP_CLOSED
            flow.end_reason = "rst"
        elif flags & SYN:
            if flags & ACK:
                if st < TCP_SYN_RECV:
                    st = TCP_SYN_RECV
            elif st == TCP_NEW:
                st = TCP_SYN_SENT
                # what the SYN_SENT checks compare the answers with: ISN and TCP timestamp value
                ts = tcp_timestamps(pkt.tcp_options)
                flow.state["tcp_syn"] = (pkt.seq, ts[0] if ts else None)
        elif flags & FIN:
            flow.fin_seen |= 1 if to_server else 2
            st = TCP_CLOSED if flow.fin_seen == 3 else TCP_CLOSING
            if st == TCP_CLOSED:
                flow.end_reason = "fin"
        elif flags & ACK and st in (TCP_NEW, TCP_SYN_SENT, TCP_SYN_RECV):
            st = TCP_ESTABLISHED
        flow.tcp_state = st
        cfg = self.cfg
        if st == TCP_ESTABLISHED:
            flow.timeout = cfg.tcp_established_timeout
        elif st >= TCP_CLOSING:
            flow.timeout = cfg.tcp_closed_timeout
        else:
            flow.timeout = cfg.tcp_new_timeout

    def expire(self, now: float, force: bool = False) -> int:
        """Move flows idle past their timeout to `ended` (the Inspector logs and releases them).
        Runs about once a second of packet time, and at once when the table is full."""
        if not force and now < self.next_sweep:
            return 0
        self.next_sweep = now + 1.0
        dead = [k for k, f in self.flows.items() if now - f.last_ts >= f.timeout]
        pop = self.flows.pop
        self.ended.extend(pop(k) for k in dead)
        return len(dead)

    def drain(self) -> None:
        """Move every flow to `ended` (end of a pcap, worker shutdown)."""
        for f in self.flows.values():
            if f.tcp_state != TCP_CLOSED:
                f.end_reason = "shutdown"
        self.ended.extend(self.flows.values())
        self.flows.clear()
