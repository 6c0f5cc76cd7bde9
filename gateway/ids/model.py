"""The rule model: what a parsed, normalised and validated Suricata rule holds for the detection engine.

A `Rule` is the header - `action`; `proto` as written, with the IP protocol numbers it covers in `ip_protos`
(None = any) and the application protocol it needs in `app_proto` (from the header, e.g. `alert http`, or
implied by its buffers, e.g. `http.uri` in an `alert tcp` rule); `src`/`dst` as compiled vars.AddressGroup
and `sport`/`dport` as vars.PortGroup (`contains(packed_addr)` / `contains(port)`); `bidirectional` for `<>`
- its identity (`gid`, `sid`, `rev`, `msg`, `classtype`, `priority` (explicit, else the classtype's, else 3),
`references`, `metadata`, `target`) and its condition. The condition is split the way Suricata splits it:
`buffers` is a tuple of MatchList, one per inspection buffer: `buffer` is a keywords.BUFFERS name
("pkt_data" = the packet payload / reassembled stream; "http.uri", "dns.query", "tls.sni", "file.data", ...)
and `transforms` the transforms applied to it first, e.g. ("dotprefix",). Each list holds its `matches` in
rule order: ContentMatch, PcreMatch, ByteTest, ByteJump, ByteExtract, IsDataAt, BufferSize (bsize), and last
of its list Base64Decode (base64_decode, holding the base64_data matches on the decoded bytes). Legacy
content modifiers (`content:"x"; http_uri;`) and sticky buffers (`http.uri; content:"x";`) produce the same
lists. All matches of a list must hold (AND), evaluated left to right with Suricata's cursor: content, pcre,
byte_jump and byte_extract move the cursor to the end of their match / the bytes they read; a match with `relative` (content: `distance` or
`within` set) is anchored at the cursor (the buffer start when nothing matched before it in that list); a
relative pcre runs on buffer[cursor:] so `^` anchors at the cursor, as in Suricata. PcreMatch.regex is a
compiled Python `re` bytes pattern (flags i/s/m/x applied; PCRE-only spellings rewritten by
keywords.pcre_to_re; what re cannot express was rejected); re has no match limit, so bound the buffer. A negated content/pcre
holds when its pattern is absent from its window and does not move the cursor. Numeric fields typed `Value`
are an int or the name of a variable set by a ByteExtract earlier in the rule. `startswith` is already turned
into offset 0/depth len(pattern); `endswith` anchors the match end at the buffer end. ByteTest.nbytes 0 (only
with `string`) parses the digits at the offset up to the first non-digit.

`fast_pattern` (FastPattern) is the prefilter choice made with Suricata's rules: the content marked
`fast_pattern`, else among the non-negated contents (negated ones only when there are no others) of the
buffers with the best keywords.BUFFERS priority, the longest, then the highest pattern strength, then the
first. It gives the `buffer`/`transforms`, the `pattern` bytes for the multi-pattern DB (already cut by
`fast_pattern:offset,length`), `nocase`, `only` (fast_pattern:only) and where the content sits
(`buffers[list_index].matches[match_index]`). None means the rule has no content: it must be evaluated for
every packet of its protocol/ports. A negated fast pattern (`negated=True`) cannot prefilter either.

Per-packet conditions: `flow` (FlowMatch; `alert tcp-pkt` / `tcp-stream` are normalised into
flow.stream "no" / "only"), `flags` (TcpFlags), `dsize`/`itype`/`icode`/`ttl`/`ip_proto` (IntCompare),
`stream_size` (tuple of StreamSize, all must hold), `urilen` (IntCompare on the normalised URI, or the raw one
when `urilen_raw`), `tls_version`. State: `flowbits` (FlowbitOp, in rule order; the isset/isnotset ones are
conditions, set/unset/toggle act after a match), `xbits` (XbitOp), `noalert`. Rate: `threshold` and
`detection_filter` (Threshold). `tag` is accepted and has no effect on detection. Every keyword that reached
the model must be honoured by the engine: what the parser cannot express here made the rule a rejection
(Rejection: file, line, sid, reason) instead - a rule is never loaded with part of its condition ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .vars import AddressGroup, PortGroup

Value = int | str     # a literal, or the name of a byte_extract variable set earlier in the rule


def printable(text: str) -> str:
    """Rule files are read with surrogateescape (content bytes survive exactly); text shown to people
    (msg, reasons, EVE) must be valid UTF-8, so undecodable bytes become U+FFFD here."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class RuleError(ValueError):
    """A rule that cannot be loaded. `reason` is short and groupable ("unsupported keyword: asn1");
    file/line/sid say where, when known."""

    def __init__(self, reason: str, file: str = "", line: int = 0, sid: int | None = None):
        reason = printable(reason)
        self.reason, self.file, self.line, self.sid = reason, file, line, sid
        where = f"{file}:{line}: " if file else ""
        super().__init__(f"{where}{'sid ' + str(sid) + ': ' if sid is not None else ''}{reason}")


