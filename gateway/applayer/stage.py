"""AppLayerStage: protocol detection per flow, then the right sans-I/O parser fed with the flow's bytes.

For TCP it reads what the stream stage made contiguous on this packet (`ctx.stream_data`); for UDP the
datagram payload. Until the protocol is known, the first bytes of each direction are kept (bounded by
PROBE_BYTES) and `detect()` is asked again as they grow; past the bound, or when detection says no, the
flow is given up as unknown and costs nothing more. Once known, `flow.app_proto` is set and every later
byte goes to the parser.

The transactions a packet updated are left on the flow's AppState (`updated`, tagged with the packet's
context) for the IDS stage, which evaluates app-layer rules against them. Parser anomalies become EVE
`anomaly` events (at most MAX_ANOMALY_EVENTS per flow, the rest only counted).
"""
from __future__ import annotations

from ..events import packet_event
from ..packet import FIN, PROTO_TCP, PROTO_UDP, RST
from ..pipeline import PacketContext, Stage
from ..stream import stream_exhausted
from .common import AppEvent
from .detect import detect
from .dns import DnsParser
from .http import _HEADERS, HttpParser
from .smtp import SmtpParser
from .ssh import SshParser
from .tls import TlsParser

PROBE_BYTES = 4096          # bytes per direction kept while the protocol is undecided
MAX_ANOMALY_EVENTS = 32     # anomaly events logged per flow
_PARSERS = {"http": HttpParser, "tls": TlsParser, "ssh": SshParser, "smtp": SmtpParser}
ENCRYPTED_PROTOS = ("tls", "ssh")   # parser.done: both sides encrypted, nothing more to parse or inspect


class AppState:
    """What the stage keeps per flow (flow.state["applayer"])."""

    __slots__ = ("anomalies", "closed", "ctx", "failed", "known", "parser", "pd_pkt", "probe", "proto", "updated")

    def __init__(self) -> None:
        self.proto: str | None = None
        self.parser = None
        self.probe = [bytearray(), bytearray()]    # [to_client, to_server] while undecided
        self.failed = False                         # undecided for good: nothing to parse
        self.updated: list = []                     # (app, tx) updated by the current packet
        self.ctx = None                             # the packet `updated` belongs to
        self.anomalies = 0
        self.closed = [False, False]                # eof() given per direction [to_client, to_server]
        # Suricata's alproto_tc / alproto_ts: the protocol is known for a direction once it is detected and
        # that direction carried data; pd_pkt is the packet on which that happened (app-layer-protocol)
        self.known = [False, False]
        self.pd_pkt: list = [None, None]


class RequestLineView:
    """A request whose line is parsed but whose headers are still arriving. Suricata inspects http.uri,
    http.method, ... as soon as the request line is complete (libhtp progress REQUEST_LINE); the other
    buffers of the transaction are not offered until its headers are complete."""

    __slots__ = ("partial_of",)
    LINE_BUFFERS = frozenset({"http.uri", "http.uri.raw", "http.method", "http.request_line", "http.protocol"})

    def __init__(self, tx):
        self.partial_of = tx

    def buffer(self, keyword: str, to_server: bool | None = None):
        return self.partial_of.buffer(keyword, True) if keyword in self.LINE_BUFFERS else None

    def __getattr__(self, name):
        return getattr(self.partial_of, name)


def updated_transactions(ctx: PacketContext) -> list:
    """The (app, tx) pairs the current packet updated (empty when it updated none)."""
    st = ctx.flow.state.get("applayer")
    if st is None or st.ctx is not ctx:
        return []
    return st.updated


