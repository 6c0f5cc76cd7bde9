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

import gc
import ipaddress

from ..applayer.http import HttpFile
from ..applayer.stage import ENCRYPTED_PROTOS
from ..config import EventsSection
from ..events import add_packet_fields, eve_timestamp, packet_event
from ..flow import TCP_CLOSING, TCP_ESTABLISHED, eof_packet
from ..packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from ..pipeline import PacketContext, Stage, Verdict
from ..stream import stream_exhausted
from .decoder_events import undecodable_events
from .engine import STREAM_WINDOW, DetectionEngine, FlowIdsState

_ACTION_VERDICT = {"drop": Verdict.DROP, "reject": Verdict.REJECT}
_FLOW_STATE_APPS = ("tls", "ssh")   # one session per flow, logged with any alert on the flow (not per transaction)


# the TCP states in which a packet counts as established for the next one (see on_packet)
_ESTABLISHED_STATES = frozenset((TCP_ESTABLISHED, TCP_CLOSING))


class IdsStage(Stage):
    name = "ids"

    def __init__(self, engine: DetectionEngine, ips: bool = False, classifications: dict | None = None,
                 events=None):
        self.engine = engine
        self.ips = ips
        events = events if events is not None else EventsSection()
        self.drop_log_all = events.drop_flows == "all"
        self.xff = events.xff if events.xff.enabled else None
        self.classifications = classifications or {}
        self.alerts = 0
        self.errors = 0
        self.last_error = ""
        self._alert_cache: dict[int, dict] = {}
        self.ruleset = None      # the RuleSet the engine was built from (load report), when known

    def on_packet(self, ctx: PacketContext) -> None:
        flow = ctx.flow
        fstate = flow.state
        st = fstate.get("ids")
        if st is None:
            st = fstate["ids"] = FlowIdsState()
        elif st.passed or st.dropped:
            return
        pkt = ctx.pkt
        # flow:established as Suricata sees it: the state the packet FOUND (its flags are set at flow lookup, before
        # the TCP state machine runs), so the handshake's last ACK is not yet established and a FIN still is
        if pkt.proto == PROTO_TCP:
            established = st.est
            st.est = flow.tcp_state in _ESTABLISHED_STATES
            # reassembled bytes (data on a SYN, TCP Fast Open, is the stream's first: stream.py)
            streams = flow.streams is not None
            data = ctx.stream_data if streams else pkt.payload
        else:
            streams = False
            established = st.est = flow.pkts_toserver > 0 and flow.pkts_toclient > 0
            data = pkt.payload
        app = fstate.get("applayer")
        if app is None:
            txs = ()
        else:
            txs = app.updated if app.ctx is ctx else ()
            if data and app.proto in ENCRYPTED_PROTOS and app.parser is not None and app.parser.done:
                # Suricata's default encryption handling (TLS, SSH): no payload inspection of the encrypted records
                data = b""
        engine = self.engine
        if not data:
            # nothing to scan and no transaction: only the rules without a fast pattern of this flow direction
            # could match
            if not txs and (route := st.routes[ctx.to_server]) is not None and not route[3] and route[0] is engine:
                return
            tail = b""
        elif streams and engine.window_rules:
            # the stream bytes before these (none after a gap), for content split over segments (data is
            # ctx.stream_data here)
            tails = st.tails
            d = 0 if ctx.to_server else 1
            tail = b"" if ctx.stream_gap else tails[d]
            # (a segment of at least STREAM_WINDOW bytes is kept whole, uncopied: inspect takes the window's worth)
            tails[d] = data if len(data) >= STREAM_WINDOW or not tail else tail[len(data) - STREAM_WINDOW:] + data
        else:
            tail = b""
        try:
            matches = engine.inspect(pkt, flow, ctx.to_server, data, txs, established, tail, st)
        except Exception as e:  # noqa: BLE001 - detection must never take the worker down
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            return
        if matches:
            self._apply(ctx, st, matches)

    def _apply(self, ctx: PacketContext, st, matches) -> None:
        """Suricata's PacketAlertFinalize: the matches come in action order (engine.py); drop/reject mark the
        packet, and the flow when the match acts on it (Match.flow_scope), the first flow action winning; a
        pass ends the list. A flow drop stops detection on the flow in IDS mode too (Suricata's DetectFlow),
        while only IPS blocks packets."""
        pkt, flow = ctx.pkt, ctx.flow
        drop_m = None            # the first drop/reject match (Suricata's p->alerts.drop)
        targets = set()          # reject targets of the reject matches
        flow_drop = passed = False
        alerts = []
        for m in matches:
            rule = m.rule
            action = rule.action
            if action == "pass":
                passed = True
                if m.flow_scope and not flow_drop:
                    st.passed = True
                break
            if action != "alert":
                if drop_m is None:
                    drop_m = m
                if action == "reject":
                    targets.add(rule.reject_target)
                if m.flow_scope and not flow_drop:
                    flow_drop = st.dropped = True
            if not rule.noalert:
                alerts.append(m)
        verdict = _verdict_object(pkt.proto, targets, drop_m is not None and self.ips, passed, self.ips)
        ips_drop = self.ips and drop_m is not None
        for m in alerts:
            ev = self._event(ctx, m, self.ips and m.rule.action != "alert")
            ev["verdict"] = dict(verdict)
            ctx.emit(ev)
            self.alerts += 1
        if alerts:
            flow.alerted = True
        if not ips_drop:
            return
        # rejectdst: the kernel's REJECT only answers the sender, so the packet is dropped without an answer
        v = Verdict.REJECT if ("to_client" in targets or "both" in targets) else Verdict.DROP
        ctx.decide(v, "ids", whole_flow=flow_drop)
        if flow_drop:
            st.drop_logged |= 1 if ctx.to_server else 2
        # Suricata's `drop` event for the packet a rule dropped, carrying the first blocking alert (or the
        # noalert drop rule)
        shown = next((m for m in alerts if m.rule.action != "alert"), drop_m)
        ctx.emit(self._drop_event(pkt, flow, ctx.to_server, "rules", verdict, shown.rule))

    def on_flow_dropped(self, pkt, flow, to_server: bool, emit) -> None:
        """A packet of a flow this stage dropped earlier (the Inspector's sticky verdict): Suricata's drop log,
        once per direction (events.drop_flows = start) or for every packet (all)."""
        st = flow.state.get("ids")
        if st is None or not st.dropped:
            return
        bit = 1 if to_server else 2
        if not self.drop_log_all:
            if st.drop_logged & bit:
                return
            st.drop_logged |= bit
        emit(self._drop_event(pkt, flow, to_server, "flow drop", {"action": "drop"}, None))

    def _drop_event(self, pkt, flow, to_server: bool, reason: str, verdict: dict, rule) -> dict:
        ev = packet_event("drop", pkt, flow)
        ev["direction"] = "to_server" if to_server else "to_client"
        ev["drop"] = {"len": pkt.length, "ttl": pkt.ttl, "reason": reason}
        ev["verdict"] = dict(verdict)
        if rule is not None:
            body = {"action": "blocked"}
            body.update(self._alert_body(rule))
            del body["_rule"]
            ev["alert"] = body
        add_packet_fields(ev, pkt)
        return ev

    def on_decoder_events(self, pkt, events, decoded: bool, emit):
        """decode-event rules on a packet the decoder refused or a fragment the defragmenter flagged. A refused
        packet has no addresses: its alert carries none (as Suricata logs it)."""
        if not decoded:
            events = undecodable_events(pkt.data, events)
        if not events:
            return None
        matches = self.engine.decoder_event_matches(pkt, events, decoded)
        verdict = None
        out, targets, dropped, passed = [], set(), False, False
        for m in matches:
            rule = m.rule
            if rule.action == "pass":
                passed = True
                break
            blocked = self.ips and rule.action in _ACTION_VERDICT
            dropped = dropped or rule.action != "alert"
            if rule.action == "reject":
                targets.add(rule.reject_target)
            if blocked and verdict is None:
                verdict = _ACTION_VERDICT[rule.action]
            if rule.noalert:
                continue
            if decoded:
                ev = packet_event("alert", pkt, None)
                del ev["flow_id"]
                ev["ip_v"] = pkt.version
            else:
                ev = {"timestamp": eve_timestamp(pkt.ts), "event_type": "alert"}
                if pkt.pcap_cnt is not None:
                    ev["pcap_cnt"] = pkt.pcap_cnt
            ev["pkt_src"] = "wire/pcap" if pkt.pcap_cnt is not None else "wire/nfq"
            body = {"action": "blocked" if blocked else "allowed"}
            body.update(self._alert_body(rule))
            del body["_rule"]
            ev["alert"] = body
            add_packet_fields(ev, pkt)
            out.append(ev)
        vobj = _verdict_object(pkt.proto, targets, dropped and self.ips, passed, self.ips)
        for ev in out:
            ev["verdict"] = dict(vobj)
            emit(ev)
            self.alerts += 1
        return verdict

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
        # (Suricata's names; a packet without bytes is the end-of-flow pass of on_flow_eof)
        ev["pkt_src"] = "wire/pcap" if ctx.pkt.pcap_cnt is not None else "wire/nfq" if ctx.pkt.data else \
            "stream (flow timeout)"
        ev["ip_v"] = ctx.pkt.version
        flow = ctx.flow
        ev["flow"] = {"pkts_toserver": flow.pkts_toserver, "pkts_toclient": flow.pkts_toclient,
                      "bytes_toserver": flow.bytes_toserver, "bytes_toclient": flow.bytes_toclient,
                      "start": eve_timestamp(flow.start_ts)}
        body = {"action": "blocked" if blocked else "allowed"}
        body.update(self._alert_body(m.rule))
        del body["_rule"]
        ev["alert"] = body
        if self.xff is not None and flow.app_proto == "http":
            ip = _xff_address(self.xff, m, flow)
            if ip is None:
                pass
            elif self.xff.mode == "overwrite":
                ev["src_ip" if ctx.to_server else "dest_ip"] = ip
            else:
                body["xff"] = ip
        if ctx.pkt.data:
            add_packet_fields(ev, ctx.pkt)
        tx = m.tx
        app = m.app
        if tx is None and flow.app_proto in _FLOW_STATE_APPS:
            # a packet rule on a TLS or SSH flow: Suricata logs the flow's one session with every alert
            st = flow.state.get("applayer")
            if st is not None and st.parser is not None and st.proto == flow.app_proto:
                tx, app = st.parser.session, st.proto
        if tx is not None:
            meta = _tx_metadata(app, tx)
            if meta is not None:
                ev[app] = meta
            tx_id = getattr(tx, "tx_id", None)
            if tx_id is not None:
                ev["tx_id"] = tx_id
            if isinstance(tx, HttpFile):         # a file keyword matched this file: Suricata logs it
                ev["files"] = [{"filename": _text(tx.name)}]
            elif m.app == "smtp":
                _smtp_email(ev, tx)
        return ev

    def done(self, flow) -> bool:
        st = flow.state.get("ids")
        if st is not None and (st.passed or st.dropped):
            return True
        if not len(self.engine):
            return True
        if flow.proto == PROTO_TCP:
            return stream_exhausted(flow)
        return False

    def on_flow_eof(self, flow, inspector) -> None:
        """IDS mode (engine.body_defer): the HTTP bodies of the flow still waiting for their minimal inspect size
        are inspected now, as Suricata inspects them on its end-of-stream pseudo packets (a download cut off
        or still running when the flow times out, or when the capture ends)."""
        engine = self.engine
        if engine.body_defer is None:
            return
        st = flow.state.get("ids")
        app = flow.state.get("applayer")
        if st is None or st.passed or st.dropped or app is None or app.parser is None:
            return
        if app.proto == "smtp":
            # a mail whose files still wait for the server's answer (engine._smtp_due): inspected now
            tx = app.parser.tx
            if tx is not None and tx.files and not tx.complete:
                self._eof_inspect(inspector, flow, st, True, [("smtp", tx)])
            return
        if app.proto != "http":
            return
        for to_server, side in ((True, app.parser.req), (False, app.parser.res)):
            tx = side.tx
            if tx is None or not (tx.request_body if to_server else tx.response_body) or \
                    engine.body_due(tx, to_server):
                continue
            self._eof_inspect(inspector, flow, st, to_server, [("http", tx)])

    def _eof_inspect(self, inspector, flow, st, to_server: bool, txs) -> None:
        engine = self.engine
        ctx = PacketContext(inspector, eof_packet(flow, to_server), flow, to_server, False)
        engine.eof = True
        try:
            matches = engine.inspect(ctx.pkt, flow, to_server, b"", txs, st.est)
        finally:
            engine.eof = False
        if matches:
            self._apply(ctx, st, matches)

    def on_flow_end(self, flow) -> None:
        flow.state.pop("ids", None)


