"""Suricata decoder events (`decode-event:ipv4.opt_invalid_len`) of a decoded packet, found lazily.

gateway/packet.py decodes what the pipeline needs and raises DecodeError for what it cannot decode; it does
not validate IP/TCP options or IPv6 extension-header sequences. Suricata flags those anomalies as decoder
events, and `decode-event` rules (usually `alert pkthdr`) match on them. Only rules using decode-event pay for
this walk (once per packet, cached on the engine's per-packet memo), so the hot path is unchanged.

Names are Suricata's (decode-events.c). EVENTS lists the ones found here; a decode-event rule naming another
one is rejected at load time (it could never match) instead of loading dead. Packets our decoder refuses
(DecodeError: truncated, bad lengths) never reach the detection engine, so their events are not here.
"""
from __future__ import annotations

from ..packet import PROTO_TCP

# IPv4 options (RFC 791 and friends): code -> validator kind
_OPT_EOL, _OPT_NOP = 0x00, 0x01
_ROUTE_OPTS = {0x07, 0x83, 0x89}            # RR, LSRR, SSRR: [type][len][ptr][addresses]
_TS_OPT = 0x44
_FIXED_LEN = {0x82: 11, 0x88: 4, 0x94: 4}   # SEC, SID, RTRALT
_QS_OPT, _QS_MIN = 0x19, 8
_CIPSO_OPT, _CIPSO_MIN = 0x86, 10

# TCP options: kind -> allowed length test
_TCP_FIXED = {2: 4, 3: 3, 4: 2, 8: 10, 19: 18}   # MSS, WS, SACK-permitted, TS, MD5

EVENTS = frozenset({
    "ipv4.opt_pad_required", "ipv4.opt_eol_required", "ipv4.opt_invalid_len", "ipv4.opt_malformed",
    "ipv4.opt_duplicate", "ipv4.opt_invalid",
    "ipv6.exthdr_useless_fh", "ipv6.exthdr_dupl_fh", "ipv6.fh_non_zero_reserved_field",
    "ipv6.exthdr_dupl_hh", "ipv6.exthdr_dupl_rh", "ipv6.rh_type_0",
    "tcp.opt_invalid_len", "tcp.opt_duplicate",
    # on packets the decoder refuses (packet.DecodeError.events) and fragments (fragments.Defragmenter)
    "ipv4.pkt_too_small", "ipv4.hlen_too_small", "ipv4.iplen_smaller_than_hlen", "ipv4.trunc_pkt",
    "ipv6.pkt_too_small", "ipv6.trunc_pkt", "ipv6.trunc_exthdr",
    "tcp.pkt_too_small", "tcp.hlen_too_small", "udp.pkt_too_small", "udp.hlen_invalid",
    "icmpv4.pkt_too_small", "icmpv6.pkt_too_small",
    "ipv4.frag_overlap", "ipv6.frag_overlap", "ipv4.frag_pkt_too_large", "ipv6.frag_pkt_too_large",
    "ipv6.frag_invalid_length",
    # tunnels (gateway/tunnel.py)
    "ipv6.ipv4_in_ipv6_wrong_version", "ipv6.ipv6_in_ipv6_wrong_version", "geneve.unknown_payload_type",
})


def undecodable_events(data: bytes, events) -> frozenset:
    """The decoder events of a packet the decoder refused: the fault's own (DecodeError.events) plus the
    IPv6 extension-header anomalies found before it, as Suricata's decoder flags both on the packet."""
    out = set(events)
    if len(data) >= 40 and data[0] >> 4 == 6:
        _ipv6_exthdrs(data, min(len(data), 40 + int.from_bytes(data[4:6], "big")), out)
    return frozenset(out)


def packet_events(pkt) -> frozenset:
    """The decoder events of one packet (empty for a clean one)."""
    out: set[str] = set()
    if pkt.version == 4:
        if pkt.ip_hlen > 20:
            _ipv4_options(pkt.data[20:pkt.ip_hlen], out)
    else:
        _ipv6_exthdrs(pkt.data, pkt.length, out)
    if pkt.proto == PROTO_TCP and pkt.tcp_options:
        _tcp_options(pkt.tcp_options, out)
    return frozenset(out)


