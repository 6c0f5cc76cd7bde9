"""The keyword table: every rule option we implement, its value parser/validator, and the buffer it applies to.

`KEYWORDS[name]` is a Keyword(name, kind, setup, buffer). `setup(builder, value)` parses the option value
(None for options without one) into the rule being built (rules._Builder) or raises RuleError with a short
reason. Kinds: "sticky" (selects `buffer` for what follows), "modifier" (legacy content modifier: moves the
previous content into `buffer`), "content-modifier" (nocase, depth, ...), "transform" (applies to the
current sticky buffer), "match" (content, pcre, byte_*, isdataat, bsize: appended to the current buffer),
"rule" (everything else: header-like conditions, state, rate, identity).

A name missing from KEYWORDS is rejected by the parser as "unsupported keyword: NAME": we never load a rule
with part of its condition ignored. `BUFFERS` lists every inspection buffer the detection engine must be
able to produce, with the application protocol it needs, the direction it exists in and Suricata's
fast-pattern priority (lower wins).
"""
from __future__ import annotations

import calendar
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..applayer.smtp import SMTP_EVENTS
from ..stream import STREAM_EVENTS
from .decoder_events import EVENTS as DECODER_EVENTS
from .header import FRAGBITS, IPOPT_BITS
from .model import (
    Base64Decode,
    BufferSize,
    ByteExtract,
    ByteJump,
    ByteTest,
    ContentMatch,
    FlowbitOp,
    FlowintOp,
    FlowMatch,
    IntCompare,
    IsDataAt,
    PacketCheck,
    PcreMatch,
    RuleError,
    StreamSize,
    TcpFlags,
    Threshold,
    TxInt,
    XbitOp,
    printable,
)


@dataclass(frozen=True)
class BufferSpec:
    name: str
    app_proto: str | None      # None: any (pkt_data), else the app-layer parser that produces it
    direction: str | None      # "to_server" | "to_client" | None (both)
    priority: int = 2          # Suricata's fast-pattern priority: lower is preferred


def _specs(app: str, direction: str | None, names: str, priority: int = 2) -> dict[str, BufferSpec]:
    return {n: BufferSpec(n, app, direction, priority) for n in names.split()}


BUFFERS: dict[str, BufferSpec] = {
    "pkt_data": BufferSpec("pkt_data", None, None, 3),
    # file.data: HTTP bodies (files) and SMTP attachments; the rule's app_proto says which
    "file.data": BufferSpec("file.data", None, None, 2),
    **_specs("http", "to_server", "http.uri http.uri.raw http.request_line http.user_agent http.host "
             "http.host.raw http.referer http.accept http.accept_enc http.accept_lang http.request_body"),
    # Suricata registers http.method and http.stat_code at priority 4 and http.stat_msg at 3, below
    # (or level with) the payload: a 3-byte method never beats a real payload pattern.
    **_specs("http", "to_server", "http.method", 4),
    **_specs("http", "to_client", "http.stat_code", 4),
    **_specs("http", "to_client", "http.stat_msg", 3),
    **_specs("http", "to_client", "http.response_line http.server http.location http.response_body"),
    **_specs("http", None, "http.header http.header.raw http.header_names http.cookie http.content_type "
             "http.content_len http.start http.protocol http.connection"),
    # packet headers (header.HEADER_BUFFERS): per-packet buffers, never a fast pattern (rules.py)
    **_specs(None, None, "ipv4.hdr ipv6.hdr tcp.hdr udp.hdr icmpv6.hdr", 5),
    **_specs("dns", "to_server", "dns.query"),
    # multi-buffers: one buffer per name (applayer/dns.py DnsTransaction.buffers); the queries/answers/...
    # sections exist in both directions, dns.response.rrname (every name of a response) only to_client
    **_specs("dns", None, "dns.queries.rrname dns.answers.rrname dns.authorities.rrname dns.additionals.rrname"),
    **_specs("dns", "to_client", "dns.response.rrname"),
    # multi-buffer: the name of each file of the transaction (HttpTransaction.file_names)
    **_specs("http", None, "file.name"),
    # multi-buffers: "Name: value" per header (applayer/http.py HttpTransaction.buffers)
    **_specs("http", "to_server", "http.request_header"),
    **_specs("http", "to_client", "http.response_header"),
    **_specs("tls", "to_server", "tls.sni ja3.hash ja3.string"),
    # tls.certs and tls.subjectaltname are multi-buffers: each certificate / SAN is inspected on its own
    **_specs("tls", "to_client", "tls.cert_subject tls.cert_issuer tls.cert_serial tls.cert_fingerprint "
             "tls.certs tls.subjectaltname ja3s.hash ja3s.string"),
    # the banner of the packet's side (applayer/ssh.py SshSession.buffers); HASSH of the client / the server
    **_specs("ssh", None, "ssh.proto ssh.software"),
    **_specs("ssh", "to_server", "ssh.hassh ssh.hassh.string"),
    **_specs("ssh", "to_client", "ssh.hassh.server ssh.hassh.server.string"),
}

# Buffers Suricata 7 registers as multi-instance: each use of the sticky keyword is its own match list
MULTI_INSTANCE = frozenset(("file.data", "file.name", "http.request_header", "http.response_header", "dns.query",
                            "dns.queries.rrname", "dns.answers.rrname", "dns.authorities.rrname",
                            "dns.additionals.rrname", "dns.response.rrname", "tls.certs", "tls.subjectaltname"))

# Sticky-buffer keywords (modern and legacy spellings) -> buffer.
STICKY: dict[str, str] = {name: name for name in BUFFERS}
STICKY.update({
    "file_data": "file.data", "dns_query": "dns.query", "tls_sni": "tls.sni",
    "tls_cert_subject": "tls.cert_subject", "tls_cert_issuer": "tls.cert_issuer",
    "tls_cert_serial": "tls.cert_serial", "tls_cert_fingerprint": "tls.cert_fingerprint", "ja3_hash": "ja3.hash", "ja3_string": "ja3.string",
    "ja3s_hash": "ja3s.hash", "ja3s_string": "ja3s.string", "client_body": "http.request_body",
    "ssh_proto": "ssh.proto", "ssh_software": "ssh.software",
    "http_request_line": "http.request_line", "http_response_line": "http.response_line",
    "http_accept": "http.accept", "http_accept_enc": "http.accept_enc", "http_accept_lang": "http.accept_lang",
    "http_connection": "http.connection", "http_content_len": "http.content_len",
    "http_content_type": "http.content_type", "http_referer": "http.referer", "http_protocol": "http.protocol",
    "http_start": "http.start", "http_header_names": "http.header_names", "http_server": "http.server", "http_location": "http.location",
})

# Legacy content modifiers (`content:"x"; http_uri;`) -> buffer.
LEGACY_MODIFIERS: dict[str, str] = {
    "http_uri": "http.uri", "http_raw_uri": "http.uri.raw", "http_header": "http.header",
    "http_raw_header": "http.header.raw", "http_cookie": "http.cookie", "http_method": "http.method",
    "http_client_body": "http.request_body", "http_server_body": "http.response_body",
    "http_stat_code": "http.stat_code", "http_stat_msg": "http.stat_msg", "http_user_agent": "http.user_agent",
    "http_host": "http.host", "http_raw_host": "http.host.raw",
}

TRANSFORMS = ("dotprefix", "to_lowercase", "strip_whitespace", "url_decode")

# pcre buffer-selection flags (Suricata detect-pcre.c) -> buffer
PCRE_BUFFER_FLAGS: dict[str, str] = {
    "U": "http.uri", "I": "http.uri.raw", "H": "http.header", "D": "http.header.raw", "M": "http.method",
    "C": "http.cookie", "P": "http.request_body", "Q": "http.response_body", "S": "http.stat_code",
    "Y": "http.stat_msg", "V": "http.user_agent", "W": "http.host", "Z": "http.host.raw",
}
_PCRE_RE_FLAGS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE, "x": re.VERBOSE}


@dataclass(frozen=True)
class Keyword:
    name: str
    kind: str
    setup: Callable
    buffer: str | None = None


# ------------------------------------------------------------------------------------------ value helpers

_INT_RE = re.compile(r"[+-]?\d+\Z")


