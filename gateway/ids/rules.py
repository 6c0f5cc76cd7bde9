"""Suricata rule language parser (Suricata 5-7 syntax): header + options -> model.Rule; rule files -> RuleSet.

    variables = Variables.from_config(config)
    ruleset = load_rules(["a.rules", "b.rules"], variables)          # -> RuleSet(rules, rejected)
    rule = parse_rule('alert tcp any any -> any 80 (msg:"x"; content:"GET"; sid:1;)', variables)

parse_rule returns a Rule or raises RuleError (never anything else). load_rules never raises for a bad rule:
each becomes a Rejection(file, line, sid, reason); an unreadable file raises RuleFileError naming it.
Options are split on `;` not preceded by a backslash, as Suricata does; each `name[:value]` is handed to its
entry in keywords.KEYWORDS. An unknown keyword rejects the rule ("unsupported keyword: NAME").
"""
from __future__ import annotations

import gc
import re
from pathlib import Path

from .classification import Classification, load_classifications
from .header import HEADER_BUFFERS
from .keywords import BUFFERS, KEYWORDS, MULTI_INSTANCE, TRANSFORMS
from .model import (
    Base64Decode,
    ByteExtract,
    ContentMatch,
    FastPattern,
    FlowMatch,
    MatchList,
    PcreMatch,
    Rejection,
    Rule,
    RuleError,
    RuleSet,
)
from .requires import unmet as requires_unmet
from .vars import VarError, Variables

__all__ = ["ACTIONS", "PROTOCOLS", "RuleError", "RuleFileError", "load_rules", "parse_rule"]

ACTIONS = ("alert", "drop", "reject", "pass")
# Suricata's reject variants: which side gets the reset / ICMP unreachable (Rule.reject_target)
_REJECT_ACTIONS = {"rejectsrc": "reject"}
_REJECT_TARGETS = {"reject": "to_client", "rejectdst": "to_server", "rejectboth": "both"}
# rule protocol -> (IP protocol numbers or None for any, app-layer protocol, stream restriction)
PROTOCOLS: dict[str, tuple[frozenset | None, str | None, str | None]] = {
    "ip": (None, None, None),
    "tcp": (frozenset({6}), None, None), "udp": (frozenset({17}), None, None),
    "icmp": (frozenset({1, 58}), None, None), "icmpv4": (frozenset({1}), None, None),
    "icmpv6": (frozenset({58}), None, None),
    "tcp-pkt": (frozenset({6}), None, "no"), "tcp-stream": (frozenset({6}), None, "only"),
    "http": (frozenset({6}), "http", None), "http1": (frozenset({6}), "http", None),
    "dns": (frozenset({6, 17}), "dns", None),
    "tls": (frozenset({6}), "tls", None), "smtp": (frozenset({6}), "smtp", None),
    "ftp": (frozenset({6}), "ftp", None), "ssh": (frozenset({6}), "ssh", None),
    # SMB and DCERPC (over TCP) are detected (applayer/detect.py) but not parsed: their rules inspect the stream
    # bytes (pkt_data) only
    "smb": (frozenset({6}), "smb", None), "dcerpc": (frozenset({6}), "dcerpc", None),
    "ipv4": (None, None, None), "ipv6": (None, None, None),
    "pkthdr": (None, None, None),       # any packet, for decoder-event rules
}
_IP_VERSIONS = {"ipv4": 4, "ipv6": 6}      # `alert ipv4` / `alert ipv6`: ip rules for one IP version
_APP_IP_PROTOS = {"http": frozenset({6}), "tls": frozenset({6}), "smtp": frozenset({6}), "ftp": frozenset({6}),
                  "dns": frozenset({6, 17}), "ssh": frozenset({6}), "smb": frozenset({6}), "dcerpc": frozenset({6})}
# Application protocols whose files/bodies an app-layer parser hands to file.data: HTTP bodies, SMTP
# attachments (applayer/smtp.py).
FILE_DATA_APPS = ("http", "smtp")
MAX_RULE_LEN = 64 * 1024        # Suricata's own limit on one rule's text is 64 KiB
MAX_FILE_BYTES = 256 << 20      # one rule file; the whole ET Open set is ~20 MiB
MAX_OPTIONS = 512