_REJECT_KIND = {PROTO_TCP: ["tcp-reset"], PROTO_UDP: ["icmp-prohib"], PROTO_ICMP: ["icmp-prohib"],
                PROTO_ICMPV6: ["icmp-prohib"]}


def _verdict_object(proto: int, targets: set, dropped: bool, passed: bool, ips: bool) -> dict:
    """Suricata's EVE `verdict` (EveAddVerdict): what happens to the packet, as alerts and drops log it."""
    if targets:
        target = "to_client" if "to_client" in targets else "to_server" if "to_server" in targets else "both"
        return {"action": "drop" if ips else "alert", "reject_target": target,
                "reject": list(_REJECT_KIND.get(proto, ()))}
    if dropped:
        return {"action": "drop"}
    return {"action": "pass" if passed else "alert"}


def _xff_address(cfg, m, flow) -> str | None:
    """The client address a proxy wrote in the configured header (Suricata's HttpXFFGetIP): from the alert's
    transaction, else from the first open transaction of the flow that has one. reverse deployment: the last
    address of the chain, forward: the first."""
    tx = m.tx
    if isinstance(tx, HttpFile):
        tx = tx.tx
    if tx is not None and m.app == "http":
        txs = [getattr(tx, "partial_of", None) or tx]
    else:
        app = flow.state.get("applayer")
        parser = getattr(app, "parser", None) if app is not None else None
        txs = getattr(parser, "transactions", ())[:16]
    name = cfg.header.encode()
    for t in txs:
        value = t.request_header(name) if hasattr(t, "request_header") else None
        if value is None or not 7 <= len(value) < 256:      # Suricata's XFF_CHAIN_MINLEN / MAXLEN
            continue
        chain = value.decode("latin-1")
        part = chain.rsplit(" ", 1)[-1] if cfg.deployment == "reverse" else chain.split(",", 1)[0]
        ip = _xff_ip(part.strip())
        if ip is not None:
            return ip
    return None