def parse_int(text: str, what: str, lo: int = 0, hi: int = (1 << 32) - 1) -> int:
    text = text.strip()
    if text.lower().startswith("0x"):
        try:
            v = int(text, 16)
        except ValueError:
            raise RuleError(f"{what}: not a number: {text!r}") from None
    elif _INT_RE.match(text):
        v = int(text)
    else:
        raise RuleError(f"{what}: not a number: {text!r}")
    if not lo <= v <= hi:
        raise RuleError(f"{what}: {v} outside {lo}..{hi}")
    return v


def _need(value: str | None, name: str) -> str:
    if value is None or not value.strip():
        raise RuleError(f"{name}: needs a value")
    return value.strip()


def _none(value: str | None, name: str) -> None:
    if value is not None and value.strip():
        raise RuleError(f"{name}: takes no value")


def _unquote(value: str, name: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    if '"' in value:
        raise RuleError(f"{name}: unbalanced quotes")
    return value


def _value_or_var(b, text: str, what: str, lo: int = -65535, hi: int = 65535):
    text = text.strip()
    if _INT_RE.match(text) or text.lower().startswith("0x"):
        return parse_int(text, what, lo, hi)
    if text in b.byte_vars:
        return text
    raise RuleError(f"{what}: unknown byte_extract variable {text!r}")


_HEX_RUN = re.compile(r"[0-9A-Fa-f \t]*\Z")


def decode_content(text: str) -> bytes:
    """Suricata content string -> bytes: |41 42| hex runs, and \\" \\; \\\\ \\: escapes."""
    if "\\" not in text:
        # common case: literal runs and hex runs alternate around '|'
        if '"' in text:
            raise RuleError("content: unescaped double quote")
        if "|" not in text:
            return text.encode("utf-8", "surrogateescape")
        parts = text.split("|")
        if len(parts) % 2 == 0:
            raise RuleError("content: unterminated hex run (missing |)")
        out = bytearray()
        for i, part in enumerate(parts):
            if i % 2 == 0:
                out += part.encode("utf-8", "surrogateescape")
            else:
                out += _hex_run(part)
        return bytes(out)
    out = bytearray()
    hexmode = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if hexmode:
            end = text.find("|", i)
            if end < 0:
                raise RuleError("content: unterminated hex run (missing |)")
            out += _hex_run(text[i:end])
            hexmode = False
            i = end + 1
            continue
        if ch == "\\":
            if i + 1 >= n or text[i + 1] not in '\\";:|':
                raise RuleError("content: invalid escape (only \\\\ \\\" \\; \\: \\| are allowed)")
            out += text[i + 1].encode()
            i += 2
            continue
        if ch == "|":
            hexmode = True
        elif ch == '"':
            raise RuleError("content: unescaped double quote")
        else:
            out += ch.encode("utf-8", "surrogateescape")
        i += 1
    if hexmode:
        raise RuleError("content: unterminated hex run (missing |)")
    return bytes(out)


def _hex_run(run: str) -> bytes:
    if not _HEX_RUN.match(run):
        bad = next(c for c in run if c not in "0123456789abcdefABCDEF \t")
        raise RuleError(f"content: invalid character {bad!r} in hex")
    digits = run.replace(" ", "").replace("\t", "")
    if len(digits) % 2:
        raise RuleError("content: odd number of hex digits")
    return bytes.fromhex(digits)


def _unescape_text(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r'\\(.)', r'\1', text)


# ------------------------------------------------------------------------------------- identity keywords

def _msg(b, v):
    b.single("msg")
    b.rule["msg"] = printable(_unescape_text(_unquote(_need(v, "msg"), "msg")))


def _sid(b, v):
    b.single("sid")
    b.rule["sid"] = parse_int(_need(v, "sid"), "sid", 1)


def _rev(b, v):
    b.single("rev")
    b.rule["rev"] = parse_int(_need(v, "rev"), "rev")


def _gid(b, v):
    b.single("gid")
    b.rule["gid"] = parse_int(_need(v, "gid"), "gid")


def _classtype(b, v):
    b.single("classtype")
    name = _need(v, "classtype").lower()         # Suricata lowercases classtype names
    if b.classifications is not None and name not in b.classifications:
        raise RuleError(f"unknown classtype: {name}")
    b.rule["classtype"] = name


def _priority(b, v):
    b.single("priority")
    b.rule["priority"] = parse_int(_need(v, "priority"), "priority", 1, 255)


def _reference(b, v):
    kind, sep, ref = _need(v, "reference").partition(",")
    if not sep or not kind.strip() or not ref.strip():
        raise RuleError("reference: expected type,id")
    b.references.append((printable(kind.strip()), printable(ref.strip())))


def _metadata(b, v):
    # kept as written; Rule.metadata splits it into (key, value) pairs when asked (saves load time)
    b.metadata.append(printable(_need(v, "metadata")))


def _target(b, v):
    b.single("target")
    t = _need(v, "target")
    if t not in ("src_ip", "dest_ip"):
        raise RuleError("target: must be src_ip or dest_ip")
    b.rule["target"] = t


def _tag(b, v):
    # Tagging logs later packets of the session/host; it never changes what the rule matches.
    t = _need(v, "tag")
    if t.split(",")[0].strip() not in ("session", "host"):
        raise RuleError("tag: must start with session or host")
    b.rule["tag"] = t


def _requires(b, v):
    # checked before every other keyword (rules.parse_rule, requires.py); a rule that gets here meets it
    _need(v, "requires")


def _noalert(b, v):
    _none(v, "noalert")
    b.rule["noalert"] = True


# -------------------------------------------------------------------------------------- content keywords

def _content(b, v, buffer: str | None = None):
    v = _need(v, "content")
    negated = False
    if v.startswith("!"):
        negated = True
        v = v[1:].strip()
    if not (len(v) >= 2 and v[0] == '"' and v[-1] == '"'):
        raise RuleError("content: value must be in double quotes")
    pattern = decode_content(v[1:-1])
    if not pattern:
        raise RuleError("content: empty pattern")
    if len(pattern) > 65535:
        raise RuleError("content: pattern longer than 65535 bytes")
    cm = ContentMatch(pattern, negated=negated)
    b.add_match(cm, buffer)


def _uricontent(b, v):
    if b.sticky is not None:
        raise RuleError("uricontent: cannot follow a sticky buffer")
    _content(b, v, "http.uri")


def _nocase(b, v):
    _none(v, "nocase")
    cm = b.last_content("nocase")
    if cm.nocase:
        raise RuleError("nocase: given twice for one content")
    cm.nocase = True


def _rawbytes(b, v):
    # Suricata's payload inspection is always on raw bytes; rawbytes only makes sense there.
    _none(v, "rawbytes")
    b.last_content("rawbytes")
    if b.last_content_list().buffer != "pkt_data":
        raise RuleError("rawbytes: only valid on payload content")


def _content_number(b, v, name: str):
    cm = b.last_content(name)
    if cm.startswith:
        raise RuleError(f"{name}: cannot be combined with startswith")
    if getattr(cm, name) is not None:
        raise RuleError(f"{name}: given twice for one content")
    if name in ("offset", "depth") and cm.relative or name in ("distance", "within") and (
            cm.offset is not None or cm.depth is not None):
        raise RuleError("content: cannot mix relative (distance/within) and absolute (offset/depth) modifiers")
    if cm.fast_pattern_only:
        raise RuleError(f"{name}: cannot be used with fast_pattern:only")
    lo = -65535 if name == "distance" else 0
    value = _value_or_var(b, _need(v, name), name, lo, 65535)
    if name in ("depth", "within") and isinstance(value, int):
        if value == 0:
            raise RuleError(f"{name}: must be > 0")
        if value < len(cm.pattern):
            raise RuleError(f"{name}: {value} is smaller than the content length {len(cm.pattern)}")
    setattr(cm, name, value)


def _startswith(b, v):
    _none(v, "startswith")
    cm = b.last_content("startswith")
    if cm.startswith:
        raise RuleError("startswith: given twice for one content")
    if cm.offset is not None or cm.depth is not None or cm.relative:
        raise RuleError("startswith: cannot be combined with offset/depth/distance/within")
    cm.startswith = True
    cm.offset, cm.depth = 0, len(cm.pattern)


def _endswith(b, v):
    _none(v, "endswith")
    cm = b.last_content("endswith")
    if cm.endswith:
        raise RuleError("endswith: given twice for one content")
    cm.endswith = True


def _fast_pattern(b, v):
    cm = b.last_content("fast_pattern")
    if b.b64_data:
        # Suricata has no prefilter for decoded data either: the rule's fast pattern is on its buffers
        raise RuleError("fast_pattern: not possible in base64_data (decoded data is not prefiltered)")
    if b.explicit_fast_pattern:
        raise RuleError("fast_pattern: only one per rule")
    b.explicit_fast_pattern = True
    cm.explicit_fast_pattern = True
    if v is None or not v.strip():
        return
    v = v.strip()
    if v == "only":
        if cm.negated:
            raise RuleError("fast_pattern:only: cannot be used on a negated content")
        if cm.offset is not None or cm.depth is not None or cm.relative:
            raise RuleError("fast_pattern:only: cannot be combined with offset/depth/distance/within")
        cm.fast_pattern_only = True
        return
    off_s, sep, len_s = v.partition(",")
    if not sep:
        raise RuleError(f"fast_pattern: expected only or offset,length, got {v!r}")
    off = parse_int(off_s, "fast_pattern offset", 0, 65535)
    ln = parse_int(len_s, "fast_pattern length", 1, 65535)
    if off + ln > len(cm.pattern):
        raise RuleError("fast_pattern: offset+length past the end of the content")
    cm.fast_pattern_chop = (off, ln)


# ---------------------------------------------------------------------------------------------- pcre

_PCRE_KNOWN = set("ismxAEGORB") | set(PCRE_BUFFER_FLAGS)
_PCRE_CACHE: dict[tuple[str, int], object] = {}      # identical regexes (common in ET) compile once
_PCRE_CACHE_MAX = 65536


# PCRE spellings that Python's re lacks or reads differently, rewritten to the equivalent re syntax.
# One scanner so that an escaped backslash is never mistaken for the start of an escape.
_PCRE_TOKEN = re.compile(r"\\(?:x[0-9A-Fa-f]{1,2}|g\{-?\d+\}|g\d+|.)|\(\?<(?=[A-Za-z_])|\[:\^?[a-z]+:\]", re.DOTALL)
_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "xdigit": "0-9A-Fa-f", "space": "\\s", "blank": " \\t", "word": "\\w", "print": "\\x20-\\x7e",
    "graph": "\\x21-\\x7e", "cntrl": "\\x00-\\x1f\\x7f", "punct": "!-/:-@\\[-`{-~", "ascii": "\\x00-\\x7f",
}


