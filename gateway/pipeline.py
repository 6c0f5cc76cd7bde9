"""The Inspector: decode -> defragment -> flow lookup -> ordered stages -> Verdict (+ events).

It knows nothing about NFQUEUE or pcap files; both drivers call `Inspector.process(data, ts)`.

Stages follow an addon model: each implements a few named hooks and the Inspector calls them in order;
adding a stage touches no other stage.

    on_packet(ctx)      every packet of a flow that is still inspected. Set ctx.verdict (and ctx.reason)
                        to decide; set ctx.final = True to stop later stages for this packet.
    on_flow_end(flow)   the flow expired or the run ended (log it, free state).
    done(flow) -> bool  True when the stage has nothing left to inspect in this flow. When every stage
                        is done with an accepted flow, it is bypassed: the kernel forwards the rest.
    on_decoder_events(pkt, events, decoded, emit) -> Verdict | None
                        a packet the decoder refused (decoded False: `pkt` holds only the bytes, time, frame
                        and pcap_cnt) or a fragment the defragmenter flagged, with Suricata's decoder-event
                        names; return a verdict to override the malformed policy (an IPS drop), else None.
    on_flow_dropped(pkt, flow, to_server, emit)
                        a packet of a flow whose sticky verdict is drop/reject (no stage sees it otherwise):
                        log it if the stage dropped the flow (Suricata's drop log), nothing more.
"""
from __future__ import annotations

import gc
from collections.abc import Callable
from enum import IntEnum

from .config import Config
from .events import eve_timestamp, flow_event
from .flow import Flow, FlowTable
from .fragments import Defragmenter
from .packet import LINKTYPE_RAW, PROTO_TCP, PROTO_UDP, DecodeError, Packet, decode, set_ipv6_text
from .tunnel import MAX_DEPTH, TEREDO_PORT, TUNNEL_PROTOS, erspan_vlan, inner_datagram


class Verdict(IntEnum):
    ACCEPT = 0
    DROP = 1
    REJECT = 2     # drop and answer: TCP RST, or ICMP unreachable
    BYPASS = 3     # accept, and let the kernel forward the rest of the flow without us


VERDICT_NAMES = ("accept", "drop", "reject", "bypass")
_POLICY = {"drop": Verdict.DROP, "accept": Verdict.ACCEPT}
# Module constants: on Python 3.11 reading Verdict.X goes through the enum metaclass (~5x a plain
# attribute), which showed up per packet in the profile.
_ACCEPT, _BYPASS = Verdict.ACCEPT, Verdict.BYPASS


class PacketContext:
    """What the stages see and decide for one packet."""

    __slots__ = (
        "final",
        "flow",
        "inspector",
        "new_flow",
        "pkt",
        "reason",
        "stream_data",
        "stream_gap",
        "to_server",
        "verdict",
    )

    def __init__(self, inspector: Inspector, pkt: Packet, flow: Flow, to_server: bool, new_flow: bool):
        self.inspector = inspector
        self.pkt = pkt
        self.flow = flow
        self.to_server = to_server
        self.new_flow = new_flow
        self.verdict = _ACCEPT
        self.reason = "inspected"
        self.final = False
        self.stream_data = b""   # bytes this packet made newly contiguous in its direction (stream stage)
        self.stream_gap = False  # bytes were skipped (never seen) before stream_data

    def decide(self, verdict: Verdict, reason: str, whole_flow: bool = True) -> None:
        """Give the packet (and by default the rest of its flow) a verdict and stop later stages."""
        self.verdict = verdict
        self.reason = reason
        self.final = True
        if whole_flow and verdict != Verdict.ACCEPT:
            self.flow.verdict = verdict
            self.flow.reason = reason

    def emit(self, event: dict) -> None:
        self.inspector.emit(event)


class Stage:
    """Base class with no-op hooks; subclasses override what they need."""

    name = "stage"

    def on_packet(self, ctx: PacketContext) -> None:  # pragma: no cover - interface
        pass

    def on_flow_end(self, flow: Flow) -> None:
        pass

    def on_flow_eof(self, flow: Flow, inspector: Inspector) -> None:
        """The flow ends (timeout, table drain, end of input), before any stage's on_flow_end: a last look at
        what was held back for more data (Suricata's end-of-stream pseudo packets). Events go to inspector."""

    def done(self, flow: Flow) -> bool:
        return True

    def on_decoder_events(self, pkt: Packet, events: tuple[str, ...], decoded: bool,
                          emit: Callable[[dict], None]) -> Verdict | None:
        return None

    def on_flow_dropped(self, pkt: Packet, flow: Flow, to_server: bool, emit: Callable[[dict], None]) -> None:
        pass