# keywords that are not conditions (identity, rate, output): a rule with app-layer-protocol and only these
# is a protocol-detection-only rule
_PD_ONLY_OK = frozenset(("app-layer-protocol", "msg", "sid", "rev", "gid", "classtype", "priority", "reference",
                         "metadata", "target", "tag", "noalert", "threshold", "detection_filter", "prefilter"))
_SID_RE = re.compile(r"[(;]\s*sid\s*:\s*(\d+)")
_COMMENTED_RULE_RE = re.compile(r"#+\s*(?:" + "|".join(ACTIONS) + r")\s+\S+\s+\S+\s+\S+\s+(?:->|<>)\s")


class RuleFileError(OSError):
    """A rule file that cannot be read; str() names the file and why."""


def _pattern_strength(pat: bytes) -> int:
    # Suricata detect-engine-mpm.c PatternStrength: rarer/more diverse bytes score higher.
    seen = set()
    s = 0
    for c in pat:
        if c in seen:
            s += 1
            continue
        seen.add(c)
        if 65 <= c <= 90 or 97 <= c <= 122:
            s += 3
        elif 32 <= c <= 126 or c in (0, 1, 255):
            s += 4
        else:
            s += 6
    return s


class _Builder:
    """Per-rule parse state the keyword setups write into (see keywords.py)."""

    def __init__(self, classifications):
        self.classifications = classifications
        self.rule_file = ""                       # the rule file (lists a rule names are relative to it)
        self.rule: dict = {}
        self.lists: dict[str, MatchList] = {}
        self.sticky: MatchList | None = None      # the current sticky buffer (may not be registered yet)
        self.sticky_used = True                   # has a match followed the last sticky keyword?
        self.last_cm: ContentMatch | None = None
        self.last_cm_list: MatchList | None = None
        self.last_match = None                    # the last match of any kind, and its list
        self.last_match_list: MatchList | None = None
        self.byte_vars: set[str] = set()
        self.b64: Base64Decode | None = None      # the rule's base64_decode (one at most)
        self.b64_data = False                     # base64_data in force: matches go to self.b64.data
        self.references: list = []
        self.metadata: list = []
        self.flowbits: list = []
        self.xbits: list = []
        self.stream_sizes: list = []
        self.explicit_fast_pattern = False
        self.seen: set[str] = set()
        self.app_needs: list[tuple[str, str]] = []  # (app_proto, keyword)
        self.tcp_needs: list[str] = []

    def single(self, name: str) -> None:
        if name in self.seen:
            raise RuleError(f"{name}: given twice")
        self.seen.add(name)

    def need_app(self, app: str, keyword: str) -> None:
        self.app_needs.append((app, keyword))

    def need_tcp(self, keyword: str) -> None:
        self.tcp_needs.append(keyword)

    def _list(self, buffer: str, transforms: tuple[str, ...] = ()) -> MatchList:
        key = buffer if not transforms else "|".join((buffer,) + transforms)
        ml = self.lists.get(key)
        if ml is None:
            ml = MatchList(buffer, transforms)
            self.lists[key] = ml
            app = BUFFERS[buffer].app_proto
            if app is not None:
                self.app_needs.append((app, buffer))
        return ml

    def set_sticky(self, buffer: str) -> None:
        self._check_sticky_used()
        self._not_after_base64_data(buffer)
        if buffer == "pkt_data":
            self.sticky = None
        else:
            self.sticky = MatchList(buffer)     # registered on its first match (transforms may follow)
            self.sticky_used = False

    def _check_sticky_used(self) -> None:
        if not self.sticky_used:
            raise RuleError(f"sticky buffer {self.sticky.buffer} has no match after it")

    def add_transform(self, name: str) -> None:
        if self.b64_data:
            raise RuleError(f"{name}: transforms cannot apply to base64_data")
        if self.sticky is None:
            raise RuleError(f"{name}: transforms must follow a sticky buffer")
        if self.sticky_used:
            # Suricata 5 (DetectBufferGetActiveList): a transform after matches switches what follows to
            # the transformed buffer; the matches before it stay on the plain one
            self.sticky = MatchList(self.sticky.buffer, self.sticky.transforms)
            self.sticky_used = False
        if name in self.sticky.transforms:
            raise RuleError(f"{name}: given twice for one buffer")
        self.sticky.transforms += (name,)

    def start_base64_data(self) -> None:
        """base64_data: what follows matches the bytes the rule's base64_decode decoded (Suricata's
        DETECT_SM_LIST_BASE64_DATA), to the end of the rule."""
        if self.b64 is None:
            raise RuleError("base64_data: needs a base64_decode before it")
        self._check_sticky_used()
        self._not_after_base64_data("base64_data")
        self.sticky, self.sticky_used, self.b64_data = self.b64.data, False, True
        self.last_cm = self.last_cm_list = None     # content modifiers need a content of base64_data

    def _not_after_base64_data(self, buffer: str) -> None:
        # Suricata: "Rule buffer cannot be reset after base64_data"
        if self.b64_data:
            raise RuleError(f"{buffer}: no other buffer can follow base64_data")

    def add_match(self, match, buffer: str | None = None) -> None:
        if self.b64_data:
            if buffer is not None:
                self._not_after_base64_data(buffer)
            target = self.sticky
            self.sticky_used = True
        elif buffer is not None:
            target = self._list(buffer)
        elif self.sticky is not None:
            target = self.sticky
            if not self.sticky_used:
                key = "|".join((target.buffer,) + target.transforms)
                if target.buffer in MULTI_INSTANCE and key in self.lists:
                    # Suricata 7 multi-buffers: naming the buffer again starts a second instance, which
                    # may match another element (another file, header, query name) than the first
                    self.lists[f"{key}#{len(self.lists)}"] = target
                else:
                    target = self._list(target.buffer, target.transforms)   # merges with an earlier same list
                self.sticky = target
                self.sticky_used = True
        elif (type(match) is Base64Decode or getattr(match, "relative", False) and
              not isinstance(match, (ContentMatch, PcreMatch))) and self.last_match_list is not None:
            # Suricata puts a relative byte_test/byte_jump/byte_extract/isdataat, and any base64_decode, outside
            # a sticky buffer into the buffer of the match before it (`content:"x"; http_uri; isdataat:1,relative;`)
            target = self.last_match_list
        else:
            target = self._list("pkt_data")
        if isinstance(match, PcreMatch) and match.relative and self.sticky is None and not any(
                isinstance(m, (ContentMatch, PcreMatch)) for m in target.matches):
            raise RuleError("pcre: /R (relative) needs a preceding content or pcre in the same buffer")
        target.matches.append(match)
        self.last_match, self.last_match_list = match, target
        if isinstance(match, ContentMatch):
            self.last_cm, self.last_cm_list = match, target

    def last_content(self, keyword: str) -> ContentMatch:
        if self.last_cm is None:
            raise RuleError(f"{keyword}: needs a preceding content")
        return self.last_cm

    def last_content_list(self) -> MatchList:
        return self.last_cm_list

    def move_last_content(self, buffer: str) -> None:
        name = next(k for k, v in KEYWORDS.items() if v.kind == "modifier" and v.buffer == buffer)
        if self.sticky is not None:
            raise RuleError(f"{name}: content modifier cannot be used inside a sticky buffer")
        cm = self.last_content(name)
        src = self.last_cm_list
        if src.buffer != "pkt_data":
            raise RuleError(f"{name}: content already has a buffer modifier")
        for i in range(len(src.matches) - 1, -1, -1):
            if src.matches[i] is cm:
                del src.matches[i]
                break
        if not src.matches:
            del self.lists[src.key]
        target = self._list(buffer)
        target.matches.append(cm)
        self.last_cm_list = target
        if self.last_match is cm:
            self.last_match_list = target