def _pcre_token(m: re.Match) -> str:
    t = m.group()
    if t[0] == "\\":
        if t == "\\z":
            return "\\Z"                  # PCRE \z: the very end = re's \Z
        if t == "\\Z":
            return "(?=\\n?\\Z)"            # PCRE \Z: the end or before a final newline
        if t[1] == "x" and len(t) == 3:
            return "\\x0" + t[2]          # PCRE \xH (one digit)
        if t[1] == "g" and len(t) > 2:
            # PCRE \gN / \g{N}: a back reference by number (re spells it \N); relative ones are not supported
            number = t[2:].strip("{}")
            if number.startswith("-"):
                raise RuleError("pcre: relative back references (\\g{-N}) not supported")
            return f"(?:\\{int(number)})"
        return t
    if t == "(?<":
        return "(?P<"                     # named group
    name = t[2:-2]                        # [:alpha:] inside a class; re would read it as a set of chars
    if name not in _POSIX_CLASSES:
        raise RuleError(f"pcre: POSIX class [:{name}:] not supported")
    return _POSIX_CLASSES[name]


def pcre_to_re(source: str) -> str:
    if "\\" not in source and "(?<" not in source and "[:" not in source:
        return source
    return _PCRE_TOKEN.sub(_pcre_token, source)


_QUANTIFIER = re.compile(r"\*|\+|\?|\{\d+(?:,\d*)?\}")


def ungreedy(source: str) -> str:
    """PCRE's G (PCRE_UNGREEDY) spelled out: every greedy quantifier made lazy and every lazy one greedy
    (possessive ones stay). Escapes, character classes and the `?` of a group's `(?` are left alone."""
    out = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "\\":
            j = i + 2
            if source.startswith("g{", i + 1):
                j = source.find("}", i) + 1 or n      # \g{N}: one token, its braces are no quantifier
            out.append(source[i:j])
            i = j
            continue
        if c == "[":
            # a class: up to its closing ] (a ] right after [ or [^ is a member), escapes included
            j = i + 1
            if j < n and source[j] == "^":
                j += 1
            if j < n and source[j] == "]":
                j += 1
            while j < n and source[j] != "]":
                j += 2 if source[j] == "\\" else 1
            out.append(source[i:j + 1])
            i = j + 1
            continue
        m = _QUANTIFIER.match(source, i)
        if m is None or (c == "?" and i and source[i - 1] == "(") or (c == "{" and not out):
            out.append(c)
            i += 1
            continue
        out.append(m.group())
        i = m.end()
        if i < n and source[i] == "?":
            i += 1                  # lazy -> greedy
        elif i < n and source[i] == "+":
            out.append("+")         # possessive: unchanged
            i += 1
        else:
            out.append("?")         # greedy -> lazy
    return "".join(out)


def compile_pcre(source: str, flags: int):
    """Compile a Suricata pcre body with Python's re (bytes), or RuleError if re cannot express it."""
    key = (source, flags)
    rx = _PCRE_CACHE.get(key)
    if rx is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")       # FutureWarning about possible set syntax
                rx = re.compile(pcre_to_re(source).encode("utf-8", "surrogateescape"), flags)
        except (re.error, OverflowError, RecursionError, ValueError) as e:
            raise RuleError(f"pcre: not supported by the regex engine ({e.__class__.__name__}: "
                            f"{str(e).split(' at position')[0]})") from None
        if len(_PCRE_CACHE) >= _PCRE_CACHE_MAX:      # bounded across reloads
            _PCRE_CACHE.clear()
        _PCRE_CACHE[key] = rx
    return rx


def _pcre(b, v):
    v = _need(v, "pcre")
    negated = False
    if v.startswith("!"):
        negated = True
        v = v[1:].strip()
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        body = v[1:-1]
    elif v.startswith("/") and '"' not in v:
        body = v                                  # Suricata also takes pcre:/x/U; unquoted
    else:
        raise RuleError("pcre: value must be /regex/flags, in double quotes")
    end = body.rfind("/")
    if not body.startswith("/") or end <= 0:
        raise RuleError("pcre: expected /regex/flags")
    source, mods = body[1:end], body[end + 1:]
    bad = set(mods) - _PCRE_KNOWN
    if bad:
        raise RuleError(f"pcre: unknown modifier {''.join(sorted(bad))!r}")
    if "G" in mods:
        source = ungreedy(source)
    for unsupported, what in (("A", "anchored"), ("E", "dollar_endonly")):
        if unsupported in mods:
            raise RuleError(f"pcre: modifier {unsupported} ({what}) not supported")
    buffers = {PCRE_BUFFER_FLAGS[m] for m in mods if m in PCRE_BUFFER_FLAGS}
    if len(buffers) > 1:
        raise RuleError("pcre: more than one buffer modifier")
    if "B" in mods and buffers:
        raise RuleError("pcre: modifier B conflicts with a buffer modifier")
    flags = 0
    for m in mods:
        flags |= _PCRE_RE_FLAGS.get(m, 0)
    regex = compile_pcre(source, flags)
    pm = PcreMatch(source, mods, regex, negated=negated, relative="R" in mods, nocase="i" in mods)
    buffer = buffers.pop() if buffers else None
    if buffer is not None and b.sticky is not None:
        # Suricata accepts a flag naming the sticky buffer in force (e.g. http.uri; ... pcre:"/x/U")
        if b.sticky.buffer != buffer or b.sticky.transforms:
            raise RuleError("pcre: buffer modifier differs from the sticky buffer in force")
        buffer = None
    if "B" in mods and b.sticky is not None and b.sticky.buffer != "pkt_data":
        raise RuleError("pcre: modifier B only valid on the payload")
    if buffer == "http.host" and not pm.nocase and source != source.lower():
        raise RuleError("pcre: W (http.host) pattern has uppercase characters; the buffer is lowercase")
    b.add_match(pm, buffer)


