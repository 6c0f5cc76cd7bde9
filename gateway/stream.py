"""TCP stream reassembly, one reassembler per direction, bounded in depth and memory.

The stage hands later stages the bytes each packet made newly contiguous in its direction
(`ctx.stream_data`, with `ctx.stream_gap` set when bytes were skipped before them).

Policies, all counted:
- Out of order: segments ahead of the next expected byte are buffered (at most `stream.max_pending`
  bytes per direction and `stream.memcap` across the worker's flows) and released once the hole fills.
- Overlap: first wins. Bytes already delivered or already buffered are never replaced; a retransmission
  that carries other bytes for them is counted as `overlap_mismatch` (an evasion attempt) and ignored.
  This is the policy of BSD-derived and Windows stacks for the common cases and the one that never lets
  a later segment rewrite what inspection already saw.
- Gaps: when the other side acknowledges bytes we never saw (lost before us, or a capture that missed
  them) while later bytes are buffered, the hole is skipped: the buffered bytes are released and
  `stream_gap` is set on the packet that carries them.
- TCP Fast Open: data on a SYN is the start of its direction's stream (at ISN + 1); a retransmitted SYN adds
  nothing.
- Depth: past `stream.depth` bytes in a direction nothing more is reassembled there; the flow then has
  nothing left to inspect and may be bypassed.
- Limits: past `max_pending` or `memcap`, `stream.on_limit` applies: bypass (stop reassembling the flow,
  let it through) or drop (drop the flow).
- Events: where the reassembler meets one of Suricata's stream-event conditions (STREAM_EVENTS) it records the
  name on the packet (`stream_events(flow, pkt)`), for `stream-event` rules; only on the unusual paths.
"""
from __future__ import annotations

from .config import StreamSection
from .flow import TCP_SYN_SENT, Flow, syn_sent_rejects
from .packet import ACK, FIN, PROTO_TCP, RST, SYN
from .pipeline import PacketContext, Stage, Verdict

_MOD = 1 << 32
_HALF = 1 << 31

# Suricata's stream events (decode-events.h, without the "stream." prefix) that this stage raises, each where
# our reassembler meets Suricata's condition. A `stream-event` rule naming another one is rejected at load
# time (it could never match).
#   reassembly_depth_reached  a direction's first segment that goes past stream.depth (once per direction)
#   reassembly_seq_gap        the peer acknowledged bytes that never passed us: reassembly skips the hole
#   pkt_invalid_timestamp     an answer to a SYN echoing another timestamp than the SYN's (flow.syn_sent_rejects)
#   suspected_rst_inject      the sender of an acceptable RST sends again (not a RST): reassembly resumes
#   3whs_synack_tfo_data_ignored  the SYN/ACK acknowledges only the SYN of a SYN that carried data (TCP Fast Open
#                             refused): the client sends those bytes again, and they are taken from there
STREAM_EVENTS = frozenset({"reassembly_depth_reached", "reassembly_seq_gap", "pkt_invalid_timestamp",
                           "suspected_rst_inject", "3whs_synack_tfo_data_ignored"})


def stream_events(flow: Flow, pkt) -> frozenset | set:
    """The stream events raised on `pkt` (empty for nearly every packet). Kept in flow.state as
    (packet, names) for the last packet that raised one, so packets without events cost nothing."""
    ev = flow.state.get("stream_events")
    return ev[1] if ev is not None and ev[0] is pkt else frozenset()


def _raise_event(flow: Flow, pkt, name: str) -> None:
    ev = flow.state.get("stream_events")
    if ev is not None and ev[0] is pkt:
        ev[1].add(name)
    else:
        flow.state["stream_events"] = (pkt, {name})


def seq_diff(a: int, b: int) -> int:
    """a - b in 32-bit sequence space (negative when a is before b)."""
    return ((a - b + _HALF) % _MOD) - _HALF