def _select_fast_pattern(lists: list[MatchList]) -> FastPattern | None:
    """Suricata's choice: the explicit fast_pattern; else among non-negated contents (negated ones only
    when there is nothing else) of the highest-priority buffers, the longest, then the strongest,
    then the first."""
    best_key = None
    ties: list = []
    for li, ml in enumerate(lists):
        prio = BUFFERS[ml.buffer].priority
        if ml.buffer in HEADER_BUFFERS:
            continue        # packet headers are matched per packet; the multi-pattern scan is for payloads
        for mi, m in enumerate(ml.matches):
            if type(m) is not ContentMatch:
                continue
            if m.explicit_fast_pattern:
                return _fast_pattern(ml, li, mi, m)
            key = (m.negated, prio, -len(m.pattern))      # smaller is better
            if best_key is None or key < best_key:
                best_key, ties = key, [(li, mi, m)]
            elif key == best_key:
                ties.append((li, mi, m))
    if not ties:
        return None
    li, mi, m = ties[0]
    if len(ties) > 1:
        strongest = -1
        for cand in ties:
            strength = _pattern_strength(cand[2].pattern)
            if strength > strongest:
                strongest, (li, mi, m) = strength, cand
    return _fast_pattern(lists[li], li, mi, m)


def _fast_pattern(ml: MatchList, li: int, mi: int, m: ContentMatch) -> FastPattern:
    m.fast_pattern = True
    pat = m.pattern
    if m.fast_pattern_chop is not None:
        off, ln = m.fast_pattern_chop
        pat = pat[off:off + ln]
    return FastPattern(ml.buffer, ml.transforms, pat, m.nocase, m.fast_pattern_only, m.negated, li, mi)