# ------------------------------------------------------------------------------------------ byte_*

_ENDIAN = {"big": "big", "little": "little", "dce": "dce"}
_BASES = {"hex", "dec", "oct"}


def _byte_options(opts: list[str], name: str, allowed: set[str]) -> dict:
    out: dict = {}
    base = None
    for o in opts:
        word, _, arg = o.strip().partition(" ")
        arg = arg.strip()
        if word not in allowed:
            raise RuleError(f"{name}: unknown option {word!r}")
        if word in out or (word in _BASES and base is not None):
            raise RuleError(f"{name}: option {word!r} given twice")
        if word == "dce":
            # DCE/RPC stub data byte order: we have no DCE/RPC parser to take it from
            raise RuleError(f"{name}: dce needs the dcerpc protocol, which is not supported")
        if word in _BASES:
            base = word
        elif word == "string":
            if arg:                               # "string hex" in one item
                if arg not in _BASES:
                    raise RuleError(f"{name}: string base must be hex, dec or oct")
                base = arg
            out["string"] = True
        elif word == "align" and not arg:
            out[word] = True                      # byte_jump's align is a flag (byte_extract: align N)
        elif word in ("multiplier", "post_offset", "bitmask", "align"):
            if not arg:
                raise RuleError(f"{name}: {word} needs a value")
            lo, hi = {"multiplier": (1, 65535), "post_offset": (-65535, 65535), "align": (0, 255)}.get(
                word, (0, 0xFFFFFFFF))
            out[word] = parse_int(arg, f"{name} {word}", lo, hi)
        else:
            out[word] = True
    if base is not None and "string" not in out:
        raise RuleError(f"{name}: base {base} given without string")
    out["string"] = (base or "dec") if out.get("string") else None
    endians = [e for e in ("big", "little") if e in out]
    if len(endians) > 1:
        raise RuleError(f"{name}: more than one endianness")
    out["endian"] = endians[0] if endians else "big"
    return out


def _check_nbytes(n: int, string: str | None, name: str) -> None:
    limit = {"dec": 20, "hex": 14, "oct": 23}.get(string, 8) if string else 8
    if not (0 if string else 1) <= n <= limit:
        raise RuleError(f"{name}: number of bytes must be 1..{limit}"
                        f"{' with string ' + string if string else ' without string'}")


def _byte_test(b, v):
    parts = [p.strip() for p in _need(v, "byte_test").split(",")]
    if len(parts) < 4:
        raise RuleError("byte_test: expected nbytes, operator, value, offset")
    # nbytes 0 with string: Suricata's ByteExtractString then parses the number at the offset up to
    # the first non-digit (strtoull), e.g. `http.content_len; byte_test:0,=,0,0,string,dec;`
    nbytes = _value_or_var(b, parts[0], "byte_test nbytes", 0, 23)
    op = parts[1].replace(" ", "")
    negated = op.startswith("!")
    if negated:
        op = op[1:] or "="
    if op not in ("<", ">", "=", "<=", ">=", "&", "^"):
        raise RuleError(f"byte_test: unknown operator {parts[1]!r}")
    value = _value_or_var(b, parts[2], "byte_test value", 0, (1 << 64) - 1)
    offset = _value_or_var(b, parts[3], "byte_test offset")
    o = _byte_options(parts[4:], "byte_test", {"relative", "big", "little", "dce", "string", "hex", "dec",
                                                "oct", "bitmask"})
    if isinstance(nbytes, int):            # a byte_extract variable is checked when it is read (match.py)
        _check_nbytes(nbytes, o.get("string"), "byte_test")
    b.add_match(ByteTest(nbytes, op, value, offset, negated, o.get("relative", False), o["endian"],
                         o.get("string"), o.get("bitmask")))


def _byte_jump(b, v):
    parts = [p.strip() for p in _need(v, "byte_jump").split(",")]
    if len(parts) < 2:
        raise RuleError("byte_jump: expected nbytes, offset")
    nbytes = _value_or_var(b, parts[0], "byte_jump nbytes", 1, 23)
    offset = _value_or_var(b, parts[1], "byte_jump offset")
    o = _byte_options(parts[2:], "byte_jump", {"relative", "multiplier", "big", "little", "dce", "string",
                                               "hex", "dec", "oct", "align", "from_beginning", "from_end",
                                               "post_offset", "bitmask"})
    if isinstance(nbytes, int):
        _check_nbytes(nbytes, o.get("string"), "byte_jump")
    if o.get("from_beginning") and o.get("from_end"):
        raise RuleError("byte_jump: from_beginning and from_end are exclusive")
    b.add_match(ByteJump(nbytes, offset, o.get("relative", False), o.get("multiplier", 1), o["endian"],
                         o["string"], o.get("align") is True, o.get("from_beginning", False),
                         o.get("from_end", False), o.get("post_offset", 0), o.get("bitmask")))


_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def _byte_extract(b, v):
    parts = [p.strip() for p in _need(v, "byte_extract").split(",")]
    if len(parts) < 3:
        raise RuleError("byte_extract: expected nbytes, offset, name")
    nbytes = parse_int(parts[0], "byte_extract nbytes", 1, 23)
    offset = parse_int(parts[1], "byte_extract offset", -65535, 65535)
    name = parts[2]
    if not _VAR_NAME.match(name):
        raise RuleError(f"byte_extract: invalid variable name {name!r}")
    if name in b.byte_vars:
        raise RuleError(f"byte_extract: variable {name!r} defined twice")
    o = _byte_options(parts[3:], "byte_extract", {"relative", "multiplier", "big", "little", "dce", "string",
                                                  "hex", "dec", "oct", "align", "bitmask"})
    _check_nbytes(nbytes, o.get("string"), "byte_extract")
    if o["string"] and ("big" in o or "little" in o):
        raise RuleError("byte_extract: big/little cannot be combined with string")
    align = o.get("align", 0)
    if align is True or align not in (0, 2, 4):
        raise RuleError("byte_extract: align must be 2 or 4")
    b.byte_vars.add(name)
    b.add_match(ByteExtract(nbytes, offset, name, o.get("relative", False), o.get("multiplier", 1),
                            o["endian"], o.get("string"), align, o.get("bitmask")))


def _isdataat(b, v):
    parts = [p.strip() for p in _need(v, "isdataat").split(",")]
    size_s = parts[0]
    negated = size_s.startswith("!")
    if negated:
        size_s = size_s[1:].strip()
    size = _value_or_var(b, size_s, "isdataat", 0, 65535)
    relative = False
    for p in parts[1:]:
        if p == "relative":
            relative = True
        elif p != "rawbytes":
            raise RuleError(f"isdataat: unknown option {p!r}")
    b.add_match(IsDataAt(size, negated, relative))


# ------------------------------------------------------------------------------------------- base64

# Suricata 7's grammar (detect-base64-decode.c), in this order only; anchored here, where Suricata's unanchored
# regex would skip what it cannot read (`bytes 10 , offset 2` is bytes 10 and no offset there): refused instead
_B64_DECODE_RE = re.compile(r"\s*(?:bytes\s+(\d+),?)?\s*(?:offset\s+(\d+),?)?\s*(\w+)?\s*\Z")


def _base64_decode(b, v):
    if b.b64 is not None:
        raise RuleError("base64_decode: only one per rule")
    m = Base64Decode()
    if v is not None:
        parsed = _B64_DECODE_RE.match(v)
        if not v.strip() or parsed is None:
            raise RuleError("base64_decode: expected [bytes N][, offset N][, relative]")
        nbytes, offset, word = parsed.groups()
        if word is not None and word != "relative":
            raise RuleError(f"base64_decode: unknown option {word!r}")
        if nbytes is not None:
            n = parse_int(nbytes, "base64_decode bytes", 0, 65535)
            if n:                   # bytes 0 is Suricata's default, the 64 KiB maximum
                m.nbytes = n
        if offset is not None:
            m.offset = parse_int(offset, "base64_decode offset")
        m.relative = word == "relative"
    b.b64 = m
    b.add_match(m)


def _base64_data(b, v):
    _none(v, "base64_data")
    b.start_base64_data()


