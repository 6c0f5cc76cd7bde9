"""Decode IP-layer bytes into a Packet with struct.unpack_from (no scapy/dpkt on the hot path).

Input is what NFQUEUE hands us: an IPv4 or IPv6 datagram, no link layer. The replay driver strips the
link layer itself (gateway/pcapio.py). Anything that cannot be decoded raises DecodeError with the reason;
the Inspector counts it as malformed and applies the configured policy.
"""
from __future__ import annotations

import socket
from struct import Struct

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PROTO_NAMES = {PROTO_ICMP: "ICMP", PROTO_TCP: "TCP", PROTO_UDP: "UDP", PROTO_ICMPV6: "IPv6-ICMP",
               4: "IP-in-IP", 41: "IPv6", 47: "GRE"}   # tunnel carriers as Suricata names them

LINKTYPE_RAW = 101   # pcap link type of a bare IP datagram (what NFQUEUE hands us)

# TCP flag bits
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

_IPV4 = Struct("!BxHHHBB2x4s4s")     # ver/ihl (tos) totlen id frag ttl proto (csum) src dst
_IPV6 = Struct("!IHBB16s16s")        # ver/tc/flow plen nxt hlim src dst
_TCP = Struct("!HHIIBBH")            # sport dport seq ack off flags win
_UDP = Struct("!HHH")
_PORTS = Struct("!HH")
_ICMP = Struct("!BB")

# IPv6 extension headers we walk over to find the upper layer (hop-by-hop, routing, dest opts).
_IPV6_EXT = {0, 43, 60}
_IPV6_FRAG = 44
_NO_NEXT = 59

# Packet without __init__: build_packet sets every slot itself.
_new_packet = object.__new__


_ipv6_compressed = False


def set_ipv6_text(compressed: bool) -> None:
    """How ip_text prints IPv6 (config events.ipv6_compress; one config per process)."""
    global _ipv6_compressed
    _ipv6_compressed = compressed


def ip_text(addr: bytes) -> str:
    """An address as EVE prints it. IPv6 is written in full (fe80:0000:...:ab42), as Suricata does by
    default so SIEM parsers and joins see one spelling, or compressed (fe80::...) when configured."""
    if len(addr) == 4:
        return socket.inet_ntop(socket.AF_INET, addr)
    if _ipv6_compressed:
        return socket.inet_ntop(socket.AF_INET6, addr)
    h = addr.hex()
    return ":".join(h[i:i + 4] for i in range(0, 32, 4))


class DecodeError(ValueError):
    """The bytes are not a packet we can inspect; the message says which layer and why. `events` names the
    fault as Suricata's decoder events do (decode-event rules match on them)."""

    def __init__(self, message: str, *events: str):
        super().__init__(message)
        self.events = events


class Packet:
    """One decoded IP datagram. Addresses are packed bytes (4 or 16) so flow keys hash fast;
    `src_ip`/`dst_ip` give the text form for events and rule matching."""

    __slots__ = (
        "ts", "data", "version", "src", "dst", "proto", "ttl", "ip_id", "ip_hlen", "length",
        "frag_offset", "more_frags", "frag_id",
        "sport", "dport", "tcp_flags", "seq", "ack", "window", "tcp_hlen", "tcp_options",
        "icmp_type", "icmp_code", "payload", "indev", "outdev", "pcap_cnt", "reply",
        # the captured frame this datagram came in (a reference, for the EVE `packet` field) and its pcap
        # link type; inline the frame is the datagram itself (RAW)
        "frame", "linktype",
        # on a packet decapsulated from a tunnel: (carrier Packet, depth, pkt_src, extra VLAN ids); else None
        "tunnel",
    )

    def __init__(self) -> None:
        self.sport = self.dport = 0
        self.tcp_flags = self.seq = self.ack = self.window = self.tcp_hlen = 0
        self.tcp_options = b""
        self.icmp_type = self.icmp_code = -1
        self.payload = b""
        self.frag_offset = 0
        self.more_frags = False
        self.frag_id = 0
        self.indev = self.outdev = None
        self.pcap_cnt = None
        self.reply = False       # inline: conntrack saw this packet in its connection's reply direction
        self.frame = None
        self.linktype = LINKTYPE_RAW
        self.tunnel = None

    @property
    def src_ip(self) -> str:
        return ip_text(self.src)

    @property
    def dst_ip(self) -> str:
        return ip_text(self.dst)

    @property
    def proto_name(self) -> str:
        return PROTO_NAMES.get(self.proto, str(self.proto))

    @property
    def is_fragment(self) -> bool:
        return self.more_frags or self.frag_offset != 0

    def __repr__(self) -> str:
        return (f"<Packet {self.proto_name} {self.src_ip}:{self.sport} -> {self.dst_ip}:{self.dport} "
                f"len={self.length} flags={self.tcp_flags:#x} payload={len(self.payload)}>")