# The cyclic GC's first generation is collected after this many net container allocations (CPython's default
# is 700). Flows and their per-stage state are long-lived containers made at packet rate, so with the default
# the collector ran every few hundred packets and took ~5 us per packet with ET Open loaded (1.5 us without
# rules); at 10,000 it took ~1.7 / ~0.6 us (measured with gc.callbacks on benchmarks/ids.py's trace).
# Nothing on the packet path depends on cycles being freed promptly.
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """The packet-loop process' collector setting (idempotent)."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 and gen0 < GC_GEN0_THRESHOLD:
        gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class Inspector:
    """One per worker (or per replay). Not thread-safe, by design: workers share nothing."""

    ANOMALY_RATE = 100          # decode-anomaly events logged per second of packet time, at most

    def __init__(self, config: Config, stages: list[Stage], sink: Callable[[dict], None] | None = None,
                 id_base: int = 0):
        self.config = config
        set_ipv6_text(config.events.ipv6_compress)
        tune_gc()
        self.stages = list(stages)
        self.flows = FlowTable(config.flows, id_base)
        self.defrag = Defragmenter(config.fragments)
        self.sink = sink or (lambda event: None)
        self.malformed_verdict = _POLICY[config.gateway.malformed_policy]
        self.full_verdict = _POLICY[config.flows.on_full]
        self.bypass_enabled = config.gateway.bypass
        self.flow_events = config.gateway.flow_events
        self.vxlan_port = config.gateway.vxlan_port or -1
        self.geneve_port = config.gateway.geneve_port or -1
        # the UDP ports whose datagrams may carry a tunnel (tunnel.inner_datagram decides): by destination, by source
        self._tunnel_dports = frozenset(p for p in (self.vxlan_port, TEREDO_PORT, self.geneve_port) if p > 0)
        self._tunnel_sports = frozenset(p for p in (TEREDO_PORT, self.geneve_port) if p > 0)
        # (verdict, reason) -> [packets, bytes]; the worker folds these into Prometheus counters.
        self.counts: dict[tuple[int, str], list[int]] = {}
        self.errors = 0
        self.last_error = ""
        self._anomaly_second, self._anomaly_budget = -1, 0
        self.non_ip = 0          # frames without IP (replay only: NFQUEUE hands us IP datagrams)
        # stages that log packets of a flow they dropped (Suricata's drop log), called on the sticky path only
        self._drop_loggers = [s.on_flow_dropped for s in self.stages
                              if type(s).on_flow_dropped is not Stage.on_flow_dropped]
        self._eof_hooks = [s.on_flow_eof for s in self.stages if type(s).on_flow_eof is not Stage.on_flow_eof]

    # ------------------------------------------------------------------ hot path
    def process(self, data: bytes, ts: float, indev: str | None = None, outdev: str | None = None,
                pcap_cnt: int | None = None, reply: bool = False, frame: bytes | None = None,
                linktype: int = LINKTYPE_RAW) -> Verdict:
        """One packet -> its verdict. `reply`: the kernel's conntrack saw it in the reply direction of
        its connection (inline only); it orients a flow whose first packet we see is the server's.
        `frame`/`linktype`: the captured link-layer frame `data` came in (replay), kept by reference for
        the EVE `packet` field; None inline, where the datagram is the whole packet."""
        try:
            pkt = decode(data, ts)
        except DecodeError as e:
            return self._malformed(e, data, ts, pcap_cnt, frame, linktype)
        pkt.indev = indev
        pkt.outdev = outdev
        pkt.pcap_cnt = pcap_cnt
        pkt.reply = reply
        pkt.frame = frame
        pkt.linktype = linktype
        try:
            proto = pkt.proto
            if proto != PROTO_TCP and self._may_carry_tunnel(pkt):
                return self._tunnelled(pkt, len(data), 1)
            return self._inspect(pkt, len(data))
        except DecodeError as e:           # raised by fragment reassembly on a bad upper layer
            return self._malformed(e, data, ts, pcap_cnt, frame, linktype, pkt)
        except Exception as e:  # noqa: BLE001 - a stage bug must never take the worker down
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            return self._count(self.malformed_verdict, "internal_error", len(data))

    def _may_carry_tunnel(self, pkt: Packet) -> bool:
        """IP-in-IP, GRE, or UDP from or to a tunnel port: tunnel.inner_datagram looks inside."""
        proto = pkt.proto
        return proto in TUNNEL_PROTOS or proto == PROTO_UDP and (
            pkt.dport in self._tunnel_dports or pkt.sport in self._tunnel_sports)

    def _tunnelled(self, outer: Packet, nbytes: int, depth: int) -> Verdict:
        """A tunnel carrier: inspect it, then the packet inside as a packet of its own (as Suricata does); a
        dropped inner packet drops the carrier. The carrier's flow is never bypassed: the kernel would then
        forward inner packets nobody inspected."""
        inner_data, pkt_src, events = inner_datagram(outer, self.vxlan_port, self.geneve_port)
        if inner_data is not None and not pkt_src:
            return self._in_place(outer, inner_data, nbytes)
        verdict = self._inspect(outer, nbytes, False)
        if events:
            v = self._decoder_events(outer, events, True)
            if v is not None and v > verdict:
                verdict = v
        if inner_data is None:
            return verdict
        try:
            inner = decode(inner_data, outer.ts)
        except DecodeError as e:
            v = self._malformed(e, inner_data, outer.ts, outer.pcap_cnt)
            return max(verdict, v)
        inner.indev, inner.outdev, inner.pcap_cnt, inner.reply = outer.indev, outer.outdev, outer.pcap_cnt, outer.reply
        inner.tunnel = (outer, depth, pkt_src, ())
        if depth < MAX_DEPTH and self._may_carry_tunnel(inner):
            v = self._tunnelled(inner, len(inner_data), depth + 1)
        else:
            v = self._inspect(inner, len(inner_data), False)
        if v == Verdict.DROP or v == Verdict.REJECT:
            return Verdict.DROP         # no RST into a tunnel: the carrier is dropped
        return verdict

    def _in_place(self, outer: Packet, inner_data: bytes, nbytes: int) -> Verdict:
        """ERSPAN: Suricata decodes the mirrored frame in place of its carrier, so only the inner packet is
        inspected, with the carrier's frame and the ERSPAN VLAN id among its VLANs."""
        try:
            inner = decode(inner_data, outer.ts)
        except DecodeError as e:
            return self._malformed(e, inner_data, outer.ts, outer.pcap_cnt)
        inner.indev, inner.outdev, inner.pcap_cnt, inner.reply = outer.indev, outer.outdev, outer.pcap_cnt, outer.reply
        inner.frame, inner.linktype = outer.frame, outer.linktype
        vlan = erspan_vlan(outer)
        inner.tunnel = (None, 0, "", (vlan,) if vlan else ())
        return self._inspect(inner, nbytes, False)

    def _inspect(self, pkt: Packet, nbytes: int, bypass_ok: bool = True) -> Verdict:
        if pkt.more_frags or pkt.frag_offset:
            whole = self.defrag.add(pkt)
            if self.defrag.anomalies:
                v = self._decoder_events(pkt, self.defrag.anomalies, True)
                if v is not None and v != _ACCEPT:
                    return self._count(v, "decoder_event", nbytes)
            if whole is None:
                # Held until the datagram is complete; the verdict on the last fragment decides
                # (a receiver cannot reassemble without it).
                return self._count(Verdict.ACCEPT, "fragment", nbytes)
            pkt = whole
        flows = self.flows
        found = flows.lookup(pkt)
        if flows.ended:
            self._end_flows()
        if found is None:
            return self._count(self.full_verdict, "flow_table_full", nbytes)
        flow, to_server, new_flow = found
        if pkt.ts >= flows.next_sweep:
            flows.expire(pkt.ts)
            if flows.ended:
                self._end_flows()
        if flow.verdict is not None:
            # Sticky: a dropped flow stays dropped; a bypassed one is accepted (packets that were
            # already queued before the kernel saw the bypass mark).
            if flow.verdict != _BYPASS and self._drop_loggers:
                self._log_dropped(pkt, flow, to_server)
            return self._count(flow.verdict, flow.reason, nbytes)
        ctx = PacketContext(self, pkt, flow, to_server, new_flow)
        for stage in self.stages:
            stage.on_packet(ctx)
            if ctx.final:
                break
        verdict = ctx.verdict
        if verdict == _ACCEPT and bypass_ok and self.bypass_enabled:
            for stage in self.stages:
                if not stage.done(flow):
                    break
            else:
                flow.verdict = _BYPASS
                flow.bypassed = True
                flow.reason = "bypass"
                return self._count(_BYPASS, ctx.reason, nbytes)
        return self._count(verdict, ctx.reason, nbytes)

    def _log_dropped(self, pkt: Packet, flow: Flow, to_server: bool) -> None:
        for log in self._drop_loggers:
            try:
                log(pkt, flow, to_server, self.sink)
            except Exception as e:  # noqa: BLE001 - a stage bug must never take the worker down
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"

    def _decoder_events(self, pkt: Packet, events: tuple[str, ...], decoded: bool) -> Verdict | None:
        """Show a refused packet or a flagged fragment to the stages (decode-event rules); the strongest
        verdict a stage returns, or None."""
        verdict = None
        for stage in self.stages:
            try:
                v = stage.on_decoder_events(pkt, events, decoded, self.sink)
            except Exception as e:  # noqa: BLE001 - a stage bug must never take the worker down
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                continue
            if v is not None and (verdict is None or v > verdict):
                verdict = v
        return verdict

    def _malformed(self, err: DecodeError, data: bytes, ts: float, pcap_cnt: int | None,
                   frame: bytes | None = None, linktype: int = LINKTYPE_RAW, pkt: Packet | None = None) -> Verdict:
        """Count it, apply the policy, and log an `anomaly` event (at most ANOMALY_RATE a second, so a
        flood of garbage cannot flood the log). The stages see it (on_decoder_events): with `pkt` (a
        decoded fragment reassembly refused) or a bare Packet holding the bytes."""
        self.last_error = str(err)
        second = int(ts)
        if second != self._anomaly_second:
            self._anomaly_second, self._anomaly_budget = second, self.ANOMALY_RATE
        if self._anomaly_budget > 0:
            self._anomaly_budget -= 1
            ev = {"timestamp": eve_timestamp(ts), "event_type": "anomaly",
                  "anomaly": {"type": "decode", "event": str(err), "length": len(data),
                              "action": VERDICT_NAMES[self.malformed_verdict]}}
            if pcap_cnt is not None:
                ev["pcap_cnt"] = pcap_cnt
            self.sink(ev)
        verdict = self.malformed_verdict
        decoded = pkt is not None
        if not decoded:
            pkt = Packet()
            pkt.ts, pkt.data, pkt.version, pkt.proto, pkt.length = ts, data, 0, 0, len(data)
            pkt.frame, pkt.linktype, pkt.pcap_cnt = frame, linktype, pcap_cnt
        v = self._decoder_events(pkt, err.events, decoded)
        if v is not None and v > verdict:
            verdict = v
        return self._count(verdict, "malformed", len(data))

    def _count(self, verdict: Verdict, reason: str, nbytes: int) -> Verdict:
        c = self.counts.get((verdict, reason))
        if c is None:
            self.counts[(verdict, reason)] = [1, nbytes]
        else:
            c[0] += 1
            c[1] += nbytes
        return verdict

    # ------------------------------------------------------------------ flow ends, events
    def _end_flows(self) -> None:
        ended, self.flows.ended = self.flows.ended, []
        for flow in ended:
            for hook in self._eof_hooks:
                try:
                    hook(flow, self)
                except Exception as e:  # noqa: BLE001 - a stage bug must never take the worker down
                    self.errors += 1
                    self.last_error = f"{type(e).__name__}: {e}"
            for stage in self.stages:
                stage.on_flow_end(flow)
            if self.flow_events:
                self.sink(flow_event(flow))

    def emit(self, event: dict) -> None:
        self.sink(event)

    def tick(self, now: float) -> None:
        """Expire idle flows without waiting for a packet (the inline worker calls it twice a second)."""
        if now >= self.flows.next_sweep:
            self.flows.expire(now)
            if self.flows.ended:
                self._end_flows()

    def finish(self) -> None:
        """End of input: log and release every flow."""
        self.flows.drain()
        self._end_flows()

    def take_counts(self) -> dict[tuple[int, str], list[int]]:
        """Return and reset the per-(verdict, reason) counters (the worker folds them into metrics)."""
        counts, self.counts = self.counts, {}
        return counts