# --------------------------------------------------------------------------------- numeric comparisons

_CMP_RE = re.compile(r"\s*(?:(!=|<=|>=|<|>|=|!)\s*(\d+)|(\d+)\s*(?:<>|-)\s*(\d+)|(\d+))\s*\Z")


def parse_compare(text: str, name: str, hi: int = 65535, range_sep: bool = True) -> IntCompare:
    m = _CMP_RE.match(text)
    if not m:
        raise RuleError(f"{name}: expected N, <N, >N, <=N, >=N, !N or N<>M, got {text.strip()!r}")
    op, val, lo_s, hi_s, plain = m.groups()
    if plain is not None:
        v = int(plain)
        if v > hi:
            raise RuleError(f"{name}: {v} outside 0..{hi}")
        return IntCompare("=", v)
    if op is not None:
        v = int(val)
        if v > hi:
            raise RuleError(f"{name}: {v} outside 0..{hi}")
        return IntCompare("!=" if op == "!" else op, v)
    if not range_sep:
        raise RuleError(f"{name}: ranges not supported")
    lo, high = int(lo_s), int(hi_s)
    if high > hi or lo >= high:
        raise RuleError(f"{name}: range {lo}<>{high} out of order or outside 0..{hi}")
    return IntCompare("<>", lo, high)


def _rule_compare(name: str, hi: int):
    def setup(b, v):
        b.single(name)
        b.rule[name] = parse_compare(_need(v, name), name, hi)
    return setup


def _urilen(b, v):
    b.single("urilen")
    text, _, kind = _need(v, "urilen").partition(",")
    kind = kind.strip()
    if kind not in ("", "norm", "raw"):
        raise RuleError("urilen: second argument must be norm or raw")
    b.rule["urilen"] = parse_compare(text, "urilen")
    b.rule["urilen_raw"] = kind == "raw"
    b.need_app("http", "urilen")


def _bsize(b, v):
    if b.sticky is None or b.sticky.buffer == "pkt_data":
        raise RuleError("bsize: must follow a sticky buffer")
    if any(isinstance(m, BufferSize) for m in b.sticky.matches):
        raise RuleError("bsize: given twice for one buffer")
    b.add_match(BufferSize(parse_compare(_need(v, "bsize"), "bsize", (1 << 32) - 1)))


def _ip_proto(b, v):
    b.single("ip_proto")
    text = _need(v, "ip_proto")
    names = {"ip": 0, "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47, "esp": 50, "ah": 51,
             "icmpv6": 58, "sctp": 132}
    neg = text.startswith("!")
    core = text[1:].strip() if neg else text
    if core.lower() in names:
        b.rule["ip_proto"] = IntCompare("!=" if neg else "=", names[core.lower()])
    else:
        b.rule["ip_proto"] = parse_compare(text, "ip_proto", 255, range_sep=False)


def _stream_size(b, v):
    parts = [p.strip() for p in _need(v, "stream_size").split(",")]
    if len(parts) != 3 or parts[0] not in ("server", "client", "both", "either"):
        raise RuleError("stream_size: expected server|client|both|either, operator, bytes")
    if parts[1] not in ("<", ">", "=", "!=", "<=", ">="):
        raise RuleError(f"stream_size: unknown operator {parts[1]!r}")
    b.stream_sizes.append(StreamSize(parts[0], IntCompare(parts[1], parse_int(parts[2], "stream_size"))))
    b.need_tcp("stream_size")


_TLS_VERSIONS = {"1.0": 0x0301, "1.1": 0x0302, "1.2": 0x0303, "1.3": 0x0304, "3.0": 0x0300, "sslv3": 0x0300}


def _tls_version(b, v):
    b.single("tls_version")
    text = _need(v, "tls.version").strip('"').lower()
    if text not in _TLS_VERSIONS:
        if not text.startswith("0x"):
            raise RuleError(f"tls.version: unknown version {text!r}")
        b.rule["tls_version"] = parse_int(text, "tls.version", 0, 0xFFFF)
    else:
        b.rule["tls_version"] = _TLS_VERSIONS[text]
    b.need_app("tls", "tls.version")


_APP_EVENT_RE = re.compile(r"([a-z0-9]+)\.([a-z0-9_]+)\Z")
# protocols whose parsers attach Suricata's app-layer-event names to their transactions (applayer/*.py)
APP_EVENT_PROTOS = ("http", "dns", "tls", "ssh", "smtp")


def _app_layer_event(b, v):
    # Suricata: `app-layer-event:<proto>.<event>` holds when the transaction carries that decoder event.
    # The bare general events (applayer_mismatch_protocol_both_directions, ...) are flow-level: not modelled.
    text = _need(v, "app-layer-event").lower()
    m = _APP_EVENT_RE.match(text)
    if m is None:
        raise RuleError(f"app-layer-event: expected proto.event, got {text!r} (general events unsupported)")
    proto, event = m.groups()
    if proto not in APP_EVENT_PROTOS:
        raise RuleError(f"app-layer-event: no {proto} parser gives events")
    if proto == "smtp" and event not in SMTP_EVENTS:
        raise RuleError(f"app-layer-event: smtp has no event {event!r}")
    b.rule.setdefault("app_events", []).append(event)
    b.need_app(proto, "app-layer-event")


# the application protocols applayer/detect.py can recognise (http1 is Suricata's name for HTTP/1.x)
_DETECTED_PROTOS = {"http": "http", "http1": "http", "tls": "tls", "dns": "dns", "smtp": "smtp", "ftp": "ftp",
                    "ssh": "ssh", "smb": "smb", "dcerpc": "dcerpc"}
_ALPROTO_MODES = ("direction", "final", "either", "to_server", "to_client", "orig")


def _app_layer_protocol(b, v):
    # Suricata detect-app-layer-protocol.c: app-layer-protocol:[!]proto[,mode]; a per-packet check of the
    # protocol detected on the flow (default: in the packet's direction), unknown never matches
    parts = [p.strip() for p in _need(v, "app-layer-protocol").split(",")]
    if len(parts) > 2:
        raise RuleError("app-layer-protocol: expected [!]proto[,mode]")
    name = parts[0].lower()
    negated = name.startswith("!")
    if negated:
        name = name[1:].strip()
    proto = _DETECTED_PROTOS.get(name)
    if proto is None:
        raise RuleError(f"app-layer-protocol: {name!r} is not a protocol the gateway detects")
    mode = parts[1].lower() if len(parts) == 2 else "direction"
    if mode not in _ALPROTO_MODES:
        raise RuleError(f"app-layer-protocol: unknown mode {mode!r}")
    b.rule.setdefault("app_protocols", []).append((proto, negated, mode))


def _dns_opcode(b, v):
    # DNS header opcode of the message (request to_server, response to_client)
    b.single("dns.opcode")
    b.rule.setdefault("tx_ints", []).append(TxInt("dns.opcode", parse_compare(_need(v, "dns.opcode"),
                                                                               "dns.opcode", 15)))
    b.need_app("dns", "dns.opcode")


_INDEX_WORDS = ("any", "all", "all_or_absent", "or_absent")


def _dns_rrtype(b, v):
    # Suricata 8 multi-integer: `dns.rrtype:<value>[,<index>]` over the query types (to_server) or the
    # answer types (to_client); index any (default) / all / all_or_absent / or_absent / N / -N
    b.single("dns.rrtype")
    parts = [p.strip() for p in _need(v, "dns.rrtype").split(",")]
    if len(parts) > 2:
        raise RuleError("dns.rrtype: subslices (value,index,start:end) are not supported")
    index: str | int = "any"
    if len(parts) == 2:
        index = parts[1] if parts[1] in _INDEX_WORDS else parse_int(parts[1], "dns.rrtype index", -65535, 65535)
    elif parts[0].startswith("count"):
        raise RuleError("dns.rrtype: count is not supported")
    b.rule.setdefault("tx_ints", []).append(TxInt("dns.rrtype", parse_compare(parts[0], "dns.rrtype"), index))
    b.need_app("dns", "dns.rrtype")


