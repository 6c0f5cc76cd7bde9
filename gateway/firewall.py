"""Zone firewall stage: zones by interface and/or CIDR, ordered rules, per-zone default, stateful.

The decision is taken once, on the first packet of a flow, oriented client -> server; every later packet of
the flow (both directions, so return traffic too) inherits it. ICMP errors (unreachable, time exceeded,
...) are judged per packet: one that quotes a packet of a flow the firewall allowed is "related" and
passes, so path-MTU discovery and traceroute work without opening ICMP from the internet; any other is
judged by the rules and never decides its flow.

Zone of an endpoint: the zone whose interfaces include the packet's in- (source) or out- (destination)
device, else the zone with the longest CIDR containing the address. Rule order is the config's order;
the first match decides. No match: the source zone's `default`, or `firewall.default` when the source is
in no zone.
"""
from __future__ import annotations

import ipaddress

from .config import Config, FirewallRule
from .events import packet_event
from .packet import ACK, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, SYN, Packet
from .pipeline import PacketContext, Stage, Verdict

_ACTIONS = {"allow": Verdict.ACCEPT, "deny": Verdict.DROP, "reject": Verdict.REJECT}
# ICMP types that quote the packet that caused them.
_ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))
_ICMP6_ERRORS = frozenset((1, 2, 3, 4))
_ZONE_CACHE_MAX = 4096


def _net(cidr: str) -> tuple[int, int, int, int]:
    """-> (ip version, network as int, mask as int, prefix length)."""
    n = ipaddress.ip_network(cidr, strict=False)
    return n.version, int(n.network_address), int(n.netmask), n.prefixlen


class _CompiledRule:
    __slots__ = ("dst", "dst_zones", "ports", "proto", "rule", "src", "src_zones", "verdict")

    def __init__(self, rule: FirewallRule, proto_numbers: dict[str, int | None]):
        self.rule = rule
        self.verdict = _ACTIONS[rule.action]
        self.src_zones = frozenset(rule.src_zones)
        self.dst_zones = frozenset(rule.dst_zones)
        self.src = tuple(_net(c) for c in rule.src)
        self.dst = tuple(_net(c) for c in rule.dst)
        self.proto = proto_numbers[rule.proto]
        self.ports = rule.ports

    def matches(self, version: int, src: int, dst: int, proto: int, dport: int,
                src_zone: str | None, dst_zone: str | None) -> bool:
        if self.proto is not None and proto != self.proto and \
                not (self.proto == PROTO_ICMP and proto == PROTO_ICMPV6):   # "icmp" covers both families
            return False
        if self.src_zones and src_zone not in self.src_zones:
            return False
        if self.dst_zones and dst_zone not in self.dst_zones:
            return False
        if self.src and not _in_any(version, src, self.src):
            return False
        if self.dst and not _in_any(version, dst, self.dst):
            return False
        if self.ports:
            for lo, hi in self.ports:
                if lo <= dport <= hi:
                    break
            else:
                return False
        return True


def _in_any(version: int, addr: int, nets: tuple[tuple[int, int, int, int], ...]) -> bool:
    for v, net, mask, _plen in nets:
        if v == version and addr & mask == net:
            return True
    return False