def _ipv4_options(opts: bytes, out: set) -> None:
    # Suricata decode-ipv4.c DecodeIPV4Options: same order of checks, same stop conditions
    if len(opts) % 8:
        out.add("ipv4.opt_pad_required")
    seen: set[int] = set()
    i, n = 0, len(opts)
    while i < n:
        code = opts[i]
        if code == _OPT_EOL:
            break
        if code == _OPT_NOP:
            i += 1
            continue
        if n - i < 2:
            out.add("ipv4.opt_eol_required")
            break
        olen = opts[i + 1]
        if olen < 2 or olen > n - i:
            out.add("ipv4.opt_invalid_len")
            return
        body = opts[i + 2:i + olen]
        known = code in _ROUTE_OPTS or code == _TS_OPT or code in _FIXED_LEN or code in (_QS_OPT, _CIPSO_OPT)
        if not known:
            out.add("ipv4.opt_invalid")
        elif code in seen:
            out.add("ipv4.opt_duplicate")
        else:
            bad = _ipv4_option_fault(code, olen, body)
            if bad:
                out.add(bad)
                return
            seen.add(code)
        i += olen


def _ipv4_option_fault(code: int, olen: int, body: bytes) -> str | None:
    if code in _ROUTE_OPTS:
        if olen < 3:
            return "ipv4.opt_invalid_len"
        ptr = body[0] if body else 0
        if not body or ptr < 4 or ptr % 4 or ptr > olen + 1:
            return "ipv4.opt_malformed"
        return None
    if code == _TS_OPT:
        if olen < 5:
            return "ipv4.opt_invalid_len"
        ptr = body[0]
        if ptr < 5:
            return "ipv4.opt_malformed"
        rec = 8 if body[2] & 0x0F in (1, 3) else 4
        if (ptr - 5) % rec or ptr > olen + 1:
            return "ipv4.opt_malformed"
        return None
    if code in _FIXED_LEN:
        return "ipv4.opt_invalid_len" if olen != _FIXED_LEN[code] else None
    if code == _QS_OPT:
        return "ipv4.opt_invalid_len" if olen < _QS_MIN else None
    # CIPSO: [type][len][doi(4)][tags: type, len, data...]
    if olen < _CIPSO_MIN:
        return "ipv4.opt_invalid_len"
    tags, left = body[4:], olen - 6
    j = 0
    while left:
        if left < 2:
            return "ipv4.opt_malformed"
        ttype, tlen = tags[j], tags[j + 1]
        if tlen > left or ttype not in (1, 2, 5, 6, 7) or tlen < 4:
            return "ipv4.opt_malformed"
        if ttype != 7 and tags[j + 2] != 0:
            return "ipv4.opt_malformed"
        j += tlen
        left -= tlen
    return None


def _ipv6_exthdrs(data: bytes, end: int, out: set) -> None:
    # Suricata decode-ipv6.c DecodeIPV6ExtHdrs, for the events that do not make the packet undecodable
    nxt, off = data[6], 40
    seen_fh = seen_hh = seen_rh = False
    while off + 8 <= end:
        if nxt == 44:                               # fragment
            if data[off + 1] != 0:
                out.add("ipv6.fh_non_zero_reserved_field")
            if seen_fh:
                out.add("ipv6.exthdr_dupl_fh")
                nxt, off = data[off], off + 8
                continue
            seen_fh = True
            fo = int.from_bytes(data[off + 2:off + 4], "big")
            if fo & 0xFFF8 == 0 and not fo & 1:
                out.add("ipv6.exthdr_useless_fh")
                nxt, off = data[off], off + 8
                continue
            return                                  # a real fragment: the rest comes with reassembly
        if nxt == 0:
            if seen_hh:
                out.add("ipv6.exthdr_dupl_hh")
            seen_hh = True
        elif nxt == 43:
            if seen_rh:
                out.add("ipv6.exthdr_dupl_rh")
            seen_rh = True
            if data[off + 2] == 0:
                out.add("ipv6.rh_type_0")
        elif nxt != 60:
            return
        nxt, off = data[off], off + (data[off + 1] + 1) * 8


def _tcp_options(opts: bytes, out: set) -> None:
    # Suricata decode-tcp.c DecodeTCPOptions
    seen: set[int] = set()
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if n - i < 2:
            break
        olen = opts[i + 1]
        if olen < 2 or olen > n - i:
            out.add("tcp.opt_invalid_len")
            return
        if kind in _TCP_FIXED:
            ok = olen == _TCP_FIXED[kind]
        elif kind == 5:     # SACK: empty, or 1..4 blocks of 8 bytes
            ok = olen == 2 or (10 <= olen <= 34 and (olen - 2) % 8 == 0)
        else:
            ok = True
        if not ok:
            out.add("tcp.opt_invalid_len")
        elif kind in seen and kind in _TCP_FIXED:
            out.add("tcp.opt_duplicate")
        seen.add(kind)
        i += olen