@dataclass(slots=True, eq=True)
class ContentMatch:
    pattern: bytes
    negated: bool = False
    nocase: bool = False
    offset: Value | None = None
    depth: Value | None = None
    distance: Value | None = None
    within: Value | None = None
    startswith: bool = False        # normalised to offset 0, depth len(pattern) as Suricata does
    endswith: bool = False          # the match must end at the end of the buffer
    fast_pattern: bool = False      # chosen as the rule's fast pattern (explicitly or automatically)
    fast_pattern_only: bool = False
    fast_pattern_chop: tuple[int, int] | None = None   # (offset, length) of the part used for prefilter
    explicit_fast_pattern: bool = False

    @property
    def relative(self) -> bool:
        return self.distance is not None or self.within is not None


@dataclass(slots=True, eq=True)
class PcreMatch:
    source: str                     # the regex between the slashes, as written
    flags: str                      # the modifier letters as written, e.g. "Ri"
    regex: object = field(compare=False, default=None)  # compiled re.Pattern (bytes) with the i/s/m/x flags
    negated: bool = False
    relative: bool = False          # R
    nocase: bool = False            # i (already in regex)


@dataclass(slots=True, eq=True)
class ByteTest:
    nbytes: int                     # 0 only with string: parse the digits at the offset up to a non-digit
    operator: str                   # "<", ">", "=", "<=", ">=", "&", "^"
    value: Value
    offset: Value
    negated: bool = False           # "!" before the operator
    relative: bool = False
    endian: str = "big"             # big | little | dce (DCERPC: from the stub's data representation)
    string: str | None = None       # None (binary) | "hex" | "dec" | "oct"
    bitmask: int | None = None


@dataclass(slots=True, eq=True)
class ByteJump:
    nbytes: int
    offset: Value
    relative: bool = False
    multiplier: int = 1
    endian: str = "big"
    string: str | None = None
    align: bool = False
    from_beginning: bool = False
    from_end: bool = False
    post_offset: int = 0
    bitmask: int | None = None


@dataclass(slots=True, eq=True)
class ByteExtract:
    nbytes: int
    offset: int
    name: str
    relative: bool = False
    multiplier: int = 1
    endian: str = "big"
    string: str | None = None
    align: int = 0                  # 0, 2 or 4
    bitmask: int | None = None


@dataclass(slots=True, eq=True)
class IsDataAt:
    size: Value
    negated: bool = False
    relative: bool = False


@dataclass(frozen=True, slots=True)
class IntCompare:
    """x <op> value. op: "=", "!=", "<", ">", "<=", ">=", "<>" (exclusive range lo < x < hi)."""
    op: str
    value: int
    high: int = 0

    def matches(self, x: int) -> bool:
        op = self.op
        if op == "=":
            return x == self.value
        if op == "<":
            return x < self.value
        if op == ">":
            return x > self.value
        if op == "<>":
            return self.value < x < self.high
        if op == "<=":
            return x <= self.value
        if op == ">=":
            return x >= self.value
        return x != self.value


@dataclass(frozen=True, slots=True)
class TxInt:
    """An integer field of an app-layer transaction (`dns.opcode`, `dns.rrtype`) compared with IntCompare.
    For the multi-integers (dns.rrtype: one value per query / answer) `index` is Suricata's: "any" (one
    of them), "all" (every one, and at least one), "all_or_absent", "or_absent" (one of them, or none
    present), or an int position (negative: from the end)."""
    field: str
    compare: IntCompare
    index: str | int = "any"


@dataclass(slots=True, eq=True)
class BufferSize:
    """bsize: the length of the buffer it is in, compared with IntCompare."""
    compare: IntCompare


@dataclass(slots=True, eq=True)
class MatchList:
    buffer: str                     # keywords.BUFFERS name; "pkt_data" is the payload / reassembled stream
    transforms: tuple[str, ...] = ()
    matches: list = field(default_factory=list)   # list[Match], rule order
    # match.py's evaluator for `matches`, made on the first evaluation (matches must not change after it);
    # not part of the rule's identity and never pickled (it is rebuilt on demand)
    compiled: object = field(default=None, compare=False, repr=False)

    def __getstate__(self):
        return (self.buffer, self.transforms, self.matches)

    def __setstate__(self, state):
        self.buffer, self.transforms, self.matches = state
        self.compiled = None

    @property
    def key(self) -> str:
        return "|".join((self.buffer,) + self.transforms)


