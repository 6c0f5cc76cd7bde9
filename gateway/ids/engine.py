"""The detection engine: rule groups, one prefilter scan per buffer, full evaluation of candidates only.

Built once per rule set (`DetectionEngine(rules)`), then `inspect(...)` per packet. Layout:

- Rules are grouped by IP protocol (tcp, udp, icmp, other; an `ip` rule is in every group), so a packet is
  never compared with rules of another protocol. Inside a group:
    * one Hyperscan database per buffer kind ("pkt_data", "http.uri", "dns.query|dotprefix", ...) holding
      the fast pattern of every rule that has one there (prefilter.py);
    * the rules without a usable fast pattern (no content, or only negated content), bucketed by
      destination port, with the port-agnostic ones (any, bidirectional, large port sets) in one list.
- Packet rules use only the packet payload / reassembled stream bytes (pkt_data) and header keywords.
  Transaction rules (any app-layer buffer, urilen, tls.version) are evaluated against the transactions the
  app-layer stage updated on this packet; each fires at most once per transaction, as in Suricata.
- Candidates are evaluated in Suricata's order: action (pass, drop, reject, alert), flowbits writers before
  readers, priority, then load order. A matching pass rule ends the evaluation for the packet.

State: flowbits and per-transaction alert memory live on the flow (flow.state["ids"]); xbits and
threshold/detection_filter counters live here, each bounded (oldest entry evicted first).
"""
from __future__ import annotations

from collections import OrderedDict
from operator import itemgetter
from pathlib import Path
from types import MappingProxyType

from ..applayer.http import HttpTransaction, buffer_getter
from ..applayer.tls import TlsSession
from ..applayer.tls import buffer_getter as tls_buffer_getter
from ..flow import TCP_CLOSING, TCP_ESTABLISHED
from ..packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from ..stream import stream_events
from .decoder_events import packet_events
from .header import HEADER_BUFFERS, field_value, header_buffer
from .header_group import GROUPED as HEADER_GROUPED
from .header_group import HeaderGroup
from .keywords import BUFFERS
from .match import apply_transforms, match_list
from .model import BufferSize, ContentMatch, IntCompare, Rule
from .prefilter import BufferPrefilter, ExceptPorts, compile_all, default_cache_dir

ACTION_RANK = {"pass": 0, "drop": 1, "reject": 2, "alert": 3}
_GROUPS = (PROTO_TCP, PROTO_UDP, PROTO_ICMP, 0)     # 0: every other IP protocol (and ICMPv6 shares ICMP)
_PORT_BUCKET_MAX = 1024                             # rules with more dst ports go to the any-port list
_PORT_DB_MAX_PORTS = 16
# a port-bound fast pattern this long is rare enough in other traffic to sit in the shared payload database
# (its port checked when it hits) instead of costing its port's packets a scan of their own
_PORT_DB_SHARED_LEN = 4
# http.request_body / http.response_body are file.data of their direction (applayer/http.py)
_SAME_AS_FILE_DATA = {"http.request_body", "http.response_body"}                             # payload rules on at most this many ports: per-port DBs
_APP_OF_BUFFER = {name: spec.app_proto for name, spec in BUFFERS.items()}
# file.data has two producers: HTTP bodies and SMTP attachments; a rule without an app protocol reads both
_APP_OF_BUFFER["file.data"] = None
_FILE_DATA_APPS = ("http", "smtp")
SMTP_INSPECT_MIN_SIZE = 32768                       # Suricata's smtp content-inspect-min-size default
MAX_TX_MEMORY = 256                                 # per flow: transactions whose alerts we remember
MAX_SCAN_MEMORY = 1024                              # per flow: remembered prefilter scans of tx buffers
MAX_XBITS = 65536
MAX_ROUTES = 4096                                   # remembered routes (_route)
EVAL_MEMO = 4096                                    # remembered transaction-rule answers (_tx_match_memo)
EVAL_MEMO_LEN = 1024                                # ... for buffers up to this long (bodies are not)
# buffers that differ between two requests even from one client to one site (the request line and what holds it,
# message bodies): a rule reading one is evaluated without the memo (_CRule.memo_ok). Host, user agent, headers,
# cookies, DNS names and certificates repeat, and stay memoised.
_UNIQUE_BUFFERS = frozenset({"http.uri", "http.uri.raw", "http.request_line", "http.start", "http.request_body",
                             "http.response_body", "file.data"})
_GETTER_TX = frozenset({HttpTransaction, TlsSession})      # what the prefilter's buffer getters read
_NO_PORT = 65536                                    # a port no rule names: not a port key either way
MAX_THRESHOLD_ENTRIES = 65536


def _NO_KINDS(versions) -> tuple:
    return ()


class _CRule:
    """A rule plus what the engine precomputes for it."""

    __slots__ = (
        "app",
        "dport_any",
        "dsize_needs_payload",
        "dst_any",
        "flow_scope",
        "hdr",
        "hdr_lists",
        "idx",
        "ip_only",
        "is_tx",
        "kinds",
        "memo_ok",
        "needs_payload",
        "order",
        "per_file",
        "pkt_fields",
        "pkt_lists",
        "reads_bits",
        "rule",
        "sport_any",
        "src_any",
        "stream_mode",
        "tx_dir",
        "tx_lists",
        "version_sig",
        "window_ok",
        "writes_bits",
    )

    def __init__(self, rule: Rule, idx: int, action_rank: dict | None = None):
        self.rule = rule
        self.idx = idx
        self.pkt_lists = tuple(ml for ml in rule.buffers if ml.buffer == "pkt_data")
        self.window_ok = _window_ok(rule, self.pkt_lists)
        tx_lists = []
        flow_dir = rule.flow.to_server if rule.flow is not None else None
        # packet-header buffers (ipv6.hdr, tcp.hdr, ...): matched per packet in _header
        self.hdr_lists = tuple(ml for ml in rule.buffers if ml.buffer in HEADER_BUFFERS)
        for ml in rule.buffers:
            if ml.buffer == "pkt_data" or ml.buffer in HEADER_BUFFERS:
                continue
            spec = BUFFERS.get(ml.buffer)
            d = spec.direction if spec is not None else None
            to_server = True if d == "to_server" else False if d == "to_client" else flow_dir
            tx_lists.append((ml, to_server))
        self.tx_lists = tuple(tx_lists)
        # file keywords are inspected per file (Suricata's file inspection): one alert per matching file
        self.per_file = any(ml.buffer == "file.name" for ml, _ in tx_lists) or bool(rule.file_hashes)
        # the version kinds (see _version_kind) of the buffers the rule reads; None: not memoisable
        kinds = {_version_kind(ml.buffer) for ml, _ in tx_lists}
        if rule.urilen is not None:
            kinds.add(0)
        # (app-layer events can appear without any buffer changing: not memoisable either)
        self.kinds = tuple(sorted(kinds)) if rule.tls_version is None and not rule.app_events and \
            not rule.tx_ints and not rule.file_hashes else None
        # versions (_tx_versions) -> the signature of those kinds: one value for one kind, else a tuple
        self.version_sig = None if self.kinds is None else itemgetter(*self.kinds) if self.kinds else _NO_KINDS
        # the direction a transaction rule is inspected in (Suricata registers it with the app-layer
        # inspection engines of that direction): to_client if any buffer only exists there, to_server if
        # every buffer is a request one, else the flow keyword's (None: both)
        dirs = {d for _, d in tx_lists}
        self.tx_dir = False if False in dirs else True if dirs == {True} else flow_dir
        self.is_tx = bool(tx_lists) or rule.urilen is not None or rule.tls_version is not None or \
            bool(rule.app_events) or bool(rule.tx_ints) or bool(rule.file_hashes)
        self.app = rule.app_proto
        if self.is_tx and self.app is None:
            self.app = next((_APP_OF_BUFFER.get(ml.buffer) for ml, _ in tx_lists), None)
        self.src_any = rule.src.is_any
        self.dst_any = rule.dst.is_any
        self.sport_any = rule.sport.is_any
        self.dport_any = rule.dport.is_any
        self.needs_payload = bool(self.pkt_lists)
        # one flag for the rarely used packet-field conditions, so the common rule pays one test
        self.pkt_fields = bool(rule.ip_version is not None or rule.pkt_checks or rule.decode_events or
                               rule.stream_events or
                               self.hdr_lists)
        # Suricata (SignatureSetMasks): dsize with !=, >, >=, a range or =N>0 makes the rule require a
        # payload, so `dsize:!9` never matches an empty packet while `dsize:<10` does
        ds = rule.dsize
        self.dsize_needs_payload = ds is not None and (ds.op in ("!=", ">", ">=", "<>") or
                                                       (ds.op == "=" and ds.value > 0))
        self.stream_mode = rule.flow.stream if rule.flow is not None else None   # "only" | "no" | None
        # Suricata's action scope: a drop/reject by a transaction or stream rule, or by an IP-only rule
        # (addresses and ports only), ends the flow; one by a per-packet rule (flags, dsize, flow, ttl,
        # ...) drops that packet only
        packet_kw = (rule.flow is not None or rule.flags is not None or rule.dsize is not None or
                     rule.ttl is not None or rule.itype is not None or rule.icode is not None or
                     rule.ip_proto is not None or bool(rule.stream_size) or bool(rule.flowbits) or
                     bool(rule.xbits) or bool(rule.pkt_checks) or bool(self.hdr_lists) or
                     bool(rule.decode_events) or bool(rule.stream_events))
        # (a payload match acts on the flow only when it was on reassembled stream bytes: see inspect)
        self.flow_scope = self.is_tx or (rule.pd_only and bool(rule.app_protocols)) or \
            (not packet_kw and not self.needs_payload)
        # Suricata's IP-only rule (addresses only: no payload, no packet keyword, no app-layer, any ports): it is
        # evaluated on the first packet of each direction of a flow only (DetectRunInspectIPOnly)
        self.ip_only = not packet_kw and not self.needs_payload and not self.is_tx and rule.app_proto is None \
            and not rule.app_protocols and not rule.flowints and self.sport_any and self.dport_any
        self.reads_bits = any(op.command in ("isset", "isnotset") for op in rule.flowbits)
        self.writes_bits = any(op.command in ("set", "unset", "toggle") for op in rule.flowbits)
        fb = 2 if self.writes_bits and not self.reads_bits else 1 if self.writes_bits else \
            0 if self.reads_bits else -1
        # Suricata's sig ordering after flowbits: flowint, then hostbits, then ippair xbits (writers first)
        fi = _rw_rank([op.op in _FLOWINT_CONDS for op in rule.flowints])
        hb = _rw_rank([op.command[:2] == "is" for op in rule.xbits if op.track != "ip_pair"])
        pb = _rw_rank([op.command[:2] == "is" for op in rule.xbits if op.track == "ip_pair"])
        self.order = ((action_rank or ACTION_RANK).get(rule.action, 3), -fb, -fi, -hb, -pb, rule.priority, idx)
        # _tx_match's answer depends on the rule's buffers alone: no payload, no uri length (it may read a
        # buffer the rule does not name), nothing kinds cannot describe (tls version, events, integers,
        # hashes), not per file
        # ... and worth remembering: not when it reads a buffer that differs from request to request (the URI, the
        # request line, ...), whose answers would only fill the memo
        self.memo_ok = bool(self.tx_lists) and not self.pkt_lists and rule.urilen is None and \
            self.kinds is not None and not self.per_file and \
            not any(ml.buffer in _UNIQUE_BUFFERS for ml, _ in self.tx_lists)
        # what _header tests, in one tuple: a candidate's check reads this one object instead of following the
        # rule to its flow keyword and groups (rule objects are cold in the cache by the time a packet needs
        # them); the rarely used conditions are one flag
        fm = rule.flow
        rare = rule.flags is not None or rule.dsize is not None or rule.ttl is not None or \
            rule.ip_proto is not None or rule.itype is not None or rule.icode is not None or \
            bool(rule.stream_size) or bool(rule.app_protocols) or self.reads_bits or bool(rule.xbits) or \
            bool(rule.flowints) or self.pkt_fields
        self.hdr = (rule.app_proto, fm.to_server if fm is not None else None,
                    fm.established if fm is not None else None, rare,
                    None if self.src_any else rule.src, None if self.dst_any else rule.dst,
                    None if self.sport_any else rule.sport, None if self.dport_any else rule.dport,
                    rule.transactional, rule.bidirectional)