class StreamDirection:
    """Reassembles one direction. `next_seq` is the next byte expected; None until the start is known."""

    __slots__ = (
        "delivered",
        "depth_event",
        "depth_reached",
        "fin_seq",
        "finished",
        "gap_before_next",
        "gaps",
        "next_seq",
        "overlap_mismatch",
        "pending",
        "pending_bytes",
        "syn_data",
    )

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.pending: dict[int, bytes] = {}   # seq -> bytes ahead of next_seq
        self.pending_bytes = 0
        self.delivered = 0                    # bytes handed to inspection
        self.finished = False                 # depth reached, closed, or given up
        self.gaps = 0
        self.overlap_mismatch = 0
        self.fin_seq: int | None = None
        self.gap_before_next = False          # a hole was skipped: the next bytes delivered follow a gap
        self.depth_reached = False            # stream.depth bytes were handed to inspection
        self.depth_event = False              # reassembly_depth_reached was raised in this direction
        self.syn_data = 0                     # bytes delivered from the SYN (TCP Fast Open), until the SYN/ACK

    def add(self, seq: int, data: bytes) -> tuple[bytes, int]:
        """Add a segment. Returns (newly contiguous bytes, change in pending bytes)."""
        if seq == self.next_seq and not self.pending:
            # The common case, in order with nothing buffered: the segment is the new bytes as they
            # are (no copy, no overlap logic). Same result as the general path below.
            self.next_seq = (seq + len(data)) % _MOD
            self.delivered += len(data)
            return data, 0
        before = self.pending_bytes
        # After a skipped gap the buffered bytes at the new start flow first.
        head = self._release(b"") if self.gap_before_next and self.pending else b""
        d = seq_diff(seq, self.next_seq)
        if d > 0:
            self._buffer(seq, data)
            return head, self.pending_bytes - before
        # Starts at or before the next expected byte: the part already delivered is not replaced
        # (first wins), the rest is new.
        data = data[-d:] if -d < len(data) else b""
        out = self._release(data)
        return head + out if head else out, self.pending_bytes - before

    def _buffer(self, seq: int, data: bytes) -> None:
        old = self.pending.get(seq)
        if old is not None:
            if len(old) >= len(data):
                if old[:len(data)] != data:
                    self.overlap_mismatch += 1
                return
            if data[:len(old)] != old:
                self.overlap_mismatch += 1
            data = old + data[len(old):]       # first wins for the overlapping part
            self.pending_bytes -= len(old)
        self.pending[seq] = data
        self.pending_bytes += len(data)

    def _release(self, data: bytes) -> bytes:
        """Deliver `data` (which starts at next_seq), then every buffered segment it makes contiguous."""
        parts = [data] if data else []
        nxt = (self.next_seq + len(data)) % _MOD
        pending = self.pending
        progressed = True
        while pending and progressed:
            progressed = False
            for seq in list(pending):
                d = seq_diff(seq, nxt)
                if d > 0:
                    continue
                seg = pending.pop(seq)
                self.pending_bytes -= len(seg)
                if -d < len(seg):
                    # Overlaps bytes already delivered: those win, only the tail is new.
                    if d < 0 and self.delivered_tail_differs(parts, seg, -d):
                        self.overlap_mismatch += 1
                    parts.append(seg[-d:])
                    nxt = (nxt + len(seg) + d) % _MOD
                progressed = True
        self.next_seq = nxt
        out = b"".join(parts)
        self.delivered += len(out)
        return out

    @staticmethod
    def delivered_tail_differs(parts: list[bytes], seg: bytes, overlap: int) -> bool:
        """Compare what was delivered last with the overlapping head of a buffered segment."""
        tail = b"".join(parts)[-overlap:]
        return len(tail) == overlap and tail != seg[:overlap]

    def skip_gap(self, upto: int) -> None:
        """The peer acknowledged bytes up to `upto` that never passed us: jump the hole to the first
        buffered segment (or to `upto`); the next packet of this direction releases what follows."""
        target = upto
        for seq in self.pending:
            if seq_diff(seq, target) < 0:
                target = seq
        self.next_seq = target
        self.gaps += 1
        self.gap_before_next = True