def decode(data: bytes, ts: float = 0.0) -> Packet:
    """Decode one IP datagram. Raises DecodeError naming the layer and the fault."""
    if not data:
        raise DecodeError("ip: empty packet")
    version = data[0] >> 4
    if version == 4:
        # IPv4 inline here, not in a helper: it is nearly every packet, and a call costs ~2 % of decode.
        if len(data) < 20:
            raise DecodeError(f"ipv4: {len(data)} bytes is shorter than the 20-byte header", "ipv4.pkt_too_small")
        vihl, totlen, ip_id, frag, ttl, proto, src, dst = _IPV4.unpack_from(data)
        hlen = (vihl & 0x0F) * 4
        if hlen < 20:
            raise DecodeError(f"ipv4: header length {hlen} < 20", "ipv4.hlen_too_small")
        if totlen < hlen:
            raise DecodeError(f"ipv4: total length {totlen} < header length {hlen}",
                              "ipv4.iplen_smaller_than_hlen")
        if totlen > len(data):
            raise DecodeError(f"ipv4: total length {totlen} exceeds the {len(data)} bytes captured",
                              "ipv4.trunc_pkt")
        if frag & 0x3FFF:       # more-fragments bit or an offset: a fragment
            return _fragment(ts, data, 4, src, dst, proto, ttl, ip_id, hlen, totlen,
                             (frag & 0x1FFF) * 8, bool(frag & 0x2000), ip_id)
        return build_packet(ts, data, 4, src, dst, proto, ttl, ip_id, hlen, totlen, ip_id)
    if version == 6:
        return _decode_ipv6(data, ts)
    raise DecodeError(f"ip: version {version} is neither 4 nor 6")


def _decode_ipv6(data: bytes, ts: float) -> Packet:
    if len(data) < 40:
        raise DecodeError(f"ipv6: {len(data)} bytes is shorter than the 40-byte header", "ipv6.pkt_too_small")
    _vtf, plen, nxt, hlim, src, dst = _IPV6.unpack_from(data)
    end = 40 + plen
    if end > len(data):
        raise DecodeError(f"ipv6: payload length {plen} exceeds the {len(data) - 40} bytes captured",
                          "ipv6.trunc_pkt")
    off = 40
    frag_id = 0
    while nxt in _IPV6_EXT or nxt == _IPV6_FRAG:
        if off + 8 > end:
            raise DecodeError(f"ipv6: extension header {nxt} truncated at offset {off}", "ipv6.trunc_exthdr")
        if nxt == _IPV6_FRAG:
            fo = int.from_bytes(data[off + 2:off + 4], "big")
            frag_id = int.from_bytes(data[off + 4:off + 8], "big")
            nxt = data[off]
            off += 8
            if fo & 0xFFF9:     # an offset or the more-fragments bit
                return _fragment(ts, data, 6, src, dst, nxt, hlim, 0, off, end, fo & 0xFFF8, bool(fo & 1),
                                 frag_id)
            continue   # atomic fragment: carry on decoding
        hdr_next, hdr_len = data[off], (data[off + 1] + 1) * 8
        nxt = hdr_next
        off += hdr_len
    if off > end:
        raise DecodeError(f"ipv6: extension headers run past the payload ({off} > {end})", "ipv6.trunc_exthdr")
    if off > 40 and end - off < 2 and nxt != _NO_NEXT:
        # Suricata: fewer than 2 bytes left after the extension headers cannot hold the next header
        raise DecodeError(f"ipv6: {end - off} bytes left after the extension headers for protocol {nxt}",
                          "ipv6.trunc_exthdr")
    return build_packet(ts, data, 6, src, dst, nxt, hlim, 0, off, end, frag_id)