# Bytes of a TCP direction's reassembled stream kept before the new ones, so that content split over segments
# matches (Suricata's raw stream inspection). A match is reported on the packet whose bytes complete it.
STREAM_WINDOW = 1024
_PROTO_GRE = 47


def _window_ok(rule: Rule, pkt_lists) -> int:
    """Rules matched on the stream window too: plain contents (relative or not) on pkt_data and nothing whose
    meaning depends on where the inspected buffer starts (offset, depth, startswith/endswith, byte_*,
    isdataat, pcre anchors) or on the packet alone (flow:no_stream, dsize). 0: not such a rule; 1: one
    content (it can only complete across the seam); 2: several contents."""
    if not pkt_lists or rule.dsize is not None or (rule.flow is not None and rule.flow.stream == "no") or \
            rule.fast_pattern is None or rule.fast_pattern.buffer != "pkt_data":
        return 0
    n = 0
    for ml in pkt_lists:
        if ml.transforms:
            return 0
        for m in ml.matches:
            if type(m) is not ContentMatch or m.negated or m.offset is not None or m.depth is not None or \
                    m.startswith or m.endswith:
                return 0
            n += 1
    return 1 if n == 1 else 2


def _decoder_only(cr: _CRule) -> bool:
    """A decode-event rule with no condition needing a decoded packet (other than addresses/ip version)."""
    r = cr.rule
    return bool(r.decode_events) and not (
        r.buffers or cr.is_tx or r.flow is not None or r.flags is not None or r.dsize is not None or
        r.ttl is not None or r.itype is not None or r.icode is not None or r.ip_proto is not None or
        r.pkt_checks or r.stream_events or r.flowbits or r.xbits or r.flowints or r.stream_size or r.app_protocols or
        r.app_proto is not None or r.ip_protos is not None or r.threshold is not None or
        r.detection_filter is not None)


_FLOWINT_CONDS = frozenset(("==", "!=", "<", "<=", ">", ">=", "isset", "notset"))


def _rw_rank(reads: list[bool]) -> int:
    """2 writes only, 1 reads and writes, 0 reads only, -1 unused (Suricata's SET > SET_READ > READ)."""
    if not reads:
        return -1
    r, w = any(reads), not all(reads)
    return 2 if w and not r else 1 if w else 0


class _Group:
    """The rules of one IP-protocol group."""

    __slots__ = (
        "header_groups",
        "nofp_addr6",
        "nofp_any",
        "nofp_dst4",
        "nofp_port",
        "nofp_sport",
        "nofp_src4",
        "port_prefilters",
        "prefilters",
        "route_ports",
        "tx_in_pkt",
        "tx_kinds",
        "tx_nofp",
        "tx_prefilters",
    )

    def __init__(self):
        self.prefilters: dict[str, BufferPrefilter] = {}
        self.port_prefilters: dict[int, BufferPrefilter] = {}   # port key (dst p, src -1-p) -> payload DB
        # (app, to_server) -> [(buffer name, transforms, prefilter, version kind)]
        self.tx_prefilters: dict[tuple, list] = {}
        # (app, to_server) -> [(version kind, [(buffer name, transforms, prefilter)])]: scans reused per kind
        self.tx_kinds: dict[tuple, list] = {}
        # to_server -> (HeaderGroup of the HTTP buffers that come from the header list alone, tx_kinds without
        # them): for HttpTransaction updates
        self.header_groups: dict[bool, tuple[HeaderGroup, list]] = {}
        self.nofp_any: list[int] = []
        self.nofp_port: dict[int, list[int]] = {}
        self.tx_nofp: dict[str, list[int]] = {}
        # IP-only style rules (address lists, no content: tor, ciarmy, botcc, ...) indexed by the /16 of the
        # side that has a short address list, so a packet meets only the lists its addresses fall in
        self.nofp_src4: dict[int, list[int]] = {}
        self.nofp_dst4: dict[int, list[int]] = {}
        self.nofp_addr6: list[int] = []     # the same rules when their list also holds IPv6 ranges
        self.nofp_sport: dict[int, list[int]] = {}   # any dst port, a few src ports (server responses)
        self.tx_in_pkt = False              # some transaction rule has its fast pattern in pkt_data
        self.route_ports: frozenset = frozenset()   # ports (dst or src) some rule of the group names


class Match:
    """One rule that matched on this packet (tx is the transaction for app-layer rules). flow_scope: a drop
    or reject acts on the whole flow (else on this packet only)."""

    __slots__ = ("app", "flow_scope", "rule", "tx")

    def __init__(self, rule: Rule, tx, app: str | None, flow_scope: bool = True):
        self.rule = rule
        self.tx = tx
        self.app = app
        self.flow_scope = flow_scope


def _rule_groups(rule: Rule):
    protos = rule.ip_protos
    if protos is None and rule.ip_proto is not None and rule.ip_proto.op == "=":
        protos = frozenset({rule.ip_proto.value})      # ip_proto:41 narrows an `ip` rule
    for g in _GROUPS:
        if protos is None:
            yield g
        elif g == 0:
            if any(p not in (PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6) for p in protos):
                yield g
        elif g == PROTO_ICMP:
            if PROTO_ICMP in protos or PROTO_ICMPV6 in protos:
                yield g
        elif g in protos:
            yield g


_MAX_PREFIXES = 64          # a side spanning more /16s than this is not worth indexing


def _prefixes16(ag) -> set[int] | None:
    keys: set[int] = set()
    for lo, hi in ag.v4:
        a, b = lo >> 16, hi >> 16
        if b - a >= _MAX_PREFIXES or len(keys) > 4096:
            return None
        keys.update(range(a, b + 1))
    return keys


