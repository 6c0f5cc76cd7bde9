"""IdsStage: runs the detection engine on every inspected packet, logs EVE `alert` events, applies actions.

pkt_data is what the stream stage made contiguous on this packet for TCP flows it reassembles (so a
retransmission is not inspected twice), else the packet payload. App-layer rules see the transactions the
app-layer stage updated on this packet.

Actions: `alert` logs. With `ips` (inline, or replay --ips) a `drop` rule drops the packet and the rest of
the flow and a `reject` rule resets it; their events say "blocked" (else "allowed"). A matching `pass` rule
logs nothing and ends IDS inspection of the flow. Nothing raises out of on_packet: a bug in detection is
counted and the packet continues (the Inspector's own guard is the second line).
"""
from __future__ import annotations

from ..applayer.stage import updated_transactions
from ..events import packet_event
from ..packet import PROTO_TCP, SYN
from ..pipeline import PacketContext, Stage, Verdict
from .engine import DetectionEngine, established_for_packet

_ACTION_VERDICT = {"drop": Verdict.DROP, "reject": Verdict.REJECT}


class IdsStage(Stage):
    name = "ids"

    def __init__(self, engine: DetectionEngine, ips: bool = False, classifications: dict | None = None):
        self.engine = engine
        self.ips = ips
        self.classifications = classifications or {}
        self.alerts = 0
        self.errors = 0
        self.last_error = ""
        self._alert_cache: dict[int, dict] = {}
        self.ruleset = None      # the RuleSet the engine was built from (load report), when known

    def on_packet(self, ctx: PacketContext) -> None:
        flow = ctx.flow
        st = flow.state.get("ids")
        if st is not None and st.get("pass"):
            return
        pkt = ctx.pkt
        if pkt.proto == PROTO_TCP and flow.streams is not None:
            # reassembled bytes; data on a SYN (TCP Fast Open) never enters the stream: inspect it as is
            data = ctx.stream_data or (pkt.payload if pkt.tcp_flags & SYN else b"")
        else:
            data = pkt.payload
        try:
            matches = self.engine.inspect(pkt, flow, ctx.to_server, data, updated_transactions(ctx),
                                          established_for_packet(flow))
        except Exception as e:  # noqa: BLE001 - detection must never take the worker down
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            return
        if not matches:
            return
        verdict = None
        for m in matches:
            rule = m.rule
            if rule.action == "pass":
                flow.state["ids"]["pass"] = True
                break
            blocked = self.ips and rule.action in _ACTION_VERDICT
            if blocked and verdict is None:
                verdict = _ACTION_VERDICT[rule.action]
            ctx.emit(self._event(ctx, m, blocked))
            self.alerts += 1
            flow.alerted = True
        if verdict is not None:
            ctx.decide(verdict, "ids")

    def _alert_body(self, rule) -> dict:
        body = self._alert_cache.get(id(rule))
        if body is None or body["_rule"] is not rule:
            cls = self.classifications.get(rule.classtype) if rule.classtype else None
            body = {"gid": rule.gid, "signature_id": rule.sid, "rev": rule.rev, "signature": rule.msg,
                    "category": cls.description if cls is not None else "", "severity": rule.priority}
            if rule.metadata:
                md: dict[str, list] = {}
                for k, v in rule.metadata:
                    md.setdefault(k, []).append(v)
                body["metadata"] = md
            body["_rule"] = rule
            if len(self._alert_cache) > 100_000:
                self._alert_cache.clear()
            self._alert_cache[id(rule)] = body
        return body

    def _event(self, ctx: PacketContext, m, blocked: bool) -> dict:
        ev = packet_event("alert", ctx.pkt, ctx.flow)
        ev["direction"] = "to_server" if ctx.to_server else "to_client"
        body = {"action": "blocked" if blocked else "allowed"}
        body.update(self._alert_body(m.rule))
        del body["_rule"]
        ev["alert"] = body
        tx = m.tx
        if tx is not None:
            meta = _tx_metadata(m.app, tx)
            if meta is not None:
                ev[m.app] = meta
            tx_id = getattr(tx, "tx_id", None)
            if tx_id is not None:
                ev["tx_id"] = tx_id
        return ev

    def done(self, flow) -> bool:
        st = flow.state.get("ids")
        if st is not None and st.get("pass"):
            return True
        if not len(self.engine):
            return True
        if flow.proto == PROTO_TCP and flow.streams is not None:
            a, b = flow.streams
            return a.finished and b.finished
        return False

    def on_flow_end(self, flow) -> None:
        flow.state.pop("ids", None)


def _text(b) -> str:
    if isinstance(b, (bytes, bytearray)):
        return bytes(b).decode("utf-8", "replace")
    return str(b)


def _tx_metadata(app: str, tx) -> dict | None:
    """The http/dns/tls object an alert carries (a subset of Suricata's)."""
    try:
        if app == "http":
            d = {}
            if tx.hostname:
                d["hostname"] = _text(tx.hostname)
            if tx.uri_raw:
                d["url"] = _text(tx.uri_raw)
            ua = tx.request_header(b"user-agent")
            if ua:
                d["http_user_agent"] = _text(ua)
            ct = tx.response_header(b"content-type")
            if ct:
                d["http_content_type"] = _text(ct)
            if tx.method:
                d["http_method"] = _text(tx.method)
            if tx.request_protocol:
                d["protocol"] = _text(tx.request_protocol)
            if tx.status_code is not None:
                d["status"] = tx.status_code
            if tx.response_started:
                d["length"] = tx.response_body_len
            return d
        if app == "dns":
            msg = tx.query or tx.response
            if msg is None:
                return None
            d = {"query": [{"rrname": _text(name), "rrtype": rrtype, "id": tx.id} for name, rrtype, _ in
                           msg.questions[:16]]}
            return d
        if app == "tls":
            d = {}
            if tx.sni:
                d["sni"] = _text(tx.sni)
            if tx.version is not None:
                d["version"] = tx.version_string
            if getattr(tx, "subject", None):
                d["subject"] = _text(tx.subject)
            if getattr(tx, "issuer", None):
                d["issuerdn"] = _text(tx.issuer)
            if getattr(tx, "ja3_hash", None):
                d["ja3"] = {"hash": _text(tx.ja3_hash), "string": _text(tx.ja3_string)}
            return d
    except Exception:  # noqa: BLE001 - metadata is best effort; the alert itself matters
        return None
    return None


def build_ids_stage(config, rule_files, ips: bool = False) -> IdsStage:
    """Load the rule files with the config's variables and build the stage. Raises RuleFileError for a
    file that cannot be read; rejected rules are kept on `stage.ruleset.rejected`."""
    from .classification import load_classifications
    from .rules import load_rules
    from .vars import Variables

    classifications = load_classifications(None)
    ruleset = load_rules(list(rule_files), Variables.from_config(config), classifications)
    stage = IdsStage(DetectionEngine(ruleset.rules), ips=ips, classifications=classifications)
    stage.ruleset = ruleset
    return stage