def _tls_legacy_string(buffer: str, name: str, lower: bool = False):
    # Suricata detect-tls.c: tls.subject / tls.issuerdn / tls.fingerprint:[!]"value" hold when the
    # server certificate's field contains the value (strstr), i.e. a content match in its buffer
    def setup(b, v):
        b.single(name)
        text = _need(v, name)
        negated = text.startswith("!")
        if negated:
            text = text[1:].strip()
        text = _unquote(text, name)
        if not text:
            raise RuleError(f"{name}: empty value")
        if lower:
            text = text.lower()         # fingerprints are logged and compared in lowercase
        b.add_match(ContentMatch(text.encode("utf-8", "surrogateescape"), negated=negated), buffer)
    return setup


def _file_name_legacy(ext: bool):
    # Suricata 7: filename:[!]"x" is `file.name; content:[!]"x"; nocase;` (it was a case-insensitive
    # match before file.name existed) and fileext:[!]"x" is the same with ".x" and endswith
    name = "fileext" if ext else "filename"

    def setup(b, v):
        text = _need(v, name)
        negated = text.startswith("!")
        if negated:
            text = text[1:].strip()
        if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
            raise RuleError(f"{name}: value must be in double quotes")
        pattern = decode_content(text[1:-1])
        if not pattern:
            raise RuleError(f"{name}: empty value")
        if ext:
            pattern = b"." + pattern
        b.add_match(ContentMatch(pattern, negated=negated, nocase=True, endswith=ext), "file.name")
    return setup


MAX_HASH_LIST_BYTES = 64 << 20      # one hash list file
_HASH_HEX_LEN = {"md5": 32, "sha1": 40, "sha256": 64}
_HASH_LISTS: dict[tuple, frozenset] = {}     # (path, size, mtime) -> digests: rules sharing a list share it


def _load_hash_list(path: Path, algo: str, name: str) -> frozenset:
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, algo)
        cached = _HASH_LISTS.get(key)
        if cached is not None:
            return cached
        if st.st_size > MAX_HASH_LIST_BYTES:
            raise RuleError(f"{name}: list {path.name} larger than {MAX_HASH_LIST_BYTES >> 20} MiB")
        text = path.read_text("ascii", "replace")
    except OSError as e:
        raise RuleError(f"{name}: cannot read hash list {path}: {e.strerror or e}") from None
    want = _HASH_HEX_LEN[algo]
    digests = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        h = item.split()[0].lower()
        if len(h) != want or any(c not in "0123456789abcdef" for c in h):
            raise RuleError(f"{name}: {path.name}:{lineno}: not a {algo} hash")
        digests.add(h)
    out = _HASH_LISTS[key] = frozenset(digests)
    if len(_HASH_LISTS) > 256:
        _HASH_LISTS.pop(next(iter(_HASH_LISTS)))
    return out


def _file_hash(algo: str):
    # Suricata detect-filemd5.c & co: filemd5:[!]list; the list file is relative to the rule file's
    # directory (Suricata's default-rule-path); holds when the complete file's hash is (not) listed
    name = "file" + algo

    def setup(b, v):
        text = _need(v, name)
        negated = text.startswith("!")
        if negated:
            text = text[1:].strip()
        text = _unquote(text, name)
        path = Path(text)
        if not path.is_absolute():
            path = Path(b.rule_file).parent / path if b.rule_file else path
        b.rule.setdefault("file_hashes", []).append((algo, _load_hash_list(path, algo, name), negated))
        b.need_app("http", name)
    return setup


def _filestore(b, v):
    # storing files to disk is not a gateway feature (files go to the YARA stage instead); the keyword
    # never changes whether the rule matches, so it is accepted with its arguments checked
    b.single("filestore")
    if v is not None and v.strip():
        parts = [p.strip() for p in v.split(",")]
        if len(parts) > 2 or parts[0] not in ("request", "response", "both", "to_server", "to_client") or \
                (len(parts) == 2 and parts[1] not in ("file", "tx", "ssn", "flow")):
            raise RuleError("filestore: expected [direction[,scope]]")


_DATE_FORMATS = ("%Y-%m", "%Y-%m-%d", "%Y-%m-%d %H", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H",
                 "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%H:%M", "%H:%M:%S")
_VALIDITY_RE = re.compile(r"\s*([<>])?\s*([ \-:TW0-9]+?)\s*(?:(<>)\s*([ \-:TW0-9]+?))?\s*\Z")


def _date_epoch(text: str, name: str) -> int:
    text = text.strip()
    if re.fullmatch(r"\d{4}", text):
        # a bare year (Suricata 9 reads tls_cert_notafter:>2015 as the year, not 2015 seconds)
        return calendar.timegm((int(text), 1, 1, 0, 0, 0, 0, 0, 0))
    if text.isdigit():
        return int(text)                 # seconds since 1970
    for fmt in _DATE_FORMATS:
        try:
            return calendar.timegm(datetime.strptime(text, fmt).timetuple())
        except ValueError:
            continue
    raise RuleError(f"{name}: unreadable date {text!r}")


def _tls_validity(field: str):
    # tls_cert_notbefore / tls_cert_notafter:[<|>]date or date<>date (detect-tls-cert-validity.c):
    # < is <=, > is >=, a range includes both ends; compared with the server certificate's field
    def setup(b, v):
        b.single(field)
        m = _VALIDITY_RE.match(_need(v, field))
        if m is None:
            raise RuleError(f"{field}: expected [<|>]date or date<>date")
        mode, d1, rng, d2 = m.groups()
        if rng and mode:
            raise RuleError(f"{field}: a range takes no < or >")
        lo = _date_epoch(d1, field)
        ints = b.rule.setdefault("tx_ints", [])
        if rng:
            hi = _date_epoch(d2, field)
            if hi <= lo:
                raise RuleError(f"{field}: range end must be after its start")
            ints += [TxInt(field, IntCompare(">=", lo)), TxInt(field, IntCompare("<=", hi))]
        else:
            ints.append(TxInt(field, IntCompare({"<": "<=", ">": ">="}.get(mode, "="), lo)))
        b.need_app("tls", field)
    return setup


# ---------------------------------------------------------------------------------------- flow & flags

def _flow(b, v):
    b.single("flow")
    established = to_server = stream = None
    stateless = False
    for opt in _need(v, "flow").split(","):
        opt = opt.strip().lower()
        if opt in ("established", "not_established"):
            if established is not None:
                raise RuleError("flow: established given twice or with not_established")
            established = opt == "established"
        elif opt in ("to_server", "from_client", "to_client", "from_server"):
            d = opt in ("to_server", "from_client")
            if to_server is not None and to_server != d:
                raise RuleError("flow: conflicting directions")
            to_server = d
        elif opt == "stateless":
            stateless = True
        elif opt in ("only_stream", "no_stream"):
            if stream is not None:
                raise RuleError("flow: only_stream and no_stream are exclusive")
            stream = "only" if opt == "only_stream" else "no"
        else:
            raise RuleError(f"flow: unsupported option {opt!r}")
    b.rule["flow"] = FlowMatch(established, to_server, stateless, stream)


_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80,
              "2": 0x40, "1": 0x80}


def _flag_bits(text: str, what: str) -> int:
    bits = 0
    for ch in text.upper():
        if ch in _FLAG_BITS:
            bits |= _FLAG_BITS[ch]
        elif ch not in " ":
            raise RuleError(f"{what}: unknown TCP flag {ch!r}")
    return bits


def _flags(b, v):
    b.single("flags")
    text, _, ignore_s = _need(v, "flags").partition(",")
    text = text.strip()
    mode = "exact"
    for sym, m in (("+", "all"), ("*", "any"), ("!", "not")):
        if sym in text:
            if mode != "exact":
                raise RuleError("flags: more than one modifier")
            mode = m
            text = text.replace(sym, "", 1)
            if sym in text:
                raise RuleError("flags: modifier given twice")
    if text == "0":
        bits = 0
        if mode != "exact":
            raise RuleError("flags: 0 (no flags) cannot take a modifier")
    else:
        bits = _flag_bits(text, "flags")
        if not bits:
            raise RuleError("flags: no flags given")
    ignore = _flag_bits(ignore_s.strip(), "flags mask") if ignore_s.strip() else 0
    b.rule["flags"] = TcpFlags(bits, mode, ignore)
    b.need_tcp("flags")


# ----------------------------------------------------------------------------------------- state & rate