def _index_by_address(grp: _Group, cr: _CRule) -> bool:
    """Put a rule without fast pattern in the /16 index of its src or dst list; False if neither is short."""
    r = cr.rule
    for ag, table, is_any in ((r.src, grp.nofp_src4, cr.src_any), (r.dst, grp.nofp_dst4, cr.dst_any)):
        if is_any:
            continue
        keys = _prefixes16(ag)
        if keys is None:
            continue
        for k in keys:
            table.setdefault(k, []).append(cr.idx)
        if ag.v6:
            grp.nofp_addr6.append(cr.idx)
        return True
    return False


def _fp_anchor(cr: _CRule) -> tuple | None:
    """Where the fast pattern must end in its buffer, for the prefilter (prefilter.py `anchor`): from the
    fast-pattern content's own offset/depth/startswith/endswith when it is absolute and the buffer scanned is
    the very buffer it is evaluated on. None: anywhere."""
    r = cr.rule
    fp = r.fast_pattern
    if fp.buffer == "pkt_data":
        if cr.stream_mode is not None:
            return None         # evaluated on the packet payload, scanned in the reassembled data
    elif _APP_OF_BUFFER.get(fp.buffer) is None or _version_kind(fp.buffer) not in (0, 1, 4):
        return None             # bodies are scanned incrementally (a suffix): no absolute positions there
    m = r.buffers[fp.list_index].matches[fp.match_index]
    if m.negated or m.relative:
        return None
    plen = len(m.pattern)
    co, cl = m.fast_pattern_chop or (0, plen)
    if m.startswith:
        offset, depth = 0, plen
    else:
        offset, depth = m.offset or 0, m.depth
    if not isinstance(offset, int) or offset < 0:
        return None
    lo = offset + co + cl
    hi = offset + depth - plen + co + cl if isinstance(depth, int) else None
    endswith = m.endswith and co + cl == plen
    for bs in r.buffers[fp.list_index].matches:
        # bsize bounds the buffer, so where anything in it can end ("Mozilla"; bsize:7 is the whole buffer)
        if type(bs) is BufferSize and bs.compare.op in ("=", "<", "<=", "<>"):
            c = bs.compare
            most = c.value - 1 if c.op == "<" else c.high - 1 if c.op == "<>" else c.value
            hi = most if hi is None else min(hi, most)
            if c.op == "=" and lo == c.value:
                endswith = True
    if hi is not None and hi < lo:
        return None
    if lo == len(fp.pattern) and hi is None and not endswith:
        return None
    return (lo, hi, endswith)


_PKT_DATA_TO_CLIENT = "pkt_data:to_client"     # grp.prefilters key of the to_client payload database


def _pad_byte(patterns) -> int:
    """The byte that occurs least in these patterns (either case), to pad the stream lead with: padding should
    not make fast patterns hit."""
    counts = [0] * 256
    for p in patterns:
        for c in set(p.lower() + p.upper()):
            counts[c] += 1
    return min(range(256), key=lambda c: (counts[c], c != 0xFE))


def _flow_dir(rule: Rule) -> bool | None:
    """The direction the rule's flow keyword allows (True to_server, False to_client, None both)."""
    return rule.flow.to_server if rule.flow is not None else None


def _port_count(pg) -> int:
    return sum(hi - lo + 1 for lo, hi in pg.ranges)


def _other_ports(pg) -> list[int]:
    """The ports a port group leaves out (its ranges are sorted and disjoint)."""
    out, nxt = [], 0
    for lo, hi in sorted(pg.ranges):
        out.extend(range(nxt, lo))
        nxt = max(nxt, hi + 1)
    out.extend(range(nxt, 65536))
    return out


