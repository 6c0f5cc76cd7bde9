"""Packet-header fields and header buffers for the header keywords (ack, seq, window, tcp.mss, icmp_id,
icmp_seq, icmpv6.mtu, id, tos, fragbits, fragoffset, ipopts; ipv4.hdr, ipv6.hdr, tcp.hdr, udp.hdr,
icmpv6.hdr).

Read lazily from the decoded packet (`pkt.data` keeps the raw datagram), only by the rules that use them,
so no packet pays for a keyword nobody wrote. `field_value(pkt, name)` returns None when the packet has no
such field (another protocol, an ICMP type without id/seq, no MSS option): the keyword then does not match,
as in Suricata.
"""
from __future__ import annotations

from ..packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, tcp_option

# ipopts names (Suricata detect-ipopts.c) -> bit in the mask ip_options() returns
IPOPT_BITS = {"rr": 0x001, "eol": 0x002, "nop": 0x004, "ts": 0x008, "sec": 0x010, "esec": 0x020,
              "lsrr": 0x040, "ssrr": 0x080, "satid": 0x100, "any": 0xFFFF}
_IPOPT_CODE = {0x07: 0x001, 0x00: 0x002, 0x01: 0x004, 0x44: 0x008, 0x82: 0x010, 0x85: 0x020,
               0x83: 0x040, 0x89: 0x080, 0x88: 0x100}
_ANY_OPT = 0x8000          # an option we have no name for (still counts for ipopts:any)

# ICMP types that carry an identifier and sequence number (Suricata decode-icmpv4.c / decode-icmpv6.c):
# echo, timestamp, information and address-mask request/reply; ICMPv6 echo request/reply
_ICMP4_ID_TYPES = frozenset({0, 8, 13, 14, 15, 16, 17, 18})
_ICMP6_ID_TYPES = frozenset({128, 129})

# fragbits letters -> bit of (flags field >> 13): R reserved, D don't fragment, M more fragments
FRAGBITS = {"M": 0x1, "D": 0x2, "R": 0x4}

HEADER_BUFFERS = ("ipv4.hdr", "ipv6.hdr", "tcp.hdr", "udp.hdr", "icmpv6.hdr")


def ip_options(pkt) -> int:
    """Bit mask (IPOPT_BITS) of the IPv4 options present. A malformed option list stops the walk."""
    data = pkt.data
    end = pkt.ip_hlen
    i = 20
    mask = 0
    while i < end:
        code = data[i]
        mask |= _IPOPT_CODE.get(code, _ANY_OPT)
        if code == 0:               # end of list: the rest is padding
            break
        if code == 1:
            i += 1
            continue
        if i + 1 >= end:
            break
        olen = data[i + 1]
        if olen < 2:
            break
        i += olen
    return mask


def _tcp_mss(pkt) -> int | None:
    value = tcp_option(pkt.tcp_options, 2)
    return int.from_bytes(value, "big") if value is not None and len(value) == 2 else None


def _icmp_word(pkt, at: int) -> int | None:
    t = pkt.icmp_type
    if pkt.proto == PROTO_ICMP:
        if t not in _ICMP4_ID_TYPES:
            return None
    elif pkt.proto != PROTO_ICMPV6 or t not in _ICMP6_ID_TYPES:
        return None
    p = pkt.payload            # the bytes after type, code, checksum
    if len(p) < at + 2:
        return None
    return int.from_bytes(p[at:at + 2], "big")


def field_value(pkt, name: str) -> int | None:
    proto = pkt.proto
    if name.startswith("tcp."):
        if proto != PROTO_TCP or not pkt.tcp_hlen:
            return None
        if name == "tcp.ack":
            return pkt.ack
        if name == "tcp.seq":
            return pkt.seq
        if name == "tcp.window":
            return pkt.window
        return _tcp_mss(pkt)
    if name == "icmp.id":
        return _icmp_word(pkt, 0)
    if name == "icmp.seq":
        return _icmp_word(pkt, 2)
    if name == "icmpv6.mtu":
        # Packet Too Big (type 2) carries the MTU where other errors have "unused"
        if proto != PROTO_ICMPV6 or pkt.icmp_type != 2 or len(pkt.payload) < 4:
            return None
        return int.from_bytes(pkt.payload[:4], "big")
    if pkt.version != 4:
        return None                # id, tos, fragbits, fragoffset, ipopts: IPv4 header fields
    data = pkt.data
    if name == "ip.id":
        return pkt.ip_id
    if name == "ip.tos":
        return data[1]
    if name == "ip.fragbits":
        return data[6] >> 5
    if name == "ip.fragoffset":
        return int.from_bytes(data[6:8], "big") & 0x1FFF
    if name.startswith("ipopt."):     # ipopts:<name>: 1 when that option is present
        if pkt.ip_hlen <= 20:
            return 0
        return 1 if ip_options(pkt) & IPOPT_BITS[name[6:]] else 0
    raise KeyError(name)


PACKET_FIELDS = ("tcp.ack", "tcp.seq", "tcp.window", "tcp.mss", "icmp.id", "icmp.seq", "icmpv6.mtu", "ip.id",
                 "ip.tos", "ip.fragbits", "ip.fragoffset") + tuple("ipopt." + n for n in IPOPT_BITS)


def header_buffer(pkt, name: str) -> bytes:
    """The bytes of one header (b"" when the packet has no such header)."""
    data = pkt.data
    if name == "ipv4.hdr":
        return data[:pkt.ip_hlen] if pkt.version == 4 else b""
    if name == "ipv6.hdr":
        return data[:pkt.ip_hlen] if pkt.version == 6 else b""   # with its extension headers
    off = pkt.ip_hlen
    if name == "tcp.hdr":
        return data[off:off + pkt.tcp_hlen] if pkt.proto == PROTO_TCP and pkt.tcp_hlen else b""
    if name == "udp.hdr":
        return data[off:off + 8] if pkt.proto == PROTO_UDP and not pkt.is_fragment else b""
    if name == "icmpv6.hdr":
        return data[off:min(off + 8, pkt.length)] if pkt.proto == PROTO_ICMPV6 and pkt.icmp_type >= 0 else b""
    raise KeyError(name)
