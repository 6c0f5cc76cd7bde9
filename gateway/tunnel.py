"""Tunnel decapsulation: the inner IP datagram of IP-in-IP, IPv6-in-IP, GRE, VXLAN, Geneve and Teredo packets.

Suricata inspects a tunnelled packet as a packet of its own (its own flow, its EVE events carrying a `tunnel`
object) besides the carrier, and inline the inner packet's verdict applies to the carrier. The Inspector asks
this module only for the protocols concerned (TUNNEL_PROTOS, UDP to the configured VXLAN port, UDP from or to
the Teredo port or the configured Geneve port), so other packets pay nothing. Anomalies are named as Suricata's decoder events.
"""
from __future__ import annotations

from .packet import PROTO_NAMES, Packet
from .pcapio import LINKTYPE_ETHERNET, LINKTYPE_PPP, strip_link

PROTO_IPIP, PROTO_IPV6, PROTO_GRE = 4, 41, 47
TUNNEL_PROTOS = frozenset((PROTO_IPIP, PROTO_IPV6, PROTO_GRE))
MAX_DEPTH = 3                      # tunnels inside tunnels, at most (bounded recursion)
TEREDO_PORT = 3544                 # Suricata's decoder.teredo.ports default (either port of the datagram)

_GRE_IPV4, _GRE_IPV6, _GRE_PPP, _GRE_TEB, _GRE_ERSPAN2 = 0x0800, 0x86DD, 0x880B, 0x6558, 0x88BE
_ETHERTYPE_ARP = 0x0806
_PPP_IPV4, _PPP_IPV6 = 0x0021, 0x0057


def inner_datagram(pkt: Packet, vxlan_port: int, geneve_port: int = -1) -> tuple[bytes | None, str, tuple[str, ...]]:
    """(the inner IP datagram or None, the pkt_src Suricata gives the inner packet, decoder events).
    pkt_src "" means Suricata decodes the inner layers in place of the carrier (ERSPAN: a mirrored frame),
    see erspan_vlan. UDP is tried as Suricata's DecodeUDP does: Teredo, then Geneve, then VXLAN."""
    proto, p = pkt.proto, pkt.payload
    outer = "ipv4" if pkt.version == 4 else "ipv6"
    if proto == PROTO_IPIP or proto == PROTO_IPV6:
        want = 4 if proto == PROTO_IPIP else 6
        if not p or p[0] >> 4 != want:
            if pkt.version == 6:
                return None, "", (f"ipv6.ipv{want}_in_ipv6_wrong_version",)
            return None, "", ()
        return p, outer + " tunnel", ()
    if proto == PROTO_GRE:
        inner, erspan = _gre(p)
        return inner, "" if erspan else "gre tunnel", ()
    if proto == 17 and (pkt.dport == TEREDO_PORT or pkt.sport == TEREDO_PORT) and pkt.dport != vxlan_port:
        inner = _teredo(p)
        return inner, ("teredo tunnel" if inner is not None else ""), ()
    if proto == 17 and (pkt.dport == geneve_port or pkt.sport == geneve_port):
        inner, events = _geneve(p)
        if inner is not None or events:
            return inner, ("geneve encapsulation" if inner is not None else ""), events
    if proto == 17 and pkt.dport == vxlan_port:
        # VXLAN: 8-byte header whose I flag says the VNI is valid, then an Ethernet frame
        if len(p) < 8 + 14 or not p[0] & 0x08:
            return None, "", ()
        return strip_link(LINKTYPE_ETHERNET, p[8:]), "vxlan encapsulation", ()
    return None, "", ()