_BIT_NAME = re.compile(r"[^\s,]+\Z")


def _flowbits(b, v):
    text = _need(v, "flowbits")
    cmd, _, names_s = text.partition(",")
    cmd = cmd.strip().lower()
    if cmd == "noalert":
        if names_s.strip():
            raise RuleError("flowbits:noalert takes no name")
        b.rule["noalert"] = True
        return
    if cmd not in ("set", "unset", "toggle", "isset", "isnotset"):
        raise RuleError(f"flowbits: unknown command {cmd!r}")
    names_s = names_s.strip()
    if not names_s:
        raise RuleError(f"flowbits:{cmd} needs a name")
    # Suricata (detect-flowbits.c): `a|b` is an OR list (isset: one is set; isnotset: one is not set);
    # a name is anything without blanks ("a&b" is one name, there is no AND operator).
    any_of = "|" in names_s
    if any_of and cmd not in ("isset", "isnotset"):
        raise RuleError(f"flowbits: | only with isset/isnotset, not {cmd}")
    names = tuple(n.strip() for n in names_s.split("|")) if any_of else (names_s,)
    names = tuple(n for n in names if n)
    if not names or len(names) > 100:
        raise RuleError("flowbits: expected 1..100 names")
    for n in names:
        if any(c.isspace() for c in n):
            raise RuleError(f"flowbits: spaces are not allowed in names ({n!r})")
    b.flowbits.append(FlowbitOp(cmd, names, any_of))


def _xbits(b, v):
    parts = [p.strip() for p in _need(v, "xbits").split(",")]
    cmd = parts[0].lower()
    if cmd == "noalert":
        b.rule["noalert"] = True
        return
    if cmd not in ("set", "unset", "toggle", "isset", "isnotset") or len(parts) < 3:
        raise RuleError("xbits: expected set|unset|toggle|isset|isnotset, name, track ip_src|ip_dst|ip_pair")
    name = parts[1]
    if not _BIT_NAME.match(name):
        raise RuleError(f"xbits: invalid name {name!r}")
    track = expire = None
    for p in parts[2:]:
        word, _, arg = p.partition(" ")
        arg = arg.strip()
        if word == "track" and arg in ("ip_src", "ip_dst", "ip_pair"):
            track = arg
        elif word == "expire":
            expire = parse_int(arg, "xbits expire", 1)
        else:
            raise RuleError(f"xbits: unsupported option {p!r}")
    if track is None:
        raise RuleError("xbits: track ip_src|ip_dst|ip_pair is required")
    b.xbits.append(XbitOp(cmd, name, track, expire))


def _hostbits(b, v):
    # Suricata detect-hostbits.c: hostbits:<cmd>,<name>[,src|dst|both] - xbits stored per host (default src)
    parts = [p.strip() for p in _need(v, "hostbits").split(",")]
    cmd = parts[0].lower()
    if cmd == "noalert":
        if len(parts) > 1:
            raise RuleError("hostbits:noalert takes no name")
        b.rule["noalert"] = True
        return
    if cmd not in ("set", "unset", "toggle", "isset", "isnotset") or not 2 <= len(parts) <= 3:
        raise RuleError("hostbits: expected set|unset|toggle|isset|isnotset, name[, src|dst|both]")
    name = parts[1]
    if not _BIT_NAME.match(name):
        raise RuleError(f"hostbits: invalid name {name!r}")
    where = parts[2].lower() if len(parts) == 3 else "src"
    if where == "both" and cmd in ("set", "unset", "toggle"):
        tracks = ("ip_src", "ip_dst")
    elif where in ("src", "dst"):
        tracks = ("ip_" + where,)
    else:
        raise RuleError(f"hostbits: direction must be src or dst{' or both' if cmd[:2] != 'is' else ''}, "
                        f"got {where!r}")
    for track in tracks:
        b.xbits.append(XbitOp(cmd, name, track))


_FLOWINT_OPS = {"+": "+", "-": "-", "=": "=", "==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
                "isset": "isset", "notset": "notset", "isnotset": "notset"}


def _flowint(b, v):
    # Suricata detect-flowint.c: flowint:name,op[,value|var]
    parts = [p.strip() for p in _need(v, "flowint").split(",")]
    if len(parts) < 2 or not _VAR_NAME.match(parts[0]) or parts[1] not in _FLOWINT_OPS:
        raise RuleError("flowint: expected name, op (+ - = == != < <= > >= isset notset)[, value]")
    op = _FLOWINT_OPS[parts[1]]
    value: int | str | None = None
    if op in ("isset", "notset"):
        if len(parts) != 2:
            raise RuleError(f"flowint: {op} takes no value")
    else:
        if len(parts) != 3 or not parts[2]:
            raise RuleError(f"flowint: {op} needs a value")
        if _INT_RE.match(parts[2]):
            value = parse_int(parts[2], "flowint value", 0, (1 << 32) - 1)
        elif _VAR_NAME.match(parts[2]):
            value = parts[2]
        else:
            raise RuleError(f"flowint: bad value {parts[2]!r}")
    b.rule.setdefault("flowints", []).append(FlowintOp(parts[0], op, value))


def _threshold_args(text: str, name: str, need_type: bool) -> Threshold:
    vals: dict[str, str] = {}
    for part in text.split(","):
        word, _, arg = part.strip().partition(" ")
        arg = arg.strip()
        allowed = ("type", "track", "count", "seconds", "multiplier") if need_type else \
            ("track", "count", "seconds", "unique_on")
        if word not in allowed or not arg:
            raise RuleError(f"{name}: unexpected {part.strip()!r}")
        if word in vals:
            raise RuleError(f"{name}: {word} given twice")
        vals[word] = arg
    ttype = vals.get("type", "detection_filter")
    # backoff counts without a time window: alerts on match count, count*multiplier, count*multiplier^2...
    window = ("multiplier",) if ttype == "backoff" else ("seconds",)
    missing = [k for k in (("type",) if need_type else ()) + ("track", "count") + window if k not in vals]
    if missing:
        raise RuleError(f"{name}: missing {', '.join(missing)}")
    if need_type and ttype not in ("limit", "threshold", "both", "backoff"):
        raise RuleError(f"{name}: type must be limit, threshold, both or backoff")
    if ttype == "backoff" and "seconds" in vals or ttype != "backoff" and "multiplier" in vals:
        raise RuleError(f"{name}: multiplier goes with type backoff, seconds with the other types")
    if vals["track"] not in ("by_src", "by_dst", "by_rule", "by_both", "by_flow"):
        raise RuleError(f"{name}: track must be by_src, by_dst, by_rule, by_both or by_flow")
    unique_on = vals.get("unique_on")
    if unique_on not in (None, "src_port", "dst_port"):
        raise RuleError(f"{name}: unique_on must be src_port or dst_port")
    return Threshold(ttype, vals["track"], parse_int(vals["count"], f"{name} count", 1),
                     parse_int(vals.get("seconds", "0"), f"{name} seconds", 0 if ttype == "backoff" else 1),
                     parse_int(vals.get("multiplier", "0"), f"{name} multiplier", 0 if ttype != "backoff" else 2),
                     unique_on)


def _threshold(b, v):
    if b.rule.get("threshold") or b.rule.get("detection_filter"):
        raise RuleError("threshold: only one threshold or detection_filter per rule")
    b.rule["threshold"] = _threshold_args(_need(v, "threshold"), "threshold", True)


def _detection_filter(b, v):
    if b.rule.get("threshold") or b.rule.get("detection_filter"):
        raise RuleError("detection_filter: only one threshold or detection_filter per rule")
    b.rule["detection_filter"] = _threshold_args(_need(v, "detection_filter"), "detection_filter", False)


# ----------------------------------------------------------------------------------- packet-header fields

def _pkt_check(b, name: str, field: str, test) -> None:
    b.single(name)
    b.rule.setdefault("pkt_checks", []).append(PacketCheck(field, test))


def _header_compare(name: str, field: str, hi: int, tcp: bool = False):
    def setup(b, v):
        text = _need(v, name).strip()
        if len(text) > 1 and text[0] == text[-1] == '"':     # Suricata accepts icmp_id:"5" and the like
            text = text[1:-1]
        _pkt_check(b, name, field, parse_compare(text, name, hi))
        if tcp:
            b.need_tcp(name)
    return setup