class FirewallStage(Stage):
    name = "firewall"

    def __init__(self, config: Config):
        from .config import PROTOCOLS

        fw = config.firewall
        self.rules = tuple(_CompiledRule(r, PROTOCOLS) for r in fw.rules)
        self.default = _ACTIONS[fw.default]
        self.zone_default = {z.name: _ACTIONS[z.default] for z in fw.zones}
        self.iface_zone = {iface: z.name for z in fw.zones for iface in z.interfaces}
        nets = [(_net(c), z.name) for z in fw.zones for c in z.cidrs]
        nets.sort(key=lambda item: -item[0][3])            # longest prefix first
        self.zone_nets = tuple((v, net, mask, name) for (v, net, mask, _plen), name in nets)
        self._zone_cache: dict[bytes, str | None] = {}
        self.decisions = 0

    # ------------------------------------------------------------------ zones
    def zone_of_addr(self, addr: bytes) -> str | None:
        zone = self._zone_cache.get(addr, False)
        if zone is not False:
            return zone
        version = 4 if len(addr) == 4 else 6
        value = int.from_bytes(addr, "big")
        zone = None
        for v, net, mask, name in self.zone_nets:
            if v == version and value & mask == net:
                zone = name
                break
        if len(self._zone_cache) >= _ZONE_CACHE_MAX:
            self._zone_cache.clear()
        self._zone_cache[addr] = zone
        return zone

    def zones(self, pkt: Packet) -> tuple[str | None, str | None]:
        src_zone = self.iface_zone.get(pkt.indev) if pkt.indev else None
        dst_zone = self.iface_zone.get(pkt.outdev) if pkt.outdev else None
        return (src_zone or self.zone_of_addr(pkt.src), dst_zone or self.zone_of_addr(pkt.dst))

    # ------------------------------------------------------------------ decision
    def decide(self, pkt: Packet, src_zone: str | None, dst_zone: str | None
               ) -> tuple[Verdict, FirewallRule | None]:
        """First matching rule, else the source zone's default, else firewall.default.
        `pkt` must be oriented client -> server."""
        src = int.from_bytes(pkt.src, "big")
        dst = int.from_bytes(pkt.dst, "big")
        for r in self.rules:
            if r.matches(pkt.version, src, dst, pkt.proto, pkt.dport, src_zone, dst_zone):
                return r.verdict, r.rule
        if src_zone is None:
            return self.default, None
        return self.zone_default[src_zone], None

    def on_packet(self, ctx: PacketContext) -> None:
        pkt = ctx.pkt
        flow = ctx.flow
        if pkt.proto == PROTO_ICMP or pkt.proto == PROTO_ICMPV6:
            errors = _ICMP4_ERRORS if pkt.proto == PROTO_ICMP else _ICMP6_ERRORS
            if pkt.icmp_type in errors:
                # Judged per packet and never decides the flow, so an error cannot open the host pair.
                if not self._related(ctx):
                    self._decide_packet(ctx, pkt, whole_flow=False)
                return
        if flow.fw_rule is not None:
            return                          # stateful: the flow's first packet decided
        self._decide_packet(ctx, pkt, whole_flow=True)

    def _decide_packet(self, ctx: PacketContext, pkt: Packet, whole_flow: bool) -> None:
        flow = ctx.flow
        if pkt.reply or pkt.proto == PROTO_TCP and pkt.tcp_flags & SYN and pkt.tcp_flags & ACK:
            # First packet seen is the server's (a SYN/ACK, or conntrack's reply direction after a
            # worker restart): judge the connection client -> server.
            dst_zone, src_zone = self.zones(pkt)
            oriented = _Reversed(pkt)
        else:
            src_zone, dst_zone = self.zones(pkt)
            oriented = pkt
        verdict, rule = self.decide(oriented, src_zone, dst_zone)
        self.decisions += 1
        rule_name = rule.name if rule else f"default:{src_zone or '*'}"
        log = rule.log if rule else verdict != Verdict.ACCEPT
        if whole_flow:
            flow.src_zone, flow.dst_zone = src_zone, dst_zone
            flow.fw_rule = rule_name
            flow.fw_log = log
        if verdict == Verdict.ACCEPT:
            return
        ctx.decide(verdict, "firewall", whole_flow)
        if log:
            ev = packet_event("drop", pkt, flow)
            ev["drop"] = {
                "reason": "firewall",
                "action": "reject" if verdict == Verdict.REJECT else "drop",
                "rule": rule_name,
                "src_zone": src_zone,
                "dest_zone": dst_zone,
            }
            ctx.emit(ev)

    def _related(self, ctx: PacketContext) -> bool:
        """An ICMP error quoting a packet of a flow we allowed passes as related traffic."""
        pkt = ctx.pkt
        if pkt.proto == PROTO_ICMP:
            if len(pkt.payload) < 4 + 20 + 4:
                return False
            inner = pkt.payload[4:]
            ihl = (inner[0] & 0x0F) * 4
            if inner[0] >> 4 != 4 or len(inner) < ihl + 4:
                return False
            proto, src, dst = inner[9], inner[12:16], inner[16:20]
            l4 = ihl
        elif pkt.proto == PROTO_ICMPV6:
            if len(pkt.payload) < 4 + 40 + 4:
                return False
            inner = pkt.payload[4:]
            proto, src, dst = inner[6], inner[8:24], inner[24:40]
            l4 = 40
        else:
            return False
        sport = int.from_bytes(inner[l4:l4 + 2], "big")
        dport = int.from_bytes(inner[l4 + 2:l4 + 4], "big")
        a, b = (src, sport), (dst, dport)
        key = (proto, a, b) if a <= b else (proto, b, a)
        quoted = ctx.inspector.flows.flows.get(key)
        return quoted is not None and quoted.fw_rule is not None and quoted.verdict in (None, Verdict.BYPASS)


    def done(self, flow) -> bool:
        # A flow seen only through ICMP errors has no decision yet: never bypass it.
        return flow.fw_rule is not None


class _Reversed:
    """A packet seen from the other side: lets the rule matcher always work client -> server."""

    __slots__ = ("dport", "dst", "proto", "src", "version")

    def __init__(self, pkt: Packet):
        self.version, self.src, self.dst, self.proto, self.dport = (
            pkt.version, pkt.dst, pkt.src, pkt.proto, pkt.sport)