def _split_options(body: str) -> list[tuple[str, str | None]]:
    """Split the option body at `;` not escaped by an odd run of backslashes; -> [(name, value|None)]."""
    pieces = body.split(";")
    if pieces[-1].strip():
        raise RuleError("options: missing ';' after the last option (or a stray character)")
    del pieces[-1]
    if len(pieces) > MAX_OPTIONS:
        raise RuleError(f"more than {MAX_OPTIONS} options")
    if "\\;" in body:                     # rejoin pieces whose ';' was escaped
        joined, cur = [], None
        for piece in pieces:
            cur = piece if cur is None else cur + ";" + piece
            if cur.endswith("\\") and (len(cur) - len(cur.rstrip("\\"))) % 2 == 1:
                continue
            joined.append(cur)
            cur = None
        if cur is not None:
            raise RuleError("options: missing ';' after the last option")
        pieces = joined
    out = []
    for piece in pieces:
        name, sep, value = piece.partition(":")
        name = name.strip().lower()
        if not name or " " in name or "\t" in name or "\n" in name:
            raise RuleError(f"options: malformed option {piece.strip()[:40]!r}")
        out.append((name, value.strip() if sep else None))
    return out


def _parse_header(header: str, variables: Variables):
    parts = header.split()
    if len(parts) != 7:
        raise RuleError(f"header: expected 'action proto src sport -> dst dport', got {len(parts)} fields")
    action, proto, src, sport, direction, dst, dport = parts
    action = _REJECT_ACTIONS.get(action, action)
    if action not in ACTIONS and action not in _REJECT_TARGETS:
        raise RuleError(f"unsupported action: {action}")
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise RuleError(f"unsupported protocol: {proto}")
    if direction not in ("->", "<>", "=>"):
        raise RuleError(f"header: direction must be ->, <> or =>, got {direction!r}")
    try:
        groups = (variables.address(src), variables.port(sport), variables.address(dst), variables.port(dport))
    except VarError as e:
        raise RuleError(f"header: {e}") from None
    # "=>" (Suricata 8): a transactional rule, request and response of one transaction (addresses as the
    # request's)
    return action, proto, groups, direction == "<>", direction == "=>"