@dataclass(slots=True, eq=True)
class Base64Decode:
    """base64_decode: decode base64 (base64dec.decode_rfc4648) from the buffer at `offset` (counted from the
    cursor when `relative`), at most `nbytes` bytes of input, and match `data` (the base64_data list) on what
    came out. It is the last keyword of its list (rules.py rejects anything after it: Suricata never inspects
    it) and the list's answer is the decoded data's: nothing decoded, or data not matching, is no match."""
    nbytes: int = 65535             # Suricata's BASE64_DECODE_MAX; `bytes 0` means it too
    offset: int = 0
    relative: bool = False
    data: MatchList = field(default_factory=lambda: MatchList("base64_data"))


Match = ContentMatch | PcreMatch | ByteTest | ByteJump | ByteExtract | IsDataAt | BufferSize | Base64Decode


@dataclass(frozen=True, slots=True)
class FastPattern:
    buffer: str
    transforms: tuple[str, ...]
    pattern: bytes                  # bytes for the prefilter DB (after fast_pattern:o,l chop)
    nocase: bool
    only: bool
    negated: bool
    list_index: int                 # where the content is: rule.buffers[list_index].matches[match_index]
    match_index: int


@dataclass(frozen=True, slots=True)
class FlowMatch:
    established: bool | None = None     # True: established, False: not_established, None: either
    to_server: bool | None = None       # True: to_server/from_client, False: to_client/from_server
    stateless: bool = False
    stream: str | None = None           # "only" (only_stream: reassembled data) | "no" (no_stream: packets)


@dataclass(frozen=True, slots=True)
class TcpFlags:
    """flags: `mode` "exact" (these and no others), "all" (+: these, others allowed), "any" (*: any of
    these), "not" (!: not all of these - Suricata's `(flags & these) != these`); `ignore` bits are masked
    off the packet's flags first."""
    flags: int
    mode: str = "exact"
    ignore: int = 0

    def matches(self, pkt_flags: int) -> bool:
        f = pkt_flags & ~self.ignore & 0xFF
        if self.mode == "exact":
            return f == self.flags
        if self.mode == "all":
            return f & self.flags == self.flags
        if self.mode == "any":
            return f & self.flags != 0 if self.flags else f == 0
        return f & self.flags != self.flags


@dataclass(frozen=True, slots=True)
class PacketCheck:
    """A packet-header condition: `field` (match.PACKET_FIELDS: "tcp.ack", "icmp.id", "ip.fragbits", ...) read
    from the packet, tested with `test.matches(value)` (IntCompare, or TcpFlags for bit sets). A packet without
    that field (another protocol, no MSS option, an ICMP type without an id) does not match, as in Suricata."""
    field: str
    test: IntCompare | TcpFlags


@dataclass(frozen=True, slots=True)
class StreamSize:
    side: str                           # server | client | both | either
    compare: IntCompare


@dataclass(frozen=True, slots=True)
class FlowbitOp:
    command: str                        # set | unset | toggle | isset | isnotset
    names: tuple[str, ...]
    any_of: bool = False                # a|b (isset/isnotset only): isset holds when one of them is set,
                                        # isnotset when one of them is not set (Suricata's OR list)


@dataclass(frozen=True, slots=True)
class XbitOp:
    command: str                        # set | unset | toggle | isset | isnotset
    name: str
    track: str                          # ip_src | ip_dst | ip_pair
    expire: int | None = None           # seconds


@dataclass(frozen=True, slots=True)
class FlowintOp:
    """flowint:name,op[,value]. Conditions ("==", "!=", "<", "<=", ">", ">=", "isset", "notset") hold only for
    a set variable (notset: only for an unset one); "=", "+", "-" change it after the rule matched (an unset
    variable counts as 0). `value` is an int or the name of another flowint of the flow."""
    name: str
    op: str
    value: int | str | None = None


@dataclass(frozen=True, slots=True)
class Threshold:
    type: str                           # limit | threshold | both | backoff | detection_filter
    track: str                          # by_src | by_dst | by_rule | by_both | by_flow
    count: int
    seconds: int                        # 0 for backoff (no time window)
    multiplier: int = 0                 # backoff: next alert at count * multiplier^k
    unique_on: str | None = None        # detection_filter: count distinct src_port / dst_port values


