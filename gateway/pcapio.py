"""Read pcap and pcapng files and strip the link layer, yielding IP datagrams (what NFQUEUE would hand us).

Streaming: records are read one at a time, so a multi-GB capture needs no memory. A truncated file or one
that is not a capture raises PcapError naming the file, the record and the fault, after every complete
record before it has been yielded.

Link types: Ethernet (with 802.1Q/802.1ad VLAN tags and PPPoE session frames), BSD loopback (NULL),
Linux cooked capture v1 and v2, raw IP, IPv4, IPv6, PPP and Cisco HDLC. Frames that carry no IP
(ARP, LLDP, ...) are yielded with `ip = None` so the caller can count them and keep pcap_cnt right.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW = 101
LINKTYPE_RAW_OPENBSD = 14
LINKTYPE_C_HDLC = 104
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_ETH_IPV4, _ETH_IPV6, _ETH_VLAN, _ETH_QINQ, _ETH_VLAN9100, _ETH_PPPOE = 0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100, 0x8864
_PPP_IPV4, _PPP_IPV6 = 0x0021, 0x0057
_ETH_NSH = 0x894F           # Network Service Header (RFC 8300), decoded in place as Suricata does
# pcap magic -> (byte order, timestamp divisor)
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class PcapError(ValueError):
    """The file is not a capture we can read, or is truncated; the message names file and record."""


@dataclass(slots=True)
class Frame:
    index: int              # 1-based record number in the file (Suricata's pcap_cnt)
    ts: float
    ip: bytes | None        # the IP datagram, or None when the frame carries no IP
    linktype: int
    raw: bytes = b""        # the whole captured frame (link layer included), for the EVE `packet` field


def strip_link(linktype: int, frame: bytes) -> bytes | None:
    """Return the IP datagram inside a link-layer frame, or None when it carries none."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        etype = int.from_bytes(frame[12:14], "big")
        off = 14
        while etype in (_ETH_VLAN, _ETH_QINQ, _ETH_VLAN9100) and len(frame) >= off + 4:
            etype = int.from_bytes(frame[off + 2:off + 4], "big")
            off += 4
        if etype == _ETH_NSH:
            return _nsh(frame, off)
        if etype == _ETH_PPPOE and len(frame) >= off + 8:
            proto = int.from_bytes(frame[off + 6:off + 8], "big")
            off += 8
            return frame[off:] if proto in (_PPP_IPV4, _PPP_IPV6) else None
        return frame[off:] if etype in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return frame if frame and frame[0] >> 4 in (4, 6) else None
    if linktype == LINKTYPE_NULL:
        return frame[4:] if len(frame) > 4 and frame[4] >> 4 in (4, 6) else None
    if linktype == LINKTYPE_LINUX_SLL:
        proto = int.from_bytes(frame[14:16], "big") if len(frame) >= 16 else 0
        return frame[16:] if proto in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype == LINKTYPE_LINUX_SLL2:
        proto = int.from_bytes(frame[0:2], "big") if len(frame) >= 20 else 0
        return frame[20:] if proto in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype == LINKTYPE_C_HDLC:
        if len(frame) < 4:
            return None
        proto = int.from_bytes(frame[2:4], "big")
        return frame[4:] if proto in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype == LINKTYPE_PPP:
        # address/control (ff 03) may be omitted, and the protocol field compressed to one byte (odd value)
        off = 2 if frame[:2] == b"\xff\x03" else 0
        if len(frame) < off + 2:
            return None
        if frame[off] & 1:
            proto, off = frame[off], off + 1
        else:
            proto, off = int.from_bytes(frame[off:off + 2], "big"), off + 2
        return frame[off:] if proto in (_PPP_IPV4, _PPP_IPV6) else None
    return None


def _nsh(frame: bytes, off: int, depth: int = 0) -> bytes | None:
    """The datagram behind an NSH header: its length field counts 4-byte words (base, service path and
    context headers); next protocol 1 IPv4, 2 IPv6, 3 Ethernet, 4 NSH."""
    if len(frame) < off + 8 or depth > 3:
        return None
    hlen = (int.from_bytes(frame[off:off + 2], "big") & 0x3F) * 4
    nxt = frame[off + 3]
    if hlen < 8:
        return None
    body = frame[off + hlen:]
    if nxt in (1, 2):
        return body if body and body[0] >> 4 == (4 if nxt == 1 else 6) else None
    if nxt == 3:
        return strip_link(LINKTYPE_ETHERNET, body)
    if nxt == 4:
        return _nsh(body, 0, depth + 1)
    return None


SUPPORTED_LINKTYPES = frozenset((LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_PPP, LINKTYPE_RAW,
                                 LINKTYPE_RAW_OPENBSD, LINKTYPE_C_HDLC, LINKTYPE_LINUX_SLL,
                                 LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2))