def _gre(p: bytes) -> tuple[bytes | None, bool]:
    """(the inner datagram, whether it came in an ERSPAN type II mirror)."""
    if len(p) < 4:
        return None, False
    flags, etype = int.from_bytes(p[0:2], "big"), int.from_bytes(p[2:4], "big")
    version = flags & 0x7
    off = 4
    if version == 0:
        off += 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))   # checksum, key, seq
    elif version == 1:     # enhanced GRE (PPTP): key always, then optional sequence and acknowledgement
        off += 4 + 4 * (bool(flags & 0x1000) + bool(flags & 0x0080))
    else:
        return None, False
    body = p[off:]
    if etype == _GRE_IPV4 or etype == _GRE_IPV6:
        return (body if body and body[0] >> 4 in (4, 6) else None), False
    if etype == _GRE_PPP:
        return strip_link(LINKTYPE_PPP, body), False
    if etype == _GRE_TEB:
        return strip_link(LINKTYPE_ETHERNET, body), False
    if etype == _GRE_ERSPAN2 and len(body) >= 8 and body[0] >> 4 == 1:
        return strip_link(LINKTYPE_ETHERNET, body[8:]), True
    return None, False


def _geneve(p: bytes) -> tuple[bytes | None, tuple[str, ...]]:
    """Geneve (RFC 8926) as Suricata's DecodeGeneve checks it: version 0, reserved bits and byte zero, the
    options adding up to the header length; then IPv4, IPv6 or an Ethernet frame (ARP: nothing to inspect).
    An unknown payload type raises geneve.unknown_payload_type; a datagram failing the header checks is
    not Geneve and stays plain UDP."""
    if len(p) < 8:
        return None, ()
    hlen = 8 + (p[0] & 0x3F) * 4
    if len(p) < hlen or p[0] >> 6 != 0 or p[1] & 0x3F or p[7]:
        return None, ()
    i = 8
    while i < hlen:                 # each option: class (2), type (1), reserved bits and length in words (1)
        if i + 4 > hlen:
            return None, ()
        i += 4 + (p[i + 3] & 0x1F) * 4
    if i != hlen:
        return None, ()
    etype, body = int.from_bytes(p[2:4], "big"), p[hlen:]
    if etype == _GRE_IPV4 or etype == _GRE_IPV6:
        return (body if body and body[0] >> 4 == (4 if etype == _GRE_IPV4 else 6) else None), ()
    if etype == _GRE_TEB:
        return strip_link(LINKTYPE_ETHERNET, body), ()
    if etype == _ETHERTYPE_ARP:
        return None, ()
    return None, ("geneve.unknown_payload_type",)


def _teredo(p: bytes) -> bytes | None:
    """Teredo (RFC 4380) as Suricata's DecodeTeredo recognises it: it has no magic number, so the payload (after
    an optional origin indication) must be an IPv6 packet filling it exactly, with a non-zero hop limit and no
    bogus hop-by-hop header; an authentication header (qualification, not a tunnel) is not one."""
    start = 0
    if len(p) < 40:
        return None
    if p[0] == 0:
        if p[1] != 0 or len(p) < 8 + 40:
            return None
        start = 8
    if p[start] >> 4 != 6 or p[start + 7] == 0:
        return None
    plen = int.from_bytes(p[start + 4:start + 6], "big")
    if p[start + 6] == 0 and plen < 8:
        return None
    return p[start:] if len(p) == start + 40 + plen else None


def erspan_vlan(pkt: Packet) -> int:
    """The VLAN id an ERSPAN type II header (behind the GRE header with its sequence number) carries, or 0."""
    p = pkt.payload
    flags = int.from_bytes(p[0:2], "big")
    off = 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
    return int.from_bytes(p[off:off + 2], "big") & 0x0FFF if len(p) >= off + 2 else 0


def tunnel_fields(outer: Packet, depth: int) -> dict:
    """The EVE `tunnel` object of an inner packet's events: its carrier's 5-tuple."""
    d = {"src_ip": outer.src_ip, "dest_ip": outer.dst_ip, "src_port": outer.sport, "dest_port": outer.dport,
         "proto": PROTO_NAMES.get(outer.proto, str(outer.proto)), "depth": depth}
    if outer.pcap_cnt is not None:
        d["pcap_cnt"] = outer.pcap_cnt
    return d