def parse_rule(text: str, variables: Variables | None = None, *, file: str = "", line: int = 0,
               classifications: dict[str, Classification] | None = None) -> Rule:
    """Parse one rule. Raises RuleError (with file/line/sid filled in) for anything we cannot honour."""
    sid = None
    try:
        if variables is None:
            variables = _default_variables()
        text = text.strip()
        if len(text) > MAX_RULE_LEN:
            raise RuleError(f"rule longer than {MAX_RULE_LEN} bytes")
        open_i = text.find("(")
        if open_i < 0 or not text.endswith(")"):
            raise RuleError("rule must be 'header (options)'")
        body = text[open_i + 1:-1]
        m = _SID_RE.search("(" + body)
        if m:
            sid = int(m.group(1)) if len(m.group(1)) < 20 else None
        action, proto, (src, sport, dst, dport), bidir, transactional = _parse_header(text[:open_i], variables)
        b = _Builder(classifications)
        b.rule_file = file
        options = _split_options(body)
        for name, value in options:
            # before anything else: a rule for a newer engine is skipped by its requirement (requires.py)
            if name == "requires":
                why = requires_unmet(value)
                if why:
                    raise RuleError(why)
        for name, value in options:
            kw = KEYWORDS.get(name)
            if kw is None:
                raise RuleError(f"unsupported keyword: {name}")
            kw.setup(b, value)
        if "app_protocols" in b.rule:
            # Suricata's "protocol detection only" signature: app-layer-protocol is its only match
            b.rule["pd_only"] = all(name in _PD_ONLY_OK for name, _ in options)
        return _finish(b, action, proto, src, sport, dst, dport, bidir, file, line, text, classifications,
                       transactional)
    except RuleError as e:
        if e.sid is None and sid is not None:
            e.sid = sid
        e.file, e.line = e.file or file, e.line or line
        e.args = (f"{e.file}:{e.line}: " if e.file else "") + (f"sid {e.sid}: " if e.sid else "") + e.reason,
        raise
    except RecursionError:
        raise RuleError("rule nested too deeply", file, line, sid) from None


_VAR_FIELDS = ("offset", "depth", "distance", "within", "nbytes", "value", "size")   # int or byte_extract name


def _check_byte_vars(lists: list[MatchList]) -> None:
    """A byte_extract variable is read only in the buffer it is extracted from (and that buffer's base64_data):
    each buffer is evaluated on its own here, so a variable used elsewhere would leave the rule unable to match.
    Suricata shares them across a rule's buffers; such a rule is refused rather than loaded dead."""
    def walk(ml: MatchList, inherited: frozenset) -> None:
        defined = set(inherited) | {m.name for m in ml.matches if isinstance(m, ByteExtract)}
        for m in ml.matches:
            for field in _VAR_FIELDS:
                v = getattr(m, field, None)
                if isinstance(v, str) and v not in defined:
                    raise RuleError(f"byte_extract variable {v!r} is used in {ml.buffer} but extracted in another "
                                    "buffer (not supported)")
            if isinstance(m, Base64Decode):
                walk(m.data, frozenset(defined))
    for ml in lists:
        walk(ml, frozenset())