def _xff_ip(text: str) -> str | None:
    """An address as proxies write it: 1.2.3.4, 1.2.3.4:port, [v6]:port, [v6] or v6; None if not one."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return text


def _text(b) -> str:
    if isinstance(b, (bytes, bytearray)):
        return bytes(b).decode("utf-8", "replace")
    return str(b)


def _rrtype(rrtype: int) -> str:
    from ..applayer.dns import RR_TYPE_NAMES
    return RR_TYPE_NAMES.get(rrtype, str(rrtype))


def _tx_metadata(app: str, tx) -> dict | None:
    """The http/dns/tls/ssh object an alert carries (a subset of Suricata's)."""
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
            # Suricata 8's dns object (EVE dns v3): the request or the response this alert is about
            msg = tx.query or tx.response
            if msg is None:
                return None
            d = {"version": 3, "type": "response" if msg.is_response else "request", "id": tx.id,
                 "opcode": msg.opcode, "rcode": msg.rcode_name,
                 "queries": [{"rrname": _text(name), "rrtype": _rrtype(rrtype)} for name, rrtype, _ in
                             msg.questions[:16]]}
            if msg.is_response and msg.answers:
                d["answers"] = [{"rrname": _text(rr.name), "rrtype": _rrtype(rr.rrtype), "ttl": rr.ttl}
                                for rr in msg.answers[:16]]
            return d
        if app == "smtp":
            # Suricata's smtp object: the client's HELO, MAIL FROM and RCPT TO of this mail
            d = {}
            if tx.helo:
                d["helo"] = _text(tx.helo)
            if tx.mail_from is not None:
                d["mail_from"] = _text(tx.mail_from)
            if tx.rcpt_to:
                d["rcpt_to"] = [_text(r) for r in tx.rcpt_to[:64]]
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
        if app == "ssh":
            # Suricata's ssh object: each side's banner, and its HASSH when seen
            d = {}
            for name, side in (("client", tx.client), ("server", tx.server)):
                if side.proto_version:
                    s = d[name] = {"proto_version": _text(side.proto_version),
                                   "software_version": _text(side.software_version)}
                    if side.hassh:
                        s["hassh"] = {"hash": _text(side.hassh), "string": _text(side.hassh_string)}
            return d
    except Exception:  # noqa: BLE001 - metadata is best effort; the alert itself matters
        return None
    return None


def _smtp_email(ev: dict, tx) -> None:
    """Suricata's `email` object (the message's From/To/Cc/Subject, the parse status, attachment names) and
    `files` (each attachment of the mail) on an alert about an SMTP transaction."""
    try:
        email: dict = {}
        if tx.mime_status:
            email["status"] = tx.mime_status
        frm = tx.header(b"from")
        if frm is not None:
            email["from"] = _text(frm)
        for name, key in ((b"to", "to"), (b"cc", "cc")):
            v = tx.header(name)
            if v:
                email[key] = [_text(a.strip()) for a in v.split(b",")[:64] if a.strip()]
        subject = tx.header(b"subject")
        if subject is not None:
            email["subject"] = _text(subject)
        if tx.attachments:
            email["attachment"] = [_text(a) for a in tx.attachments[:64]]
        if email:
            ev["email"] = email
        if tx.files:
            ev["files"] = [{"filename": _text(f.name), "gaps": False, "state": "CLOSED" if f.closed else "OPEN",
                            "stored": False, "size": f.size, "tx_id": tx.tx_id} for f in tx.files[:64]]
    except Exception:  # noqa: BLE001 - metadata is best effort; the alert itself matters
        return


def build_ids_stage(config, rule_files, ips: bool = False) -> IdsStage:
    """Load the rule files with the config's variables and build the stage. Raises RuleFileError for a
    file that cannot be read; rejected rules are kept on `stage.ruleset.rejected`."""
    from .classification import load_classifications
    from .rules import load_rules
    from .vars import Variables

    classifications = load_classifications(None)
    ruleset = load_rules(list(rule_files), Variables.from_config(config), classifications)
    engine = DetectionEngine(ruleset.rules, action_order=config.ids.action_order)
    ids = config.ids
    if ids.http_body_inline == "no" or ids.http_body_inline == "auto" and not ips:
        engine.body_defer = (ids.request_body_minimal_inspect_size, ids.response_body_minimal_inspect_size)
    stage = IdsStage(engine, ips=ips, classifications=classifications, events=config.events)
    stage.ruleset = ruleset
    # Hundreds of thousands of long-lived rule objects: move them out of the cyclic GC's generations so
    # its periodic full collections do not walk the whole rule set (benchmarks/ids.py with ET Open: rules-on
    # throughput went from ~30k to ~44k packets per CPU-second).
    gc.collect()
    gc.freeze()
    return stage