class DetectionEngine:
    def __init__(self, rules: list[Rule], cache_dir: Path | None | str = "default",
                 action_order: tuple[str, ...] | None = None):
        if cache_dir == "default":
            cache_dir = default_cache_dir()
        # Suricata's action-order (default pass, drop, reject, alert): which action wins when several match
        rank = {a: i for i, a in enumerate(action_order)} if action_order else None
        # rule index == evaluation rank: a plain sort of candidate indexes gives Suricata's order
        crs = [_CRule(r, i, rank) for i, r in enumerate(rules)]
        crs.sort(key=lambda c: c.order)
        for i, cr in enumerate(crs):
            cr.idx = i
        _intern_headers(crs)
        self.rules = crs
        # Suricata's IDS-mode HTTP body inspection (http-body-inline: no): a body is looked at once it is
        # complete or has reached its minimal inspect size (request, response bytes); None: as it arrives, the
        # IPS (inline) way. build_ids_stage sets it from the config.
        self.body_defer: tuple[int, int] | None = None
        self.eof = False         # the flow is ending (IdsStage.on_flow_eof): every body is due
        self.window_rules = any(cr.window_ok for cr in crs)   # IdsStage keeps stream tails only if so
        # the longest fast pattern of a window rule: how far back from pkt_data one can start
        seam = min(STREAM_WINDOW, max((len(cr.rule.fast_pattern.pattern) for cr in crs if cr.window_ok),
                                      default=0))
        # TCP payload databases are scanned over the last `lead` bytes of the stream + the new ones, so a window
        # rule's fast pattern spanning two segments is found by the same scan; anchored patterns (offset, depth)
        # are compiled `lead` bytes further on to keep their place in pkt_data
        self.lead = max(0, seam - 1)
        self.window_ok = [cr.window_ok for cr in crs]
        self.is_tx = [cr.is_tx for cr in crs]
        self.tx_dirs = [cr.tx_dir for cr in crs]
        self.groups: dict[int, _Group] = {}
        entries: dict[tuple[int, str], list] = {}
        for cr in self.rules:
            r = cr.rule
            fp = r.fast_pattern
            usable = fp is not None and not fp.negated
            for g in _rule_groups(r):
                grp = self.groups.setdefault(g, _Group())
                if usable:
                    key = "|".join((fp.buffer,) + fp.transforms)
                    ports = None      # port keys (prefilter.py): dst p -> p, src p -> -1 - p
                    if r.bidirectional or r.transactional:
                        pass          # either way round (a transactional rule is also met on responses)
                    elif not cr.dport_any and _port_count(r.dport) <= _PORT_BUCKET_MAX:
                        ports = [p for lo, hi in r.dport.ranges for p in range(lo, hi + 1)]
                    elif not cr.sport_any and _port_count(r.sport) <= _PORT_BUCKET_MAX:
                        ports = [-1 - p for lo, hi in r.sport.ranges for p in range(lo, hi + 1)]
                    elif not cr.dport_any and 65536 - _port_count(r.dport) <= _PORT_BUCKET_MAX:
                        # most ports (1024:65535): a candidate except for the few it leaves out
                        ports = ExceptPorts(_other_ports(r.dport))
                    elif not cr.sport_any and 65536 - _port_count(r.sport) <= _PORT_BUCKET_MAX:
                        ports = ExceptPorts(-1 - p for p in _other_ports(r.sport))
                    anchor = _fp_anchor(cr)
                    if anchor is not None and g == PROTO_TCP and fp.buffer == "pkt_data" and self.lead:
                        lo, hi, endswith = anchor
                        anchor = (lo + self.lead, None if hi is None else hi + self.lead, endswith)
                    entry = (fp.pattern, fp.nocase, cr.idx, ports, anchor)
                    if key in _SAME_AS_FILE_DATA:
                        key = "file.data"     # the same bytes: one scan serves both (tx_dir picks the body)
                    if fp.buffer == "pkt_data":
                        entries.setdefault((g, key, None, None), []).append(entry)
                    else:
                        # file.data: one database per producing protocol, so HTTP bodies are never scanned for
                        # the patterns of smtp rules (nor mails for http ones)
                        fapps = (None,) if not key.startswith("file.data") else \
                            (cr.app,) if cr.app is not None else _FILE_DATA_APPS
                        # one database per direction: a response packet never scans for request-only rules
                        for d in ((True, False) if cr.tx_dir is None else (cr.tx_dir,)):
                            for fapp in fapps:
                                entries.setdefault((g, key, d, fapp), []).append(entry)
                    if cr.is_tx and fp.buffer == "pkt_data":
                        grp.tx_in_pkt = True
                elif cr.is_tx:
                    for a in ((cr.app,) if cr.app is not None else _FILE_DATA_APPS):
                        grp.tx_nofp.setdefault(a, []).append(cr.idx)
                elif not r.bidirectional and _index_by_address(grp, cr):
                    pass
                elif not r.bidirectional and cr.dport_any and not cr.sport_any and \
                        _port_count(r.sport) <= _PORT_BUCKET_MAX:
                    for lo, hi in r.sport.ranges:
                        for port in range(lo, hi + 1):
                            grp.nofp_sport.setdefault(port, []).append(cr.idx)
                elif r.bidirectional or cr.dport_any or _port_count(r.dport) > _PORT_BUCKET_MAX:
                    grp.nofp_any.append(cr.idx)
                else:
                    for lo, hi in r.dport.ranges:
                        for port in range(lo, hi + 1):
                            grp.nofp_port.setdefault(port, []).append(cr.idx)
        self._pad = bytes([_pad_byte(e[0] for (g, key, _, _), ents in entries.items() if g == PROTO_TCP and
                                     key == "pkt_data" for e in ents)]) * self.lead
        prefilters: list[BufferPrefilter] = []      # built all at once below (compile_all: threads)
        for (g, key, d, fapp), ents in list(entries.items()):
            if key != "pkt_data":
                continue
            # Suricata's per-port groups for the payload: a rule bound to a few ports gets its fast pattern in
            # a small database of each of those ports, scanned only for packets to/from them. Single-byte
            # patterns like "|05|" (DCERPC on 135) would otherwise hit nearly every payload.
            by_port: dict[int, list] = {}
            rest = []
            for e in ents:
                if type(e[3]) is list and len(e[3]) <= _PORT_DB_MAX_PORTS and len(e[0]) < _PORT_DB_SHARED_LEN:
                    for pk in e[3]:
                        by_port.setdefault(pk, []).append((e[0], e[1], e[2], None, e[4]))
                else:
                    rest.append(e)
            # and one payload database per direction, like Suricata's per-direction rule groups: a response
            # is never scanned for the patterns of flow:to_server rules (most exploit rules), nor a request
            # for those of to_client ones (_header would refuse them anyway)
            entries[(g, key, d, fapp)] = []
            for to_server in (True, False):
                entries[(g, key, to_server, None)] = [e for e in rest if _flow_dir(self.rules[e[2]].rule) in
                                                (None, to_server)]
            grp = self.groups[g]
            for pk, pents in by_port.items():
                pf = grp.port_prefilters[pk] = BufferPrefilter(pents, build=False)
                prefilters.append(pf)
        for (g, key, d, fapp), ents in entries.items():
            if not ents:
                continue
            pf = BufferPrefilter(ents, build=False)
            prefilters.append(pf)
            grp = self.groups[g]
            name, *transforms = key.split("|")
            if name == "pkt_data" and not transforms:
                grp.prefilters[key if d else _PKT_DATA_TO_CLIENT] = pf
            else:
                app = fapp if fapp is not None else _APP_OF_BUFFER.get(name)
                # (URIs and the like would only push the repeating buffers out of the scan memo)
                pf.remember = name not in _UNIQUE_BUFFERS
                grp.tx_prefilters.setdefault((app, d), []).append((name, tuple(transforms), pf,
                                                                   _version_kind(name)))
        compile_all(prefilters, cache_dir)
        # payload databases: an `alert ftp` rule's pattern found on an HTTP flow makes no candidate (inspect)
        for grp in self.groups.values():
            for pf in list(grp.prefilters.values()) + list(grp.port_prefilters.values()):
                pf.set_apps(lambda r: self.rules[r].hdr[0])
        self.compiled_from_cache = sum(pf.from_cache for pf in prefilters)
        for grp in self.groups.values():
            for (app, d), entries_ in grp.tx_prefilters.items():
                kinds: dict[int, list] = {}
                for name, transforms, pf, kind in entries_:
                    # the single HTTP header buffers come straight from their getters (what _buffers would
                    # build, without the dispatch)
                    get = buffer_getter(name, bool(d)) if app == "http" and kind not in _BODY_KINDS \
                        and name not in _HTTP_MULTI else tls_buffer_getter(name) if app == "tls" else None
                    kinds.setdefault(kind, []).append((name, transforms, pf, get))
                grp.tx_kinds[(app, d)] = sorted(kinds.items())
                if app == "http":
                    grouped = [(kind, name, pf, get) for kind, bufs in kinds.items()
                               for name, transforms, pf, get in bufs
                               if name in HEADER_GROUPED and not transforms and get is not None]
                    if grouped:
                        rest = sorted((kind, [b for b in bufs if b[0] not in HEADER_GROUPED or b[1] or b[3] is None])
                                      for kind, bufs in kinds.items())
                        grp.header_groups[bool(d)] = (HeaderGroup(grouped, bool(d)), rest)
            grp.nofp_any.sort()
            for table in (grp.nofp_port, grp.nofp_sport, grp.nofp_src4, grp.nofp_dst4):
                for lst in table.values():
                    lst.sort()
            # the /16 indexes keyed as packed address bytes (a packet's src[:2]), and the port keys that make a
            # route differ (_route)
            grp.nofp_src4 = {k.to_bytes(2, "big"): v for k, v in grp.nofp_src4.items()}
            grp.nofp_dst4 = {k.to_bytes(2, "big"): v for k, v in grp.nofp_dst4.items()}
            ports = set(grp.port_prefilters) | set(grp.nofp_port) | {-1 - p for p in grp.nofp_sport}
            for pf in grp.prefilters.values():
                ports |= pf.port_keys
            grp.route_ports = frozenset(ports)
        self.xbits: OrderedDict = OrderedDict()
        self.thresholds: OrderedDict = OrderedDict()
        self.evaluated = 0          # full rule evaluations (for profiling/benchmarks)
        self._bufcache: dict = {}   # transaction buffers built for the current packet
        self._routes: dict = {}     # _route key -> route
        self._eval_memo: dict = {}  # (rule, its buffers) -> _tx_match's answer (_tx_match_memo)
        self._pkt_events: tuple = (None, frozenset())   # (packet, its decoder events), for decode-event rules
        self._decoder_only: list | None = None          # decode-event-only rules, built on first use

    def __len__(self) -> int:
        return len(self.rules)

    def decoder_event_matches(self, pkt, events, decoded: bool) -> list[Match]:
        """Rules firing on a packet the decoder refused (decoded False: no header to test) or a fragment the
        defragmenter flagged, as Suricata runs its pkthdr decode-event rules on them: the rules whose only
        conditions are decode-event names (all among `events`) and, on a decoded header, addresses/ports."""
        dec = self._decoder_only
        if dec is None:
            dec = self._decoder_only = sorted((cr for cr in self.rules if _decoder_only(cr)), key=lambda c: c.order)
        out = []
        for cr in dec:
            r = cr.rule
            if not all(e in events for e in r.decode_events):
                continue
            if decoded:
                if (r.ip_version is not None and pkt.version != r.ip_version) or not _addresses_ok(cr.hdr, pkt, False):
                    continue
            elif r.ip_version is not None or not (cr.src_any and cr.dst_any and cr.sport_any and cr.dport_any):
                continue
            out.append(Match(r, None, None, False))
        return out

    # ------------------------------------------------------------------ per packet
    def inspect(self, pkt, flow, to_server: bool, pkt_data: bytes, txs, established: bool | None = None,
                stream_tail: bytes = b"", state: FlowIdsState | None = None) -> list[Match]:
        """Rules matching this packet. `pkt_data` is the payload / stream bytes to inspect; `txs` is a list of
        (app, tx) the app-layer stage updated on this packet; `established` is the flow state as the packet
        found it (see flow_state); `stream_tail` the stream bytes just before pkt_data (the last STREAM_WINDOW count):
        window rules (_window_ok) are tried on tail + pkt_data when their fast pattern lies in the last `lead`
        bytes of the tail + pkt_data and they fail on pkt_data alone; they match when they do not already match
        the tail alone. (Not caught: a fast pattern lying wholly in the tail before its last `lead` bytes while a
        later content completes now.) Returns matches in evaluation order, after flowbits/thresholds were
        applied; a matching pass rule stops the evaluation. `state` is the flow's FlowIdsState when the caller
        holds it."""
        if state is None:
            state = flow.state.get("ids")
            if state is None:
                state = flow_state(flow)
        # what a packet of this flow direction meets (group, databases, no-fast-pattern rules) depends only on
        # its addresses and ports, which the flow fixes: worked out on its first packet
        route = state.routes[to_server]
        if route is None or route[0] is not self:
            route = state.routes[to_server] = self._route(pkt, to_server)
        grp = route[1]
        if grp is None:
            return []
        parts: list = []                   # lists/tuples of candidate packet-rule indexes
        window = None
        seam_cands = ()
        if pkt_data:
            scan = pkt_data
            lead = self.lead
            if lead and route[4]:
                # TCP databases expect `lead` bytes of the stream before the new ones (padding when there are
                # fewer): one scan finds both the fast patterns in pkt_data and those spanning the seam with
                # the previous segment (content split over segments)
                if stream_tail:
                    before = stream_tail[-lead:]
                    if len(before) < lead:
                        before = self._pad[len(before):] + before
                else:
                    before = self._pad
                scan = before + pkt_data
            for pf, dport, sport in route[2]:
                found = pf.scan(scan, dport, sport, flow.app_proto)
                if found:
                    parts += found
            if stream_tail and parts:
                # the window rules among them may complete on tail + pkt_data
                window_ok = self.window_ok
                seam_cands = {i for lst in parts for i in lst if window_ok[i]}
        if route[3] and not self.eof:
            parts.append(route[3])
        if not parts and not txs:
            return []
        cands: set[int] = set()
        if parts:
            cands.update(*parts)
        # (read-only empty ones unless the packet updated transactions)
        tx_cands: dict[int, list] = _EMPTY      # transaction rule candidates -> the (app, tx) to try
        txversions: dict[int, tuple] = _EMPTY
        # id(tx) -> the tx's memo in state.scans: its buffers' last scans (kind -> (version, hits)), the
        # candidates of its last update (-1), and the versions each rule i failed on (-2 - i)
        txmemos: dict[int, dict] = _EMPTY
        if txs:
            tx_cands, txversions, txmemos = {}, {}, {}
            self._bufcache = {}
            scans = None
            dport, sport = pkt.dport, pkt.sport
            tx_dirs = self.tx_dirs
            for app, tx in txs:
                pair = (app, tx)
                found = None        # the candidates: the last update's when nothing changed, else built below
                whole = getattr(tx, "partial_of", None) or tx
                versions = _tx_versions(app, tx, to_server, None if self.eof else self.body_defer)
                txversions[id(tx)] = versions
                kinds = grp.tx_kinds.get((app, to_server), ())
                hgroup = None
                memo = _EMPTY
                if versions is not None:
                    # an HTTP transaction is updated by every body segment while its other buffers stay the same:
                    # each buffer's last scan is reused until the part of the tx it comes from changes
                    if scans is None:
                        scans = state.scans
                        if scans is _EMPTY:
                            scans = state.scans = {}
                        elif len(scans) > MAX_SCAN_MEMORY:
                            scans.clear()
                    key = (id(whole), to_server, dport, sport)
                    memo = scans.get(key)
                    if memo is None or memo[0] is not whole:
                        memo = scans[key] = (whole, {})
                    memo = txmemos[id(tx)] = memo[1]
                    last = memo.get(-1)
                    if last is not None and last[0] == versions:
                        # nothing detection can see changed (a body segment while the body waits for its
                        # inspection): the candidates of the last update
                        found = last[1]
                        kinds = ()
                    elif type(tx) is HttpTransaction:
                        hg = grp.header_groups.get(to_server)
                        if hg is not None:
                            hgroup, kinds = hg
                            ghits = None
                if found is None:
                    found = set(grp.tx_nofp.get(app, ()))
                for kind, bufs in kinds:
                    sig = versions[kind] if versions is not None else None
                    prev = memo.get(kind)
                    if prev is not None and sig is not None and prev[0] == sig:
                        found.update(prev[1])
                        continue
                    hits = set()
                    if sig == 0 and kind in _BODY_KINDS:
                        pass        # no body bytes (none sent, or none due for inspection yet): nothing to scan
                    elif kind in _BODY_KINDS and prev is not None and sig is not None and prev[0] is not None \
                            and sig > prev[0]:
                        # a growing body: scan only what was added (plus a pattern's length of overlap)
                        hits.update(prev[1])
                        for name, transforms, pf, _ in bufs:
                            if name == "file.data" and not to_server and not transforms and \
                                    type(tx) is HttpTransaction:
                                # a response body segment: only the new bytes are copied out of the body for
                                # the scan (the whole buffer is built only if a candidate rule reads it)
                                for tup in pf.scan(tx.response_body[max(0, prev[0] - pf.max_len + 1):], dport,
                                                   sport):
                                    hits.update(tup)
                                continue
                            scan_bufs, sliceable = self._prefilter_buffers(app, tx, name, to_server)
                            for buf in scan_bufs:
                                start = max(0, prev[0] - pf.max_len + 1) if sliceable else 0
                                if transforms:
                                    # offsets of the raw body do not hold in a transformed one (url_decode,
                                    # strip_whitespace shorten it): scan all of it
                                    buf = apply_transforms(buf, transforms)
                                    start = 0
                                for tup in pf.scan(buf[start:], dport, sport):
                                    hits.update(tup)
                    elif kind in _BODY_KINDS:
                        for name, transforms, pf, _ in bufs:
                            for buf in self._prefilter_buffers(app, tx, name, to_server)[0]:
                                if transforms:
                                    buf = apply_transforms(buf, transforms)
                                for tup in pf.scan(buf, dport, sport):
                                    hits.update(tup)
                    else:
                        # the kinds' getters serve whole HTTP transactions and TLS sessions (not a request line
                        # view, nor a file)
                        is_http = type(tx) in _GETTER_TX
                        bufcache = self._bufcache
                        if hgroup is not None and kind in hgroup.kinds:
                            # the buffers that come from the header list alone: one remembered answer for all
                            if ghits is None:
                                ghits = hgroup.hits(tx, dport, sport, bufcache)
                            hits.update(ghits[kind])
                        txid = id(tx)
                        for name, transforms, pf, get in bufs:
                            # headers, hosts, user agents repeat from tx to tx: remembered scans (prefilter.py)
                            if get is not None and is_http:
                                buf = get(tx)
                                if not buf:
                                    continue        # (a candidate rule reading it gets [] from _buffers)
                                # kept for the candidate rules (what _buffers would build)
                                bufcache[(txid, name, to_server)] = [buf]
                                if transforms:
                                    buf = apply_transforms(buf, transforms)
                                try:
                                    pids = pf.memo.get(buf)
                                except TypeError:   # (a bytearray: not remembered, scanned each time)
                                    pids = None
                                if pids is None:
                                    pids = pf.find_memo(buf)
                                if pids:            # (most buffers were seen before with none of the patterns)
                                    hits.update(*pf.rule_tuples(pids, dport, sport))
                                continue
                            # (the multipart special case of _prefilter_buffers is a body's: not these kinds)
                            for buf in self._buffers(app, tx, name, to_server):
                                if transforms:
                                    buf = apply_transforms(buf, transforms)
                                hits.update(*pf.scan_memo(buf, dport, sport))
                    if versions is not None:
                        memo[kind] = (sig, hits or ())      # (most hit nothing: no set kept per kind and flow)
                    found.update(hits)
                if kinds and versions is not None:
                    memo[-1] = (versions, found or ())
                for i in found:
                    if tx_dirs[i] is not None and tx_dirs[i] != to_server:
                        continue
                    tl = tx_cands.get(i)
                    if tl is None:
                        tx_cands[i] = [pair]
                    else:
                        tl.append(pair)
        if grp.tx_in_pkt and cands:
            # transaction rules whose fast pattern sits in pkt_data: candidates for every updated tx
            is_tx = self.is_tx
            for i in [i for i in cands if is_tx[i]]:
                cands.discard(i)
                if txs:
                    cr = self.rules[i]
                    tl = tx_cands.setdefault(i, [])
                    for pair in txs:
                        if (cr.app is None or cr.app == pair[0]) and pair not in tl:
                            tl.append(pair)
        if not cands and not tx_cands:
            return []
        if tx_cands:
            cands.update(tx_cands)
        order = sorted(cands)
        rules = self.rules
        if established is None:
            established = _established(flow)
        out: list[Match] = []
        # payload from reassembled stream bytes (TCP Fast Open data on a SYN included: stream.py)
        stream_pkt = pkt.proto == PROTO_TCP and flow.streams is not None
        # IP-only rules: the first packet each way; every packet of a GRE carrier, for which Suricata sets up no
        # flow (DecodeGRE)
        first = (flow.pkts_toserver if to_server else flow.pkts_toclient) == 1 or pkt.proto == _PROTO_GRE
        # _header's answers for this packet by header tuple (rules with equal headers share one: _intern_headers),
        # for the headers without rare conditions (those depend on the rule itself and on flowbits)
        hdr_ok: dict[int, bool] = {}
        for i in order:
            cr = rules[i]
            tl = tx_cands.get(i)
            scope = cr.flow_scope
            if tl is None:
                if cr.is_tx or (cr.ip_only and not first):
                    continue
                hdr = cr.hdr
                ok = None if hdr[3] else hdr_ok.get(id(hdr))
                if ok is None:
                    ok = self._header(cr, pkt, flow, to_server, state, established)
                    if not hdr[3]:
                        hdr_ok[id(hdr)] = ok
                if not ok:
                    continue
                data = pkt_data
                if cr.stream_mode is not None and pkt.proto == PROTO_TCP:
                    # flow:no_stream / tcp-pkt: the packet's own payload; only_stream / tcp-stream: only
                    # reassembled bytes of a tracked stream
                    if cr.stream_mode == "no":
                        data = pkt.payload
                    elif flow.streams is None:
                        continue
                if cr.needs_payload and not data:
                    continue
                self.evaluated += 1
                if not _all_match(cr.pkt_lists, data):
                    # content split over segments: completed by this packet's bytes
                    if not stream_tail or data is not pkt_data or \
                            not (cr.window_ok == 2 or (cr.window_ok and i in seam_cands)):
                        continue
                    if window is None:
                        stream_tail = stream_tail[-STREAM_WINDOW:]  # (the stage may hand a longer one: its last data)
                        window = stream_tail + pkt_data
                    if not _all_match(cr.pkt_lists, window) or _all_match(cr.pkt_lists, stream_tail):
                        continue
                matched = [(None, None)]
                # a match on reassembled stream bytes acts on the flow (Suricata's STREAM_MATCH)
                scope = scope or (cr.needs_payload and stream_pkt and cr.stream_mode != "no")
            else:
                # first drop the transactions this rule already alerted on, or failed on with the same
                # buffers (Suricata's per-transaction detect state), then check the header once
                txmem = state.tx
                matched = []
                header_ok = False       # checked once, before the first transaction left to evaluate
                for app, tx in (_per_file(tl, to_server) if cr.per_file else tl):
                    if cr.app is not None and cr.app != app:
                        continue
                    whole = getattr(tx, "partial_of", None) or tx   # alerts are per whole transaction
                    seen = txmem.get(id(whole))
                    if seen is not None and seen[0] is whole and i in seen[1]:
                        continue
                    fmemo = sig = None
                    if not cr.pkt_lists and cr.kinds is not None:
                        versions = txversions.get(id(tx))
                        if versions is not None:
                            sig = cr.version_sig(versions)
                            fmemo = txmemos[id(tx)]
                            if fmemo.get(-2 - i) == sig:
                                continue        # failed on these very buffers before
                    if not header_ok:
                        hdr = cr.hdr
                        ok = None if hdr[3] else hdr_ok.get(id(hdr))
                        if ok is None:
                            ok = self._header(cr, pkt, flow, to_server, state, established)
                            if not hdr[3]:
                                hdr_ok[id(hdr)] = ok
                        if not ok:
                            break
                        header_ok = True
                    self.evaluated += 1
                    if not (self._tx_match_memo(cr, app, tx, to_server) if cr.memo_ok else
                            self._tx_match(cr, app, tx, to_server, pkt_data)):
                        if fmemo is not None:
                            fmemo[-2 - i] = sig
                        continue
                    if txmem is _EMPTY:
                        txmem = state.tx = OrderedDict()
                    seen = txmem.get(id(whole))
                    if seen is None or seen[0] is not whole:
                        seen = txmem[id(whole)] = (whole, set())
                        if len(txmem) > MAX_TX_MEMORY:
                            txmem.popitem(last=False)
                    seen[1].add(i)
                    matched.append((app, tx))
            if not matched:
                continue
            rule = cr.rule
            for app, tx in matched:
                self._post_match(cr, pkt, flow, state)
                if (rule.threshold is not None or rule.detection_filter is not None) and \
                        not self._threshold_ok(rule, pkt, flow):
                    continue
                # noalert rules are returned too: no event, but their action (drop, pass) still applies
                out.append(Match(rule, tx, app, scope))
            if rule.action == "pass" and out and out[-1].rule is rule:
                break
        return out

    def _route(self, pkt, to_server: bool) -> tuple:
        """(engine, group, payload scans [(database, dport, sport)], sorted no-fast-pattern candidates, whether the
        payload scans take the stream lead (TCP)) for the packets of one flow direction: the packet's addresses
        and ports pick them, and the flow fixes those. Shared by the flows whose ports and /16s select the same
        (an ephemeral client port or an address no rule names counts as none)."""
        proto = pkt.proto
        g = PROTO_ICMP if proto == PROTO_ICMPV6 else proto if proto in _GROUPS else 0
        grp = self.groups.get(g)
        if grp is None:
            return (self, None, (), (), False)
        keys = grp.route_ports
        dport = pkt.dport if pkt.dport in keys else _NO_PORT
        sport = pkt.sport if -1 - pkt.sport in keys else _NO_PORT
        if pkt.version == 4:
            src16 = pkt.src[:2]
            src16 = src16 if src16 in grp.nofp_src4 else None
            dst16 = pkt.dst[:2]
            dst16 = dst16 if dst16 in grp.nofp_dst4 else None
        else:
            src16 = dst16 = 6
        key = (g, to_server, dport, sport, src16, dst16)
        route = self._routes.get(key)
        if route is not None:
            return route
        scans = []
        pf = grp.prefilters.get("pkt_data" if to_server else _PKT_DATA_TO_CLIENT)
        if pf is not None:
            scans.append((pf, dport, sport))
        for pk in (dport, -1 - sport):
            pf = grp.port_prefilters.get(pk)
            if pf is not None:
                scans.append((pf, _NO_PORT, _NO_PORT))
        nofp = set(grp.nofp_any)
        nofp.update(grp.nofp_port.get(dport, ()))
        nofp.update(grp.nofp_sport.get(sport, ()))
        if src16 == 6:
            nofp.update(grp.nofp_addr6)
        else:
            nofp.update(grp.nofp_src4.get(src16, ()))
            nofp.update(grp.nofp_dst4.get(dst16, ()))
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        route = self._routes[key] = (self, grp, tuple(scans), tuple(sorted(nofp)), g == PROTO_TCP)
        return route

    def _buffers(self, app: str, tx, name: str, to_server) -> list[bytes]:
        """_tx_buffers, built once per packet (the prefilter and every candidate rule share them)."""
        key = (id(tx), name, to_server)
        cache = self._bufcache
        bufs = cache.get(key)
        if bufs is None:
            if self.body_defer is not None and app == "http" and name in _BODY_OF and \
                    not self.body_due(tx, _BODY_OF[name] if _BODY_OF[name] is not None else to_server is not False):
                bufs = cache[key] = []      # not yet inspected (Suricata returns no buffer either)
            elif app == "smtp" and self.body_defer is not None and not self.eof and not _smtp_due(tx):
                bufs = cache[key] = []      # IDS mode: the mail's files wait (see _smtp_due)
            else:
                bufs = cache[key] = _tx_buffers(app, tx, name, to_server)
        return bufs

    def body_due(self, tx, request: bool) -> bool:
        """Whether an HTTP body may be inspected now (always, unless body_defer): complete, at its minimal
        inspect size, or the flow ending. `tx` may be a file of a transaction (HttpFile)."""
        defer = self.body_defer
        return defer is None or self.eof or _body_due(getattr(tx, "tx", None) or tx, request, defer)

    def _prefilter_buffers(self, app: str, tx, name: str, to_server: bool) -> tuple[list, bool]:
        """What the prefilter scans for a buffer kind, and whether a growing body may be scanned from where
        the last scan stopped. A completed multipart upload's file.data is one buffer per file, while the
        http.request_body rules that share its database read the raw body: both are scanned."""
        bufs = self._buffers(app, tx, name, to_server)
        if name == "file.data" and to_server and app == "http" and getattr(tx, "partial_of", None) is None \
                and tx.multipart_upload() and self.body_due(tx, True):
            return bufs + [bytes(tx.request_body)], False
        return bufs, True

    # ------------------------------------------------------------------ conditions
    def _header(self, cr: _CRule, pkt, flow, to_server: bool, state, established: bool) -> bool:
        hdr = cr.hdr
        app_proto, fdir, fest, rare, _, _, _, _, transactional, _ = hdr
        if app_proto is not None and flow.app_proto != app_proto:
            return False
        if fdir is not None and fdir != to_server:
            return False
        if fest is not None and established != fest:
            return False
        # the rare conditions before the address groups: they are cheaper and reject more candidates (a
        # dsize:80 rule whose fast pattern hit a DNS answer)
        if rare and not self._header_rare(cr, pkt, flow, to_server, state):
            return False
        # a transactional rule names the request's addresses; a response has them the other way round
        return _addresses_ok(hdr, pkt, transactional and not to_server)

    def _header_rare(self, cr: _CRule, pkt, flow, to_server: bool, state) -> bool:
        """_header's conditions that few rules have (the flag in _CRule.hdr)."""
        r = cr.rule
        if r.flags is not None and (pkt.proto != PROTO_TCP or not r.flags.matches(pkt.tcp_flags)):
            return False
        if r.dsize is not None and (not r.dsize.matches(len(pkt.payload)) or
                                    cr.dsize_needs_payload and not pkt.payload):
            return False
        if r.ttl is not None and not r.ttl.matches(pkt.ttl):
            return False
        if r.ip_proto is not None and not r.ip_proto.matches(pkt.proto):
            return False
        if r.itype is not None and (pkt.icmp_type < 0 or not r.itype.matches(pkt.icmp_type)):
            return False
        if r.icode is not None and (pkt.icmp_code < 0 or not r.icode.matches(pkt.icmp_code)):
            return False
        if r.stream_size and not all(_stream_size(ss, flow) for ss in r.stream_size):
            return False
        if r.app_protocols and not _alproto_ok(r, flow, pkt, to_server):
            return False
        if cr.reads_bits and not self._bits_ok(r, state.bits):
            return False
        if r.xbits and not self._xbits_ok(r, pkt):
            return False
        if r.flowints and not _flowints_ok(r, state.ints):
            return False
        return not cr.pkt_fields or self._pkt_fields_ok(cr, pkt, flow)

    def _pkt_fields_ok(self, cr: _CRule, pkt, flow) -> bool:
        """ipv4/ipv6 rules, header keywords (ack, icmp_id, ipopts, ...), decode-event, stream-event, header
        buffers."""
        r = cr.rule
        if r.ip_version is not None and pkt.version != r.ip_version:
            return False
        for pc in r.pkt_checks:
            v = field_value(pkt, pc.field)
            if v is None or not pc.test.matches(v):
                return False
        if r.decode_events:
            evs = self._pkt_events
            if evs[0] is not pkt:
                evs = self._pkt_events = (pkt, packet_events(pkt))
            if not all(e in evs[1] for e in r.decode_events):
                return False
        if r.stream_events:
            # the names the stream stage raised on this packet (empty for nearly all)
            evs = stream_events(flow, pkt)
            if not all(e in evs for e in r.stream_events):
                return False
        for ml in cr.hdr_lists:
            buf = header_buffer(pkt, ml.buffer)
            if ml.transforms:
                buf = apply_transforms(buf, ml.transforms)
            if not buf or not match_list(ml, buf):
                return False
        return True

    @staticmethod
    def _bits_ok(r: Rule, bits: set) -> bool:
        for op in r.flowbits:
            if op.command == "isset":
                ok = any(n in bits for n in op.names) if op.any_of else all(n in bits for n in op.names)
            elif op.command == "isnotset":
                ok = any(n not in bits for n in op.names) if op.any_of else all(n not in bits for n in op.names)
            else:
                continue
            if not ok:
                return False
        return True

    def _xbit_key(self, op, pkt):
        # ip_src / ip_dst bits live on the host (Suricata's host table): one bit whichever side set it
        if op.track == "ip_src":
            return (op.name, "h", pkt.src)
        if op.track == "ip_dst":
            return (op.name, "h", pkt.dst)
        a, b = sorted((pkt.src, pkt.dst))
        return (op.name, "p", a, b)

    def _xbits_ok(self, r: Rule, pkt) -> bool:
        for op in r.xbits:
            if op.command not in ("isset", "isnotset"):
                continue
            exp = self.xbits.get(self._xbit_key(op, pkt))
            present = exp is not None and (exp == 0 or exp >= pkt.ts)
            if present != (op.command == "isset"):
                return False
        return True

    def _tx_match_memo(self, cr: _CRule, app: str, tx, to_server: bool) -> bool:
        """_tx_match for a rule whose answer depends on its buffers alone (_CRule.memo_ok), remembered by their
        contents: user agents, header sets and hosts repeat from client to client, so most evaluations of such a
        rule meet buffers it has already seen. Bounded (EVAL_MEMO entries of buffers up to EVAL_MEMO_LEN)."""
        key = [cr.idx]
        for ml, direction in cr.tx_lists:
            bufs = self._buffers(app, tx, ml.buffer, to_server if direction is None else direction)
            for b in bufs:
                if len(b) > EVAL_MEMO_LEN:
                    return self._tx_match(cr, app, tx, to_server, b"")
            key.append(tuple(bufs))
        key = tuple(key)
        memo = self._eval_memo
        ok = memo.get(key)
        if ok is None:
            ok = memo[key] = self._tx_match(cr, app, tx, to_server, b"")
            if len(memo) > EVAL_MEMO:
                memo.clear()
        return ok

    def _tx_match(self, cr: _CRule, app: str, tx, to_server: bool, pkt_data: bytes) -> bool:
        r = cr.rule
        if cr.pkt_lists and (not pkt_data or not _all_match(cr.pkt_lists, pkt_data)):
            return False
        if r.urilen is not None:
            if app != "http":
                return False
            uri = tx.uri_raw if r.urilen_raw else tx.uri
            if not tx.request_line or not r.urilen.matches(len(uri)):
                return False
        if r.tls_version is not None and (app != "tls" or tx.version != r.tls_version):
            return False
        if r.app_events:
            events = _tx_events(app, tx, to_server)
            if not all(e in events for e in r.app_events):
                return False
        for ti in r.tx_ints:
            if not _tx_int(app, tx, to_server, ti):
                return False
        for algo, digests, negated in r.file_hashes:
            d = tx.digest(algo) if app == "http" and hasattr(tx, "digest") else None
            if d is None or (d in digests) == negated:
                return False
        for ml, direction in cr.tx_lists:
            d = to_server if direction is None else direction
            bufs = self._buffers(app, tx, ml.buffer, d)
            if not bufs:
                return False
            ok = False
            for buf in bufs:
                if ml.transforms:
                    buf = apply_transforms(buf, ml.transforms)
                if match_list(ml, buf):
                    ok = True
                    break
            if not ok:
                return False
        return True

    # ------------------------------------------------------------------ state updates
    def _post_match(self, cr: _CRule, pkt, flow, state) -> None:
        r = cr.rule
        if cr.writes_bits:
            bits = state.bits
            if bits is _NO_BITS:
                bits = state.bits = set()
            for op in r.flowbits:
                c = op.command
                for n in op.names:
                    if c == "set":
                        bits.add(n)
                    elif c == "unset":
                        bits.discard(n)
                    elif c == "toggle":
                        if n in bits:
                            bits.discard(n)
                        else:
                            bits.add(n)
        if r.flowints:
            if state.ints is _EMPTY:
                state.ints = {}
            _flowints_apply(r, state.ints)
        for op in r.xbits:
            key = self._xbit_key(op, pkt)
            if op.command == "set":
                self.xbits[key] = pkt.ts + op.expire if op.expire else 0
                self.xbits.move_to_end(key)
                if len(self.xbits) > MAX_XBITS:
                    self.xbits.popitem(last=False)
            elif op.command == "unset":
                self.xbits.pop(key, None)
            elif op.command == "toggle" and self.xbits.pop(key, None) is None:    # (pops only on a toggle)
                self.xbits[key] = pkt.ts + op.expire if op.expire else 0

    def _threshold_ok(self, r: Rule, pkt, flow) -> bool:
        for th in (r.detection_filter, r.threshold):
            if th is None:
                continue
            if th.track == "by_src":
                tk = pkt.src
            elif th.track == "by_dst":
                tk = pkt.dst
            elif th.track == "by_both":
                tk = (pkt.src, pkt.dst) if pkt.src <= pkt.dst else (pkt.dst, pkt.src)   # either direction
            elif th.track == "by_flow":
                tk = ("flow", flow.flow_id)
            else:
                tk = None
            key = (r.gid, r.sid, th.type, tk)
            ent = self.thresholds.get(key)
            now = pkt.ts
            if ent is None or th.seconds and now - ent[1] > th.seconds:
                # [matches, window start, "both" fired / backoff next alert, unique_on port bitmap]
                ent = [0, now, th.count if th.type == "backoff" else False, 0]
                self.thresholds[key] = ent
                if len(self.thresholds) > MAX_THRESHOLD_ENTRIES:
                    self.thresholds.popitem(last=False)
            if th.unique_on is not None:
                # count each port once per window (a 65536-bit bitmap: 8 KiB at most per entry)
                bit = 1 << (pkt.dport if th.unique_on == "dst_port" else pkt.sport)
                if not ent[3] & bit:
                    ent[3] |= bit
                    ent[0] += 1
            else:
                ent[0] += 1
            n = ent[0]
            t = th.type
            if t == "backoff":
                ok = n == ent[2]
                if ok:
                    ent[2] *= th.multiplier
            elif t == "limit":
                ok = n <= th.count
            elif t == "threshold":
                ok = n >= th.count
                if ok:
                    ent[0] = 0
            elif t == "both":
                ok = n >= th.count and not ent[2]
                if ok:
                    ent[2] = True
            else:   # detection_filter: every match after the first `count`
                ok = n > th.count
            if not ok:
                return False
        return True


