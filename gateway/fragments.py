"""IP fragment reassembly (IPv4 and IPv6), bounded in datagrams, bytes and time.

Inline, the kernel's conntrack defragments before FORWARD, so NFQUEUE sees whole datagrams; this module
matters for replay and for any deployment without conntrack. Policy:

- Overlaps: the first bytes received for an offset win; a later fragment that rewrites them with other
  bytes is counted in `overlaps_mismatched` (the classic IDS-evasion trick) and the datagram is still
  reassembled from the first copy, so the inspected bytes are the ones a first-wins host would keep.
- Bounds: at most `max_datagrams` datagrams in progress (the oldest is evicted and counted), at most
  `max_datagram_bytes` per datagram (a fragment past it raises DecodeError: the Inspector counts it as
  malformed and applies the malformed policy), and `timeout` seconds of packet time per datagram.
"""
from __future__ import annotations

from .config import FragmentSection
from .packet import DecodeError, Packet, build_packet

_IP_MAXPACKET = 65535      # the largest datagram; a fragment ending past it is Suricata's frag_pkt_too_large


class _Datagram:
    __slots__ = ("first_ts", "frags", "head", "size", "total")

    def __init__(self, ts: float):
        self.first_ts = ts
        self.frags: list[tuple[int, bytes]] = []   # (offset, payload) in arrival order
        self.total = -1                            # payload length, known once the last fragment came
        self.head: Packet | None = None            # the offset-0 fragment: its header becomes the datagram's
        self.size = 0


class Defragmenter:
    def __init__(self, cfg: FragmentSection):
        self.cfg = cfg
        self.pending: dict[tuple, _Datagram] = {}
        self.reassembled = 0
        self.evicted = 0
        self.timed_out = 0
        self.overlaps_mismatched = 0
        self.anomalies: tuple[str, ...] = ()   # Suricata's decoder events for the fragment last added

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, pkt: Packet) -> Packet | None:
        """Add one fragment. Returns the reassembled datagram when complete, else None. A fragment that
        overlaps one already held is kept (first wins) and named in `anomalies` (frag_overlap); one that
        cannot be reassembled raises DecodeError naming Suricata's event (frag_invalid_length,
        frag_pkt_too_large)."""
        self.anomalies = ()
        key = (pkt.version, pkt.src, pkt.dst, pkt.proto, pkt.frag_id)
        dg = self.pending.get(key)
        if dg is None:
            self._expire(pkt.ts)
            if len(self.pending) >= self.cfg.max_datagrams:
                self.pending.pop(next(iter(self.pending)))   # dicts keep insertion order: oldest first
                self.evicted += 1
            dg = self.pending[key] = _Datagram(pkt.ts)
        off = pkt.frag_offset
        payload = pkt.payload
        end = off + len(payload)
        ip = "ipv4" if pkt.version == 4 else "ipv6"
        if pkt.more_frags and len(payload) % 8:
            del self.pending[key]
            events = ("ipv6.frag_invalid_length",) if pkt.version == 6 else ()
            if end > _IP_MAXPACKET:
                events += (ip + ".frag_pkt_too_large",)
            raise DecodeError(f"fragment: non-final fragment of {len(payload)} bytes is not a multiple of 8",
                              *events)
        if end > _IP_MAXPACKET:
            del self.pending[key]
            raise DecodeError(f"fragment: datagram would reach {end} bytes, past the 65535 an IP datagram can hold",
                              ip + ".frag_pkt_too_large")
        if end > self.cfg.max_datagram_bytes:
            del self.pending[key]
            raise DecodeError(f"fragment: datagram would reach {end} bytes "
                              f"(fragments.max_datagram_bytes = {self.cfg.max_datagram_bytes})")
        for o, p in dg.frags:
            if o < end and off < o + len(p):
                self.anomalies = (ip + ".frag_overlap",)
                break
        if not pkt.more_frags:
            if dg.total >= 0 and dg.total != end:
                del self.pending[key]
                raise DecodeError(f"fragment: two final fragments disagree on the length ({dg.total} vs {end})")
            dg.total = end
        if off == 0 and dg.head is None:
            dg.head = pkt
        dg.frags.append((off, payload))
        dg.size += len(payload)
        if dg.total < 0 or dg.head is None or dg.size < dg.total:
            return None
        data = self._assemble(dg)
        if data is None:
            return None
        del self.pending[key]
        self.reassembled += 1
        return self._datagram(dg.head, data, pkt)

    def _assemble(self, dg: _Datagram) -> bytes | None:
        total = dg.total
        buf = bytearray(total)
        filled = bytearray(total)          # 1 where a byte has been written (first wins)
        for off, payload in dg.frags:
            end = min(off + len(payload), total)
            if off >= end:
                continue
            seen = filled[off:end]
            if not seen.count(1):
                buf[off:end] = payload[:end - off]
            else:
                mismatch = False
                for i in range(off, end):
                    if filled[i]:
                        mismatch |= buf[i] != payload[i - off]
                    else:
                        buf[i] = payload[i - off]
                self.overlaps_mismatched += mismatch
            filled[off:end] = b"\x01" * (end - off)
        if filled.count(0):
            return None                    # a hole is left: wait for more fragments
        return bytes(buf)

    @staticmethod
    def _datagram(head: Packet, payload: bytes, last: Packet) -> Packet:
        """Build the whole datagram from the first fragment's header and decode its upper layer; it
        carries the time, devices and pcap index of the fragment that completed it."""
        hlen = head.ip_hlen
        header = bytearray(head.data[:hlen])
        if head.version == 4:
            total = hlen + len(payload)
            header[2:4] = total.to_bytes(2, "big")
            header[6:8] = b"\x00\x00"      # no longer a fragment
            header[10:12] = _ipv4_checksum(header).to_bytes(2, "big")
        else:
            # as Suricata rebuilds it: the unfragmentable part without the fragment header, whose next
            # header takes its place in the chain, and the payload length of the whole datagram
            hlen = _drop_ipv6_frag_header(header)
            header[4:6] = (hlen - 40 + len(payload)).to_bytes(2, "big")
        data = bytes(header) + payload
        p = build_packet(last.ts, data, head.version, head.src, head.dst, head.proto, head.ttl, head.ip_id,
                         hlen, len(data), head.frag_id)
        p.indev, p.outdev, p.pcap_cnt = last.indev, last.outdev, last.pcap_cnt
        p.tunnel = last.tunnel           # a datagram reassembled inside a tunnel is still the tunnel's
        if head.frame is not None:       # the first fragment's link layer in front of the whole datagram
            p.frame = head.frame[:len(head.frame) - len(head.data)] + data
            p.linktype = head.linktype
        return p

    def _expire(self, now: float) -> None:
        timeout = self.cfg.timeout
        while self.pending:
            key = next(iter(self.pending))
            if now - self.pending[key].first_ts < timeout:
                break
            del self.pending[key]
            self.timed_out += 1


def _drop_ipv6_frag_header(header: bytearray) -> int:
    """Remove the fragment header (the last 8 bytes of an IPv6 fragment's headers) in place, linking its
    next-header value into the chain; returns the new header length."""
    frag_at = len(header) - 8
    link, off, nxt = 6, 40, header[6]
    while off < frag_at and nxt != 44:
        link, nxt = off, header[off]
        off += (header[off + 1] + 1) * 8
    header[link] = header[frag_at]
    del header[frag_at:]
    return frag_at


def _ipv4_checksum(header: bytearray) -> int:
    """The header checksum of a rebuilt IPv4 header (Suricata recomputes it on the reassembled packet)."""
    header[10:12] = b"\x00\x00"
    total = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, len(header) - 1, 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