class AppLayerStage(Stage):
    name = "applayer"

    def __init__(self, config=None):
        self.config = config
        self.detected: dict[str, int] = {}
        self.anomaly_total = 0
        self.errors = 0
        self.last_error = ""

    def on_packet(self, ctx: PacketContext) -> None:
        try:
            self._on_packet(ctx)
        except Exception as e:  # noqa: BLE001 - a bug here must not drop traffic: stop parsing this flow
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            st = ctx.flow.state.get("applayer")
            if st is not None:
                self._give_up(st)
                st.updated = []

    def _on_packet(self, ctx: PacketContext) -> None:
        pkt = ctx.pkt
        proto = pkt.proto
        if proto != PROTO_TCP and proto != PROTO_UDP:
            return
        flow = ctx.flow
        st = flow.state.get("applayer")
        if st is None:
            st = flow.state["applayer"] = AppState()
        elif st.failed:
            return
        st.ctx = ctx
        st.updated = []
        to_server = ctx.to_server
        if proto == PROTO_TCP:
            # the reassembled bytes (data on a SYN, TCP Fast Open, is the stream's first: stream.py)
            data = ctx.stream_data
        else:
            data = pkt.payload
        if st.proto is None:
            if not data:
                return
            probe = st.probe[to_server]
            if len(probe) < PROBE_BYTES:
                probe += data[:PROBE_BYTES - len(probe)]
            app = detect(bytes(st.probe[1]), bytes(st.probe[0]), "tcp" if proto == PROTO_TCP else "udp",
                         flow.cport, flow.sport)
            if app is not None:
                st.known[to_server], st.pd_pkt[to_server] = True, pkt
                st.known[not to_server] = bool(st.probe[not to_server])
            if app is None:
                if proto == PROTO_UDP or len(probe) >= PROBE_BYTES or (
                        len(st.probe[0]) and len(st.probe[1])) and flow.pkts_toserver + flow.pkts_toclient > 16:
                    self._give_up(st)
                return
            if app == "dns":
                parser = DnsParser(tcp=proto == PROTO_TCP)
            else:
                cls = _PARSERS.get(app)
                if cls is None:          # ftp/smb/dcerpc: no parser here; detection alone names the flow
                    flow.app_proto = app
                    self.detected[app] = self.detected.get(app, 0) + 1
                    self._give_up(st)
                    return
                parser = cls()
            st.proto, st.parser = app, parser
            flow.app_proto = app
            self.detected[app] = self.detected.get(app, 0) + 1
            if proto == PROTO_UDP:
                events = parser.feed(bytes(data), to_server)
            else:
                # the bytes seen while undecided: the client's first, as a conversation has them (SMTP: the
                # server's banner comes first)
                events = []
                for d in ((False, True) if app == "smtp" else (True, False)):
                    if st.probe[d]:
                        events += parser.feed(bytes(st.probe[d]), d)
            st.probe = [bytearray(), bytearray()]
            self._events(ctx, st, events)
        elif data:
            if not st.known[to_server]:
                st.known[to_server], st.pd_pkt[to_server] = True, pkt
            self._events(ctx, st, st.parser.feed(data, to_server))
        if st.proto == "http":
            if to_server and data:
                req = st.parser.req
                tx = req.tx
                if req.state == _HEADERS and tx is not None and tx.request_line and \
                        not any(t is tx for _, t in st.updated):
                    st.updated.append(("http", RequestLineView(tx)))
        elif to_server and st.proto == "smtp" and st.parser.reoffer:
            # a server reply completed a mail: its client-side buffers (file.data) are inspected on the next
            # client packet, as Suricata inspects a transaction in each direction as that direction's packets pass
            self._events(ctx, st, [AppEvent("reoffer", tx, True) for tx in st.parser.take_reoffer()])
        if proto == PROTO_TCP and pkt.tcp_flags & (FIN | RST) and st.proto in ("http", "smtp"):
            for d in ((to_server,) if pkt.tcp_flags & FIN else (True, False)):
                if not st.closed[d]:
                    st.closed[d] = True
                    self._events(ctx, st, st.parser.eof(d))

    @staticmethod
    def _give_up(st: AppState) -> None:
        st.failed = True
        st.probe = [bytearray(), bytearray()]

    def _events(self, ctx: PacketContext, st: AppState, events) -> None:
        if not events:
            return
        updated = st.updated
        app = st.proto
        for ev in events:
            if ev.kind == "anomaly":
                self.anomaly_total += 1
                st.anomalies += 1
                if st.anomalies <= MAX_ANOMALY_EVENTS:
                    e = packet_event("anomaly", ctx.pkt, ctx.flow)
                    e["anomaly"] = {"app_proto": app, "type": "applayer", "event": ev.info,
                                    "layer": "proto_parser"}
                    ctx.emit(e)
                if ev.tx is None:
                    continue
            tx = ev.tx
            if tx is None:
                continue
            if app == "dns":
                tx = tx.side(ev.to_server)      # request and response are separate transactions to detection
            for a, t in updated:
                if t is tx:
                    break
            else:
                updated.append((app, tx))

    def done(self, flow) -> bool:
        st = flow.state.get("applayer")
        if st is None:
            return flow.proto not in (PROTO_TCP, PROTO_UDP)
        if st.failed or flow.proto == PROTO_TCP and stream_exhausted(flow):
            return True
        if st.proto in ENCRYPTED_PROTOS or st.proto == "smtp":
            return bool(st.parser.done)
        return False

    def on_flow_end(self, flow) -> None:
        st = flow.state.get("applayer")
        if st is not None:
            st.parser = None
            st.updated = []
            st.ctx = None
            st.pd_pkt = [None, None]