def _fragment(ts: float, data: bytes, version: int, src: bytes, dst: bytes, proto: int, ttl: int, ip_id: int,
              hlen: int, end: int, frag_offset: int, more_frags: bool, frag_id: int) -> Packet:
    """A fragment: the upper layer is decoded only after reassembly (gateway/fragments.py)."""
    p = Packet()
    p.ts = ts
    p.data = data
    p.version = version
    p.src = src
    p.dst = dst
    p.proto = proto
    p.ttl = ttl
    p.ip_id = ip_id
    p.ip_hlen = hlen
    p.length = end
    p.frag_offset = frag_offset
    p.more_frags = more_frags
    p.frag_id = frag_id
    p.payload = data[hlen:end]
    return p


def build_packet(ts: float, data: bytes, version: int, src: bytes, dst: bytes, proto: int, ttl: int, ip_id: int,
                 hlen: int, end: int, frag_id: int) -> Packet:
    """Decode the upper layer at data[hlen:end] and build the (unfragmented) Packet, every slot set once.

    Why not Packet() and then overwrite: that sets ~15 slots twice and calls __init__, which together
    were ~15 % of decode (callgrind instruction counts over the offline benchmark's trace)."""
    seq = ack = flags = window = thlen = 0
    options = b""
    icmp_type = icmp_code = -1
    if proto == PROTO_TCP:
        if end - hlen < 20:
            raise DecodeError(f"tcp: {end - hlen} bytes is shorter than the 20-byte header", "tcp.pkt_too_small")
        sport, dport, seq, ack, doff, flags, window = _TCP.unpack_from(data, hlen)
        thlen = (doff >> 4) * 4
        if thlen < 20 or hlen + thlen > end:
            raise DecodeError(f"tcp: data offset {thlen} invalid for a {end - hlen}-byte segment",
                              "tcp.hlen_too_small" if thlen < 20 else "tcp.pkt_too_small")
        if thlen > 20:
            options = data[hlen + 20:hlen + thlen]
        payload = data[hlen + thlen:end]
    elif proto == PROTO_UDP:
        if end - hlen < 8:
            raise DecodeError(f"udp: {end - hlen} bytes is shorter than the 8-byte header", "udp.pkt_too_small")
        sport, dport, ulen = _UDP.unpack_from(data, hlen)
        if ulen < 8 or hlen + ulen > end:
            raise DecodeError(f"udp: length field {ulen} invalid for {end - hlen} bytes",
                              "udp.hlen_invalid" if ulen < 8 else "udp.pkt_too_small")
        payload = data[hlen + 8:hlen + ulen]
    else:
        sport = dport = 0
        if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
            if end - hlen < 4:
                raise DecodeError(f"icmp: {end - hlen} bytes is shorter than the 4-byte header",
                                  "icmpv4.pkt_too_small" if proto == PROTO_ICMP else "icmpv6.pkt_too_small")
            icmp_type, icmp_code = _ICMP.unpack_from(data, hlen)
            payload = data[hlen + 4:end]
        elif proto == _NO_NEXT:
            payload = b""
        else:
            payload = data[hlen:end]
    p = _new_packet(Packet)
    p.ts = ts
    p.data = data
    p.version = version
    p.src = src
    p.dst = dst
    p.proto = proto
    p.ttl = ttl
    p.ip_id = ip_id
    p.ip_hlen = hlen
    p.length = end
    p.frag_offset = 0
    p.more_frags = False
    p.frag_id = frag_id
    p.sport = sport
    p.dport = dport
    p.tcp_flags = flags
    p.seq = seq
    p.ack = ack
    p.window = window
    p.tcp_hlen = thlen
    p.tcp_options = options
    p.icmp_type = icmp_type
    p.icmp_code = icmp_code
    p.payload = payload
    p.indev = None
    p.outdev = None
    p.pcap_cnt = None
    p.reply = False
    p.frame = None
    p.linktype = LINKTYPE_RAW
    p.tunnel = None
    return p


def tcp_option(opts: bytes, want: int) -> bytes | None:
    """The value of the first TCP option of kind `want` (without kind and length bytes), or None when
    it is absent or the option list is malformed before it."""
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            return None
        olen = opts[i + 1]
        if olen < 2 or i + olen > n:
            return None
        if kind == want:
            return opts[i + 2:i + olen]
        i += olen
    return None