_NO_BITS: frozenset = frozenset()
_EMPTY = MappingProxyType({})     # read-only: a write to a container not yet made fails loudly


class FlowIdsState:
    """The engine's per-flow state (flow.state["ids"])."""

    __slots__ = (
        "bits",
        "drop_logged",
        "dropped",
        "est",
        "ints",
        "passed",
        "routes",
        "scans",
        "tails",
        "tx",
    )

    def __init__(self) -> None:
        # the containers are shared empty ones until first written: most flows never set a flowbit or match a
        # transaction rule, and every container a flow keeps is one more for the cyclic GC to walk
        self.bits: set[str] | frozenset = _NO_BITS  # flowbits
        self.tx: OrderedDict = _EMPTY               # id(tx) -> (tx, rule indexes alerted), bounded
        self.est = False                            # established after the previous packet
        self.passed = False                         # a pass rule matched: no more inspection
        self.dropped = False                        # a drop/reject acted on the flow: no more inspection
        self.drop_logged = 0                        # directions (1 to server, 2 to client) given a drop event
        self.scans: dict = _EMPTY                   # per tx: buffer scans, rule failures (inspect, txmemos)
        self.ints: dict[str, int] = _EMPTY          # flowint variables
        self.tails = [b"", b""]                     # last stream bytes to server / to client (STREAM_WINDOW)
        self.routes = [None, None]                  # DetectionEngine._route of the to-client / to-server packets