def stream_exhausted(flow: Flow) -> bool:
    """No more stream bytes will be inspected in this TCP flow: a direction reached stream.depth (the
    start of the conversation, where protocols and payloads show, has been seen; Suricata's
    stream.bypass works the same way), or both directions ended or were given up. Stages that inspect
    stream bytes use it in their done()."""
    streams = flow.streams
    if streams is None:
        return False
    a, b = streams
    return a.depth_reached or b.depth_reached or (a.finished and b.finished)


class StreamStage(Stage):
    name = "stream"

    def __init__(self, cfg: StreamSection):
        self.cfg = cfg
        self.pending_total = 0                 # out-of-order bytes buffered across all flows (memcap)
        self.limit_hits = 0
        self.gaps = 0
        self.overlap_mismatch = 0
        self.limit_verdict = Verdict.DROP if cfg.on_limit == "drop" else None

    def on_packet(self, ctx: PacketContext) -> None:
        pkt = ctx.pkt
        if pkt.proto != PROTO_TCP:
            return
        flow = ctx.flow
        streams = flow.streams
        if streams is None:
            if flow.midstream and not self.cfg.midstream:
                return
            streams = flow.streams = (StreamDirection(), StreamDirection())
        mine, other = (streams[0], streams[1]) if ctx.to_server else (streams[1], streams[0])
        flags = pkt.tcp_flags
        if flow.tcp_state == TCP_SYN_SENT:
            # still SYN_SENT: the flow table ignored this answer (or it is the SYN); so does reassembly
            ev = syn_sent_rejects(flow, pkt, ctx.to_server)
            if ev is not None:
                if ev:
                    _raise_event(flow, pkt, ev)
                return
        if flags & RST:
            if mine.finished and other.finished:
                return                              # a RST after the end changes nothing
            if mine.next_seq is not None and pkt.seq == mine.next_seq:
                # an acceptable RST (Suricata's default BSD policy: at the sender's next byte); if its sender
                # goes on talking it was likely injected (see below)
                flow.state["stream_rst"] = (ctx.to_server, not streams[0].finished, not streams[1].finished)
            else:
                flow.state.pop("tcp_rst", None)     # Suricata ignores it: the flow table must not resume either
            self._finish(mine)
            self._finish(other)
            return
        if mine.finished:
            rst = flow.state.get("stream_rst")
            if rst is not None and rst[0] == ctx.to_server:
                self._resume_after_rst(flow, pkt, rst)
        if mine.finished:
            if mine.depth_reached and pkt.payload and not mine.depth_event:
                # the data ended exactly at the depth: this is the first segment past it
                mine.depth_event = True
                _raise_event(flow, pkt, "reassembly_depth_reached")
            return
        payload = pkt.payload
        seq = pkt.seq                               # of the first payload byte
        if flags & SYN:
            if mine.delivered:
                return                              # a retransmitted SYN: its bytes were delivered already
            seq = mine.next_seq = (pkt.seq + 1) % _MOD
            if flags & ACK and other.syn_data:
                self._tfo_answer(flow, pkt, other)
            if not payload:
                return
            mine.syn_data = len(payload)
            # TCP Fast Open: the data on the SYN is the stream's first bytes (at ISN + 1); the next segment the
            # client sends continues it
        if mine.next_seq is None:
            if not payload:
                if flags & ACK and other.next_seq is None and pkt.ack:
                    other.next_seq = pkt.ack   # midstream: the ACK tells where the peer's bytes start
                return
            mine.next_seq = pkt.seq            # midstream pick-up: start where we first see data
        # pending: next_seq is known
        if flags & ACK and other.pending and not other.finished and self._check_gap(other, pkt.ack):
            _raise_event(flow, pkt, "reassembly_seq_gap")
        if payload or mine.pending:
            before = mine.delivered
            data, grew = mine.add(seq, payload)
            self.pending_total += grew
            if data:
                if before + len(data) > self.cfg.depth:
                    data = data[: max(0, self.cfg.depth - before)]
                    mine.depth_event = True
                    _raise_event(flow, pkt, "reassembly_depth_reached")
                if mine.gap_before_next:
                    mine.gap_before_next = False
                    ctx.stream_gap = True
                ctx.stream_data = data
            if mine.delivered >= self.cfg.depth:
                mine.depth_reached = True
                self._finish(mine)
                return
            if grew > 0 and (mine.pending_bytes > self.cfg.max_pending or self.pending_total > self.cfg.memcap):
                self._limit(ctx, mine, other)
                return
        if flags & FIN:
            mine.fin_seq = (seq + len(payload)) % _MOD
            if not mine.pending:
                self._finish(mine)

    @staticmethod
    def _tfo_answer(flow: Flow, pkt, client: StreamDirection) -> None:
        """The server's SYN/ACK to a SYN that carried data. Acknowledging only the SYN refuses the data (no Fast
        Open cookie, or disabled): the client will send those bytes again, possibly other ones, and the server
        reads those. So the stream goes back to ISN + 1 and what the app layer parsed from the SYN is dropped
        (Suricata resets next_seq likewise); otherwise a harmless SYN payload could hide the real request."""
        syn_data, client.syn_data = client.syn_data, 0
        if pkt.ack != (client.next_seq - syn_data) % _MOD or client.delivered != syn_data or client.pending:
            return                                  # accepted (or already followed by more bytes): keep it
        client.next_seq = pkt.ack
        client.delivered = 0
        client.gap_before_next = True               # the resent bytes do not continue the SYN's (stream_gap)
        flow.state.pop("applayer", None)            # the app layer starts again on the bytes the server reads
        _raise_event(flow, pkt, "3whs_synack_tfo_data_ignored")

    def _check_gap(self, stream: StreamDirection, ack: int) -> bool:
        """The peer acknowledged bytes beyond the next one we expect while we hold later bytes: the
        hole passed us unseen (lost before us, or missed by the capture). Without buffered bytes an
        ACK ahead of us proves nothing (an asymmetric path), so only a hole before buffered data counts."""
        if stream.pending and seq_diff(ack, stream.next_seq) > 0:
            stream.skip_gap(ack)
            self.gaps += 1
            return True
        return False

    def _finish(self, stream: StreamDirection) -> None:
        if not stream.finished:
            stream.finished = True
            self.pending_total -= stream.pending_bytes
            self.overlap_mismatch += stream.overlap_mismatch
            stream.pending.clear()
            stream.pending_bytes = 0

    def _resume_after_rst(self, flow: Flow, pkt, rst: tuple) -> None:
        """The sender of a RST sends again: Suricata (StreamTcpPacketCheckPostRst) raises
        suspected_rst_inject and goes on reassembling the directions the RST ended."""
        del flow.state["stream_rst"]
        _raise_event(flow, pkt, "suspected_rst_inject")
        for stream, reopen in zip(flow.streams, rst[1:]):
            if reopen and stream.finished and not stream.depth_reached:
                self.overlap_mismatch -= stream.overlap_mismatch   # counted again when it finishes
                stream.finished = False

    def _limit(self, ctx: PacketContext, mine: StreamDirection, other: StreamDirection) -> None:
        self.limit_hits += 1
        self._finish(mine)
        self._finish(other)
        if self.limit_verdict is not None:
            ctx.decide(self.limit_verdict, "stream_limit")

    def done(self, flow: Flow) -> bool:
        """Nothing left to reassemble: a direction reached depth (the interesting start of the
        conversation has been seen), or both directions ended."""
        if flow.proto != PROTO_TCP:
            return True
        if flow.streams is None:
            return flow.midstream and not self.cfg.midstream
        return stream_exhausted(flow)

    def on_flow_end(self, flow: Flow) -> None:
        if flow.streams is not None:
            for s in flow.streams:
                self._finish(s)