def _finish(b: _Builder, action, proto, src, sport, dst, dport, bidir, file, line, text, classifications,
            transactional: bool = False) -> Rule:
    r = b.rule
    if "sid" not in r:
        raise RuleError("missing sid")
    b._check_sticky_used()
    lists = [ml for ml in b.lists.values() if ml.matches]
    if b.b64 is not None:
        _check_base64(b.b64, lists)
    if b.byte_vars:
        _check_byte_vars(lists)
    ip_protos, app_proto, stream = PROTOCOLS[proto]
    for app, keyword in b.app_needs:
        if app_proto is None:
            app_proto = app
        elif app_proto != app:
            raise RuleError(f"{keyword} needs {app}, but the rule is for {app_proto}")
    if app_proto is not None:
        allowed = _APP_IP_PROTOS[app_proto]
        ip_protos = allowed if ip_protos is None else ip_protos & allowed
        if not ip_protos:
            raise RuleError(f"{app_proto} keywords cannot match protocol {proto}")
    for ml in lists:
        if ml.buffer == "file.data" and app_proto not in (None,) + FILE_DATA_APPS:
            raise RuleError(f"file.data needs {' or '.join(FILE_DATA_APPS)}, but the rule is for {app_proto}")
        if ml.buffer == "file.data" and ip_protos is not None and 6 not in ip_protos:
            raise RuleError(f"file.data needs TCP, but the rule is for {proto}")
        if ml.buffer == "http.host" and any(isinstance(m, ContentMatch) and not m.nocase and
                                            m.pattern != m.pattern.lower() for m in ml.matches):
            raise RuleError("http.host content has uppercase characters; the buffer is lowercase (use nocase)")
    if not transactional:
        _check_directions(lists, r, r.get("flow"))
    if b.tcp_needs and ip_protos is not None and 6 not in ip_protos:
        raise RuleError(f"{b.tcp_needs[0]} needs TCP, but the rule is for {proto}")
    flow = r.get("flow")
    if stream is not None:
        if flow is not None and flow.stream not in (None, stream):
            raise RuleError(f"flow stream option conflicts with protocol {proto}")
        flow = FlowMatch(flow.established, flow.to_server, flow.stateless, stream) if flow else \
            FlowMatch(stream=stream)
    classtype = r.get("classtype")
    priority = r.get("priority")
    if priority is None:
        cls = classifications.get(classtype) if (classifications and classtype) else None
        priority = cls.priority if cls else 3
    return Rule(
        action="reject" if action in _REJECT_TARGETS else action,
        reject_target=_REJECT_TARGETS.get(action, ""), proto=proto, ip_protos=ip_protos, app_proto=app_proto, src=src, sport=sport,
        dst=dst, dport=dport, bidirectional=bidir, transactional=transactional, sid=r["sid"],
        gid=r.get("gid", 1), rev=r.get("rev", 0),
        msg=r.get("msg", ""), classtype=classtype, priority=priority, references=tuple(b.references),
        metadata_raw=tuple(b.metadata), target=r.get("target"), buffers=tuple(lists),
        fast_pattern=_select_fast_pattern(lists), flow=flow, flags=r.get("flags"), dsize=r.get("dsize"),
        urilen=r.get("urilen"), urilen_raw=r.get("urilen_raw", False), itype=r.get("itype"),
        icode=r.get("icode"), ttl=r.get("ttl"), ip_proto=r.get("ip_proto"), stream_size=tuple(b.stream_sizes),
        pkt_checks=tuple(r.get("pkt_checks", ())), ip_version=_IP_VERSIONS.get(proto),
        decode_events=tuple(r.get("decode_events", ())),
        stream_events=tuple(r.get("stream_events", ())),
        flowbits=tuple(b.flowbits), xbits=tuple(b.xbits), flowints=tuple(r.get("flowints", ())),
        noalert=r.get("noalert", False),
        threshold=r.get("threshold"), detection_filter=r.get("detection_filter"),
        tls_version=r.get("tls_version"), tag=r.get("tag"), app_events=tuple(r.get("app_events", ())),
        tx_ints=tuple(r.get("tx_ints", ())), app_protocols=tuple(r.get("app_protocols", ())),
        pd_only=r.get("pd_only", False), file_hashes=tuple(r.get("file_hashes", ())),
        file=file, line=line, text=text)


def _check_base64(b64: Base64Decode, lists: list[MatchList]) -> None:
    """Suricata runs base64_data from base64_decode and ends the inspection of that buffer there, match or not:
    without base64_data the rule can never match, and keywords after base64_decode in its buffer are never
    inspected. Both would load a rule with part of its condition ignored, so both are refused."""
    if not b64.data.matches:
        raise RuleError("base64_decode without base64_data never matches (Suricata needs both)")
    for ml in lists:
        if ml.matches[-1] is not b64 and any(m is b64 for m in ml.matches):
            raise RuleError("base64_decode must be the last keyword of its buffer (Suricata never inspects "
                            "what follows it there)")


def _check_directions(lists, r: dict, flow) -> None:
    """Suricata refuses a rule whose buffers exist in different directions (a request-only and a response-only
    one), or whose flow direction contradicts a buffer's ("rule mixes keywords with conflicting directions"):
    such a rule could never match in one direction. Only a transactional (=>) rule may join them."""
    where: dict[str, str] = {}
    for ml in lists:
        spec = BUFFERS.get(ml.buffer)
        if spec is not None and spec.direction is not None:
            where.setdefault(spec.direction, ml.buffer)
    if r.get("urilen") is not None:
        where.setdefault("to_server", "urilen")
    if len(where) > 1:
        raise RuleError(f"rule mixes request ({where['to_server']}) and response ({where['to_client']}) keywords "
                        "(only a transactional => rule may)")
    if flow is not None and flow.to_server is not None and where:
        (direction, keyword), = where.items()
        if (direction == "to_server") != flow.to_server:
            raise RuleError(f"flow:{'to_server' if flow.to_server else 'to_client'} conflicts with {keyword}, "
                            f"which is {'request' if direction == 'to_server' else 'response'} only")