MAX_FLOWINTS = 256      # per flow: variables beyond this are not created


def _intern_headers(crs: list[_CRule]) -> None:
    """Rules with equal headers (most: `alert http $HOME_NET any -> $EXTERNAL_NET any (flow:established,to_server`)
    share one header tuple, so inspect checks each distinct header once per packet."""
    seen: dict[tuple, tuple] = {}
    for cr in crs:
        cr.hdr = seen.setdefault(cr.hdr, cr.hdr)


def _addresses_ok(hdr: tuple, pkt, swapped: bool) -> bool:
    """A rule's address and port groups (_CRule.hdr; None: any) against the packet's, the other way round too for
    a bidirectional rule, or only that way when `swapped`."""
    _, _, _, _, src, dst, sport, dport, _, bidirectional = hdr
    if not swapped and (src is None or src.contains(pkt.src)) and (dst is None or dst.contains(pkt.dst)) and \
            (sport is None or sport.contains(pkt.sport)) and (dport is None or dport.contains(pkt.dport)):
        return True
    if bidirectional or swapped:
        return ((src is None or src.contains(pkt.dst)) and (dst is None or dst.contains(pkt.src)) and
                (sport is None or sport.contains(pkt.dport)) and (dport is None or dport.contains(pkt.sport)))
    return False