@dataclass(slots=True, eq=False)
class Rule:
    action: str                         # alert | drop | reject | pass
    proto: str                          # as written: ip, tcp, udp, icmp, http, dns, tls, smtp, ftp, tcp-pkt, ...
    ip_protos: frozenset | None         # IP protocol numbers; None = any
    app_proto: str | None               # http | dns | tls | smtp | ftp | None (any / none needed)
    src: AddressGroup
    sport: PortGroup
    dst: AddressGroup
    dport: PortGroup
    bidirectional: bool
    sid: int
    gid: int = 1
    rev: int = 0
    msg: str = ""
    classtype: str | None = None
    priority: int = 3
    references: tuple[tuple[str, str], ...] = ()
    metadata_raw: tuple[str, ...] = ()  # each metadata option as written; see .metadata
    target: str | None = None           # src_ip | dest_ip
    buffers: tuple[MatchList, ...] = ()
    fast_pattern: FastPattern | None = None
    flow: FlowMatch | None = None
    flags: TcpFlags | None = None
    dsize: IntCompare | None = None
    urilen: IntCompare | None = None
    urilen_raw: bool = False            # urilen on the raw URI instead of the normalised one
    itype: IntCompare | None = None
    icode: IntCompare | None = None
    ttl: IntCompare | None = None
    ip_proto: IntCompare | None = None
    stream_size: tuple[StreamSize, ...] = ()
    pkt_checks: tuple[PacketCheck, ...] = ()   # header keywords: ack, seq, window, icmp_id, ipopts, fragbits, ...
    ip_version: int | None = None       # 4 / 6 for `alert ipv4` / `alert ipv6`; None = either
    decode_events: tuple[str, ...] = ()  # decode-event names (decoder_events.EVENTS) the packet must carry
    stream_events: tuple[str, ...] = ()  # stream-event names (stream.STREAM_EVENTS) the packet must carry
    flowbits: tuple[FlowbitOp, ...] = ()
    xbits: tuple[XbitOp, ...] = ()
    flowints: tuple[FlowintOp, ...] = ()
    noalert: bool = False
    threshold: Threshold | None = None
    detection_filter: Threshold | None = None
    tls_version: int | None = None      # tls.version: 0x0300 (SSLv3) .. 0x0304 (TLS 1.3)
    app_events: tuple[str, ...] = ()    # app-layer-event names (without the proto prefix) the tx must carry
    tx_ints: tuple[TxInt, ...] = ()     # dns.opcode / dns.rrtype conditions on the transaction
    # app-layer-protocol: (proto, negated, mode) each; mode direction | final | either | to_server |
    # to_client | orig. pd_only: the rule has no other condition, so (as in Suricata) it is only
    # evaluated on the packet that completed protocol detection for its direction
    app_protocols: tuple[tuple[str, bool, str], ...] = ()
    # filemd5 / filesha1 / filesha256: (algorithm, frozenset of lowercase hex digests, negated) each
    file_hashes: tuple[tuple[str, frozenset, bool], ...] = ()
    pd_only: bool = False
    # reject (= rejectsrc) answers the sender: to_client; rejectdst: to_server; rejectboth: both
    reject_target: str = ""
    tag: str | None = None              # accepted, no effect on detection (tagging of later packets)
    # "=>" (Suricata 8): request and response buffers of one transaction; src/dst name the request's sides
    transactional: bool = False
    file: str = ""
    line: int = 0
    text: str = ""

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """metadata options as (key, value) pairs, e.g. ("signature_severity", "Major")."""
        pairs = []
        for raw in self.metadata_raw:
            for item in raw.split(","):
                key, _, value = item.strip().partition(" ")
                if key:
                    pairs.append((key, value.strip()))
        return tuple(pairs)

    def buffer(self, name: str, transforms: tuple[str, ...] = ()) -> MatchList | None:
        for ml in self.buffers:
            if ml.buffer == name and ml.transforms == transforms:
                return ml
        return None


@dataclass(frozen=True, slots=True)
class Rejection:
    file: str
    line: int
    sid: int | None
    reason: str                         # short and groupable: "unsupported keyword: asn1"
    detail: str = ""                    # specifics, when the reason alone does not say enough


@dataclass(slots=True)
class RuleSet:
    rules: list[Rule]
    rejected: list[Rejection]
    files: tuple[str, ...] = ()
    commented: int = 0                  # commented-out rules seen (not active, not counted)

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejected:
            counts[r.reason] = counts.get(r.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