_TOS_RE = re.compile(r"(!?)\s*(?:(\d{1,3})|0?[xX]([0-9a-fA-F]{1,2}))\Z")


def _tos(b, v):
    # Suricata detect-tos.c: [!]decimal or [!]x<hex> (0x<hex> accepted too)
    m = _TOS_RE.match(_need(v, "tos").strip())
    if not m:
        raise RuleError(f"tos: expected [!]N or [!]xHH, got {v.strip()!r}")
    val = int(m.group(2)) if m.group(2) is not None else int(m.group(3), 16)
    if val > 255:
        raise RuleError(f"tos: {val} outside 0..255")
    _pkt_check(b, "tos", "ip.tos", IntCompare("!=" if m.group(1) else "=", val))


def _fragbits(b, v):
    text = _need(v, "fragbits").strip()
    mode = "exact"
    for sym, m in (("+", "all"), ("*", "any"), ("!", "not")):     # before or after the letters
        if sym in text:
            if mode != "exact" or text.count(sym) > 1:
                raise RuleError("fragbits: more than one modifier")
            mode, text = m, text.replace(sym, "")
    bits = 0
    for ch in text.strip().upper():
        if ch not in FRAGBITS:
            raise RuleError(f"fragbits: unknown bit {ch!r} (M, D, R)")
        bits |= FRAGBITS[ch]
    if not bits:
        raise RuleError("fragbits: no bits given")
    _pkt_check(b, "fragbits", "ip.fragbits", TcpFlags(bits, mode))


def _ipopts(b, v):
    name = _need(v, "ipopts").strip().lower()
    if name not in IPOPT_BITS:
        raise RuleError(f"ipopts: unknown option {name!r}")
    _pkt_check(b, "ipopts", "ipopt." + name, IntCompare("=", 1))


def _event_keyword(keyword: str, prefix: str, known, unknown: str, key: str):
    """decode-event / stream-event: an event name (the leading `prefix` allowed) our code raises."""
    def setup(b, v):
        name = _need(v, keyword).strip().lower().removeprefix(prefix)
        if name not in known:
            raise RuleError(f"{keyword}: {name} {unknown}")
        b.rule.setdefault(key, []).append(name)
    return setup


# Suricata: decode-event:<layer>.<event>, stream-event:<event>; only the events our decoder / stream stage raise
_decode_event = _event_keyword("decode-event", "decoder.", DECODER_EVENTS, "is not detected by our decoder",
                               "decode_events")
_stream_event = _event_keyword("stream-event", "stream.", STREAM_EVENTS, "is not raised by our stream reassembly",
                               "stream_events")


def _prefilter(b, v):
    # A hint to Suricata's prefilter engine about which keyword to prefilter on: never changes a match.
    _none(v, "prefilter")


# ------------------------------------------------------------------------------------ buffers & transforms

# `file.data: to_client` / `to_server` (Suricata 8, for transactional rules): the body of that direction
_FILE_DATA_DIRECTIONS = {"to_client": "http.response_body", "to_server": "http.request_body"}


def _sticky(buffer: str):
    def setup(b, v):
        if buffer == "file.data" and v is not None and v.strip():
            target = _FILE_DATA_DIRECTIONS.get(v.strip())
            if target is None:
                raise RuleError(f"file.data: direction must be to_client or to_server, got {v.strip()!r}")
            b.set_sticky(target)
            return
        _none(v, buffer)
        b.set_sticky(buffer)
    return setup


def _modifier(buffer: str):
    def setup(b, v):
        _none(v, buffer)
        b.move_last_content(buffer)
    return setup


def _transform(name: str):
    def setup(b, v):
        _none(v, name)
        b.add_transform(name)
    return setup


# -------------------------------------------------------------------------------------------- the table

KEYWORDS: dict[str, Keyword] = {}


def _reg(name: str, kind: str, setup: Callable, buffer: str | None = None) -> None:
    KEYWORDS[name] = Keyword(name, kind, setup, buffer)


for _n, _f in (("msg", _msg), ("sid", _sid), ("rev", _rev), ("gid", _gid), ("classtype", _classtype),
               ("priority", _priority), ("reference", _reference), ("metadata", _metadata),
               ("target", _target), ("tag", _tag), ("requires", _requires), ("noalert", _noalert), ("flow", _flow),
               ("flowbits", _flowbits), ("xbits", _xbits), ("threshold", _threshold),
               ("detection_filter", _detection_filter), ("stream_size", _stream_size), ("flags", _flags),
               ("dsize", _rule_compare("dsize", 65535)), ("itype", _rule_compare("itype", 255)),
               ("icode", _rule_compare("icode", 255)), ("ttl", _rule_compare("ttl", 255)),
               ("ip_proto", _ip_proto), ("urilen", _urilen), ("tls.version", _tls_version),
               ("app-layer-event", _app_layer_event), ("app-layer-protocol", _app_layer_protocol),
               ("dns.opcode", _dns_opcode),
               ("dns.rrtype", _dns_rrtype),
               ("tls.subject", _tls_legacy_string("tls.cert_subject", "tls.subject")),
               ("tls.issuerdn", _tls_legacy_string("tls.cert_issuer", "tls.issuerdn")),
               ("tls.fingerprint", _tls_legacy_string("tls.cert_fingerprint", "tls.fingerprint", True)),
               ("tls_cert_notbefore", _tls_validity("tls_cert_notbefore")),
               ("tls_cert_notafter", _tls_validity("tls_cert_notafter")),
               ("filename", _file_name_legacy(False)), ("fileext", _file_name_legacy(True)),
               ("filestore", _filestore), ("filemd5", _file_hash("md5")), ("filesha1", _file_hash("sha1")),
               ("filesha256", _file_hash("sha256"))):
    _reg(_n, "rule", _f)
for _n, _f in (("ack", _header_compare("ack", "tcp.ack", (1 << 32) - 1, True)),
               ("seq", _header_compare("seq", "tcp.seq", (1 << 32) - 1, True)),
               ("window", _header_compare("window", "tcp.window", 65535, True)),
               ("tcp.mss", _header_compare("tcp.mss", "tcp.mss", 65535, True)),
               ("icmp_id", _header_compare("icmp_id", "icmp.id", 65535)),
               ("icmp_seq", _header_compare("icmp_seq", "icmp.seq", 65535)),
               ("icmpv6.mtu", _header_compare("icmpv6.mtu", "icmpv6.mtu", (1 << 32) - 1)),
               ("id", _header_compare("id", "ip.id", 65535)),
               ("fragoffset", _header_compare("fragoffset", "ip.fragoffset", 8191)),
               ("tos", _tos), ("fragbits", _fragbits), ("ipopts", _ipopts), ("prefilter", _prefilter),
               ("decode-event", _decode_event), ("stream-event", _stream_event), ("hostbits", _hostbits), ("flowint", _flowint)):
    _reg(_n, "rule", _f)
for _n, _alias in (("tcp.flags", "flags"), ("tcp.ack", "ack"), ("tcp.seq", "seq"), ("tcp.window", "window")):
    _reg(_n, "rule", KEYWORDS[_alias].setup)
for _n, _f in (("content", _content), ("uricontent", _uricontent), ("pcre", _pcre), ("byte_test", _byte_test),
               ("byte_jump", _byte_jump), ("byte_extract", _byte_extract), ("isdataat", _isdataat),
               ("bsize", _bsize), ("base64_decode", _base64_decode)):
    _reg(_n, "match", _f)
_reg("base64_data", "sticky", _base64_data)
for _n in ("offset", "depth", "distance", "within"):
    _reg(_n, "content-modifier", lambda b, v, _n=_n: _content_number(b, v, _n))
for _n, _f in (("nocase", _nocase), ("rawbytes", _rawbytes), ("startswith", _startswith),
               ("endswith", _endswith), ("fast_pattern", _fast_pattern)):
    _reg(_n, "content-modifier", _f)
for _n, _buf in STICKY.items():
    _reg(_n, "sticky", _sticky(_buf), _buf)
for _n, _buf in LEGACY_MODIFIERS.items():
    _reg(_n, "modifier", _modifier(_buf), _buf)
for _n in TRANSFORMS:
    _reg(_n, "transform", _transform(_n))