_DEFAULT_VARIABLES: Variables | None = None


def _default_variables() -> Variables:
    global _DEFAULT_VARIABLES
    if _DEFAULT_VARIABLES is None:
        _DEFAULT_VARIABLES = Variables()
    return _DEFAULT_VARIABLES


def iter_rule_lines(text: str):
    """Yield (line_number, rule_text, commented) for each rule in a file's text, the way Suricata's loader
    reads it: blank lines and `#` comments are skipped (a comment never continues onto the next line),
    a line ending in `\\` (trailing blanks allowed) continues with the next line as it is, and a comment
    that is a rule (`# alert ...`) is yielded with commented=True so it can be counted, never loaded."""
    lines = text.split("\n")
    i, n = 0, len(lines)
    while i < n:
        start = i
        cur = lines[i].rstrip()
        i += 1
        s = cur.lstrip()
        if not s:
            continue
        if s.startswith("#"):
            if _COMMENTED_RULE_RE.match(s):
                yield start + 1, s, True
            continue
        while cur.endswith("\\") and i < n and len(cur) <= MAX_RULE_LEN:
            cur = cur[:-1] + lines[i].rstrip()
            i += 1
        yield start + 1, cur.strip(), False


def load_rules(paths, variables: Variables | None = None,
               classifications: dict[str, Classification] | str | Path | None = None) -> RuleSet:
    """Load rule files. Bad rules become RuleSet.rejected entries; a duplicate (gid, sid) rejects the later
    rule. Raises RuleFileError for a file that cannot be read. `classifications` is a dict, a path to a
    classification.config, or None for the gateway's signatures/classification.config."""
    if isinstance(paths, (str, Path)):
        paths = [paths]                   # one file, not the characters of its name
    if variables is None:
        variables = _default_variables()
    if not isinstance(classifications, dict):
        classifications = load_classifications(classifications)
    # The load allocates ~1M small objects and no cycles: the cyclic GC would rescan the growing heap
    # again and again (about 40% of the load time), so it is paused for the load.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(paths, variables, classifications)
    finally:
        if gc_was_enabled:
            gc.enable()


def _load(paths, variables: Variables, classifications) -> RuleSet:
    rules: list[Rule] = []
    rejected: list[Rejection] = []
    seen: dict[tuple[int, int], tuple[str, int]] = {}
    commented = 0
    files = []
    for path in paths:
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise RuleFileError(f"{path}: cannot read rule file: {e.strerror or e}") from None
        if len(data) > MAX_FILE_BYTES:
            raise RuleFileError(f"{path}: rule file larger than {MAX_FILE_BYTES >> 20} MiB")
        name = str(path)
        files.append(name)
        for lineno, text, is_comment in iter_rule_lines(data.decode("utf-8", "surrogateescape")):
            if is_comment:
                commented += 1
                continue
            try:
                rule = parse_rule(text, variables, file=name, line=lineno, classifications=classifications)
            except RuleError as e:
                rejected.append(Rejection(name, lineno, e.sid, e.reason))
                continue
            except Exception as e:  # noqa: BLE001 - a parser bug must not stop the load; it is reported
                m = _SID_RE.search(text)
                rejected.append(Rejection(name, lineno, int(m.group(1)) if m else None,
                                          f"internal parser error: {e.__class__.__name__}: {e}"))
                continue
            key = (rule.gid, rule.sid)
            first = seen.get(key)
            if first is not None:
                rejected.append(Rejection(name, lineno, rule.sid, "duplicate sid",
                                          f"gid {rule.gid} sid {rule.sid} first loaded at {first[0]}:{first[1]}"))
                continue
            seen[key] = (name, lineno)
            rules.append(rule)
    return RuleSet(rules, rejected, tuple(files), commented)


__all__ += ["TRANSFORMS", "iter_rule_lines"]