def _flowint_value(op, ints: dict):
    return ints.get(op.value) if isinstance(op.value, str) else op.value


def _flowints_ok(r: Rule, ints: dict) -> bool:
    for op in r.flowints:
        o = op.op
        if o not in _FLOWINT_CONDS:
            continue
        cur = ints.get(op.name)
        if o == "notset":
            if cur is not None:
                return False
            continue
        if cur is None:
            return False
        if o == "isset":
            continue
        val = _flowint_value(op, ints)
        if val is None or not IntCompare("!=" if o == "!=" else "=" if o == "==" else o, val).matches(cur):
            return False
    return True


def _flowints_apply(r: Rule, ints: dict) -> None:
    for op in r.flowints:
        o = op.op
        if o in _FLOWINT_CONDS:
            continue
        val = _flowint_value(op, ints)
        if val is None:
            continue                         # the source variable is not set: nothing to do
        if op.name not in ints and len(ints) >= MAX_FLOWINTS:
            continue
        cur = ints.get(op.name, 0)
        ints[op.name] = val if o == "=" else (cur + val) & 0xFFFFFFFF if o == "+" else max(cur - val, 0)


def _all_match(lists, buf) -> bool:
    """Every match list matches buf (a loop: cheaper than all() over a generator for the usual one list)."""
    for ml in lists:
        if not match_list(ml, buf):
            return False
    return True