def read_frames(path: str, fp: BinaryIO | None = None) -> Iterator[Frame]:
    """Yield the frames of a pcap or pcapng file in order. Raises PcapError on a bad or truncated file."""
    own = fp is None
    if own:
        try:
            fp = open(path, "rb")  # noqa: SIM115 - closed in the finally below; the open error is reported apart
        except OSError as e:
            raise PcapError(f"{path}: cannot open: {e.strerror}") from None
    try:
        magic = fp.read(4)
        if magic in _PCAP_MAGIC:
            yield from _read_pcap(path, fp, magic)
        elif magic == _PCAPNG_SHB:
            yield from _read_pcapng(path, fp)
        elif not magic:
            raise PcapError(f"{path}: empty file, not a pcap")
        else:
            raise PcapError(f"{path}: not a pcap or pcapng file (magic {magic.hex()})")
    finally:
        if own:
            fp.close()


def _read_pcap(path: str, fp: BinaryIO, magic: bytes) -> Iterator[Frame]:
    order, div = _PCAP_MAGIC[magic]
    header = fp.read(20)
    if len(header) < 20:
        raise PcapError(f"{path}: truncated pcap file header")
    _vmaj, _vmin, _zone, _sigfigs, snaplen, linktype = struct.unpack(order + "HHiIII", header)
    linktype &= 0x0FFFFFFF                 # upper bits carry FCS info in newer files
    if linktype not in SUPPORTED_LINKTYPES:
        raise PcapError(f"{path}: link type {linktype} is not supported")
    rec = struct.Struct(order + "IIII")
    index = 0
    while True:
        hdr = fp.read(16)
        if not hdr:
            return
        index += 1
        if len(hdr) < 16:
            raise PcapError(f"{path}: record {index}: truncated record header")
        sec, frac, caplen, _origlen = rec.unpack(hdr)
        if caplen > max(snaplen, 262144):
            raise PcapError(f"{path}: record {index}: captured length {caplen} exceeds the snap length {snaplen}")
        data = fp.read(caplen)
        if len(data) < caplen:
            raise PcapError(f"{path}: record {index}: truncated ({len(data)} of {caplen} bytes)")
        yield Frame(index, sec + frac / div, strip_link(linktype, data), linktype, data)


def _read_pcapng(path: str, fp: BinaryIO) -> Iterator[Frame]:
    order = "<"
    interfaces: list[tuple[int, float]] = []   # (linktype, timestamp units per second)
    index = 0
    first = True
    while True:
        head = _PCAPNG_SHB if first else fp.read(4)
        if not head:
            return
        rest = fp.read(4)
        if len(head) < 4 or len(rest) < 4:
            raise PcapError(f"{path}: truncated pcapng block header")
        btype = int.from_bytes(head, "little")
        if btype == 0x0A0D0D0A:
            bom = fp.read(4)
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise PcapError(f"{path}: bad pcapng byte-order magic {bom.hex()}")
            blen = struct.unpack(order + "I", rest)[0]
            body = bom + fp.read(blen - 16)
            interfaces = []
        else:
            btype = struct.unpack(order + "I", head)[0]
            blen = struct.unpack(order + "I", rest)[0]
            if blen < 12 or blen % 4:
                raise PcapError(f"{path}: pcapng block of bad length {blen}")
            body = fp.read(blen - 12)
        first = False
        trailer = fp.read(4)
        if len(body) < blen - 12 or len(trailer) < 4:
            raise PcapError(f"{path}: truncated pcapng block (type {btype:#x})")
        if btype == 1:                                             # interface description
            linktype = struct.unpack_from(order + "H", body, 0)[0]
            interfaces.append((linktype, _if_tsresol(body[8:], order)))
        elif btype in (6, 3):                                      # enhanced / simple packet
            index += 1
            if btype == 6:
                if len(body) < 20:
                    raise PcapError(f"{path}: record {index}: truncated enhanced packet block")
                ifid, ts_hi, ts_lo, caplen, _orig = struct.unpack_from(order + "IIIII", body, 0)
                data = body[20:20 + caplen]
                if ifid >= len(interfaces):
                    raise PcapError(f"{path}: record {index}: names interface {ifid}, not described")
                linktype, units = interfaces[ifid]
                ts = ((ts_hi << 32) | ts_lo) / units
            else:
                if not interfaces:
                    raise PcapError(f"{path}: record {index}: packet before any interface description")
                orig = struct.unpack_from(order + "I", body, 0)[0]
                data = body[4:4 + orig]
                linktype, ts = interfaces[0][0], 0.0
            yield Frame(index, ts, strip_link(linktype, data), linktype, data)


def _if_tsresol(options: bytes, order: str) -> float:
    """Timestamp units per second from an interface block's if_tsresol option (default microseconds)."""
    off = 0
    while off + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = options[off + 4]
            return float(2 ** (v & 0x7F)) if v & 0x80 else float(10 ** v)
        off += 4 + ((length + 3) & ~3)
    return 1e6