def flow_state(flow) -> FlowIdsState:
    state = flow.state.get("ids")
    if state is None:
        state = flow.state["ids"] = FlowIdsState()
    return state


def _established(flow) -> bool:
    if flow.proto == PROTO_TCP:
        return flow.tcp_state in (TCP_ESTABLISHED, TCP_CLOSING)
    return flow.pkts_toserver > 0 and flow.pkts_toclient > 0


def _stream_size(ss, flow) -> bool:
    streams = flow.streams
    if streams is None:
        client = server = 0
    else:
        client, server = streams[0].delivered, streams[1].delivered
    side = ss.side
    cmp = ss.compare
    if side == "server":
        return cmp.matches(server)
    if side == "client":
        return cmp.matches(client)
    if side == "both":
        return cmp.matches(server) and cmp.matches(client)
    return cmp.matches(server) or cmp.matches(client)


# what an HTTP buffer is built from: 0 request line+headers, 1 response line+headers, 2 request body,
# 3 response body; 4 / 5 = headers / body of the packet's own direction; 6 = the file names of the
# packet's direction (they appear with the body, and multipart names once the request is complete)
_BODY_KINDS = (2, 3, 5)
# the HTTP body buffers: True request body, False response body (file.data: the packet's direction)
_BODY_OF = {"http.request_body": True, "http.response_body": False, "file.data": None}


def _version_kind(name: str) -> int:
    if name == "http.request_body":
        return 2
    if name == "http.response_body":
        return 3
    if name == "file.data":
        return 5
    if name == "file.name":
        return 6
    spec = BUFFERS.get(name)
    if spec is None or spec.direction is None:
        return 4
    return 0 if spec.direction == "to_server" else 1


def _body_due(tx, request: bool, defer: tuple[int, int]) -> bool:
    """Suricata's IDS-mode rule for an HTTP body (`defer`: the minimal inspect sizes of request and response
    bodies): inspected once complete or at its minimal inspect size."""
    if request:
        return tx.request_complete or len(tx.request_body) >= defer[0]
    return tx.response_complete or len(tx.response_body) >= defer[1]


def _tx_versions(app: str, tx, to_server: bool, defer: tuple[int, int] | None = None):
    """Per version kind, a value that changes whenever buffers of that kind may have changed; None for
    protocols without (always rescan: DNS and TLS transactions are updated a few times at most). With
    `defer` (DetectionEngine.body_defer) a body waiting for its inspection counts as empty."""
    if app != "http":
        return None
    req = (len(tx.request_line), len(tx.request_headers), getattr(tx, "partial_of", None) is None)
    res = (len(tx.response_line), len(tx.response_headers))
    reqb, resb = len(tx.request_body), len(tx.response_body)
    # file names come with the first body byte (and multipart names once the request is complete)
    if to_server:
        nfiles = len(tx.request_files)
        files = (reqb > 0, nfiles, tx.request_complete)
    else:
        files = (resb > 0, res[1])
    if defer is not None:
        # _body_due, inlined (this runs for every HTTP packet)
        if reqb and not (tx.request_complete or reqb >= defer[0]):
            reqb = 0
        if resb and not (tx.response_complete or resb >= defer[1]):
            resb = 0
    # file.data to_server becomes one buffer per file when a multipart upload is parsed: count that as growth
    if to_server:
        return (req, res, reqb, resb, req, reqb + nfiles, files)
    return (req, res, reqb, resb, res, resb, files)


def _smtp_due(tx) -> bool:
    """IDS mode (body_defer): when a mail's files are inspected. Suricata's IDS mode parses the client's bytes once
    the server has acknowledged them, so a mail's end is seen with (or just before) the server's answer to it:
    the files are inspected once the mail is answered (tx.complete), when one reaches Suricata's
    content-inspect-min-size, or when the flow ends (engine.eof)."""
    return tx.complete or any(f.size >= SMTP_INSPECT_MIN_SIZE for f in tx.files)


def _per_file(pairs, to_server: bool):
    """(app, tx) pairs -> (app, file) for each file of the HTTP transactions (applayer/http.py HttpFile)."""
    for app, tx in pairs:
        if app != "http":
            yield app, tx
        elif getattr(tx, "partial_of", None) is None:      # a request still in its headers has no file
            for f in tx.files(to_server):
                yield app, f


def _alproto_ok(r: Rule, flow, pkt, to_server: bool) -> bool:
    """app-layer-protocol (Suricata DetectAppLayerProtocolPacketMatch): the protocol known for the mode's
    direction(s) must be (or, negated, must not be) the rule's; an unknown protocol never matches."""
    st = flow.state.get("applayer")
    if st is None or flow.app_proto is None:
        return False
    if r.pd_only and st.pd_pkt[to_server] is not pkt:
        return False
    known = st.known
    for proto, negated, mode in r.app_protocols:
        if mode == "direction":
            ok = known[to_server]
        elif mode == "to_server":
            ok = known[True]
        elif mode == "to_client":
            ok = known[False]
        elif mode == "either":
            ok = known[True] or known[False]
        else:           # final / orig: the flow's protocol (we never change it after detection)
            ok = True
        if not ok or (flow.app_proto == proto) == negated:
            return False
    return True


_HTTP_MULTI = frozenset(("http.request_header", "http.response_header", "file.name", "file.data"))


def _tx_int(app: str, tx, to_server: bool, ti) -> bool:
    """dns.opcode / dns.rrtype on the message of this direction (Suricata detect_uint_match_at_index for
    the multi-integer rrtype: queries to_server, answers to_client)."""
    if app == "tls":
        # certificate validity of the server certificate (we do not parse client certificates)
        if to_server:
            return False
        v = tx.not_before_epoch if ti.field == "tls_cert_notbefore" else tx.not_after_epoch
        return v is not None and ti.compare.matches(v)
    if app != "dns":
        return False
    msg = tx.query if to_server else tx.response
    if msg is None:
        return False
    cmp = ti.compare
    if ti.field == "dns.opcode":
        return cmp.matches(msg.opcode)
    values = [q[1] for q in msg.questions] if to_server else [rr.rrtype for rr in msg.answers]
    index = ti.index
    if index == "any":
        return any(cmp.matches(x) for x in values)
    if index == "or_absent":
        return not values or any(cmp.matches(x) for x in values)
    if index == "all":
        return bool(values) and all(cmp.matches(x) for x in values)
    if index == "all_or_absent":
        return all(cmp.matches(x) for x in values)
    if index < 0:
        index += len(values)
    return 0 <= index < len(values) and cmp.matches(values[index])


def _tx_events(app: str, tx, to_server: bool) -> list[str]:
    """The app-layer-event names a transaction carries (DNS: those of the message of this direction, as
    Suricata's DNS request and response are separate transactions)."""
    if app == "dns":
        msg = tx.query if to_server else tx.response
        return msg.anomalies if msg is not None else []
    return getattr(tx, "anomalies", None) or []


def _tx_buffers(app: str, tx, name: str, to_server: bool | None) -> list[bytes]:
    """The buffers a transaction offers for keyword `name` (a list: DNS and TLS have multi-buffers)."""
    try:
        if app == "http":
            if name in _HTTP_MULTI:
                # a RequestLineView (headers still arriving) offers no header buffers yet
                return [] if getattr(tx, "partial_of", None) is not None else tx.buffers(name, to_server)
            b = tx.buffer(name, to_server if to_server is not None else True)
            return [b] if b else []
        if app == "dns":
            return [b for b in tx.buffers(name, to_server) if b is not None]
        if app == "tls":
            return [b for b in tx.buffers(name) if b]
        if app == "ssh" or app == "smtp":
            return tx.buffers(name, to_server)
    except (KeyError, ValueError):
        return []
    return []
