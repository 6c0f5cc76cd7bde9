"""Incremental, sans-I/O HTTP/1.x parser that behaves like libhtp where evasions are concerned.

One HttpParser per TCP connection. Feed it the contiguous bytes of each direction as reassembly
produces them (`feed(data, to_server)`, `feed_toserver`, `feed_toclient`); call `eof(to_server)` when a
direction closes. Each call returns a list of AppEvent:

    request_headers   tx request line + headers parsed (http.uri, http.host, ... are ready)
    request_body      data = de-chunked request body bytes (only bytes within request_body_limit)
    request_complete  the request (and its body) ended
    response_headers  status line + headers parsed
    response_body     data = de-chunked, decompressed response body (within response_body_limit)
    response_complete the response ended; the transaction is done
    file              a body with content ended: info = file name (Content-Disposition, else the URI
                      path), data = bytes up to file_limit; tx.request_truncated /
                      tx.response_truncated tell whether the file was longer
    anomaly           info = Suricata's app-layer-event name where one exists
                      (request_field_missing_colon, invalid_response_chunk_len, ...); tx may be None

Feeding the same bytes split at any points yields the same transactions and the same events apart from
how body data is cut into chunks. Nothing raises: malformed input becomes anomalies, and a direction
that cannot be followed any more is given up ("gave_up" anomaly) while the other keeps working.

Where the RFC and libhtp disagree, libhtp wins, because the detection rules we run were written and
tested against it (http-evader suite): "chunked" anywhere in Transfer-Encoding means chunked, an
invalid chunk size turns the rest into a close-delimited body, a lying Content-Encoding passes the body
through, repeated headers are joined with ", ", and a response line that does not start with "HTTP"
is body.
"""
from __future__ import annotations

import hashlib
import re
from collections import deque
from dataclasses import dataclass

from . import multipart
from .common import AppEvent
from .decompress import BodyDecoder, parse_content_encoding
from .uri import normalize_host, normalize_uri, split_uri


@dataclass(frozen=True)
class HttpLimits:
    max_line: int = 18000                  # libhtp field_limit_hard: longest line/header we buffer
    max_headers: int = 1024                # header lines kept per message; more are an anomaly
    max_header_bytes: int = 65536          # raw header block kept for http.header.raw
    request_body_limit: int = 100 * 1024   # Suricata request-body-limit default (inspected bytes)
    response_body_limit: int = 100 * 1024  # Suricata response-body-limit default
    # Bytes of a body kept for file scanning (YARA). Held per transaction while it is open, so it
    # multiplies by concurrent downloads: raise it only together with a flow-count bound.
    file_limit: int = 256 * 1024
    # Suricata's default is 2; suricata-verify runs the http-evader family with 3, and every layer's
    # output is capped anyway, so we peel one more.
    decompress_layer_limit: int = 3
    lzma_enabled: bool = True
    max_transactions: int = 512            # requests waiting for their response


DEFAULT_LIMITS = HttpLimits()

# parser states, per direction
_IDLE, _HEADERS, _BODY_CL, _CHUNK_LEN, _CHUNK_DATA, _CHUNK_END, _BODY_CLOSE, _TUNNEL, _DEAD = range(9)

_BODY_STATES = (_BODY_CL, _CHUNK_DATA, _BODY_CLOSE)
_WS_CTL = b" \t\r\n\x0b\x0c"
_CHUNK_LEN_RE = re.compile(rb"[ \t\r\n\x0b\x0c]*([0-9a-fA-F]*)")   # libhtp: leading CR/LF/space skipped
_DIGITS_RE = re.compile(rb"[0-9]+")
_CD_FILENAME_RE = re.compile(rb"""filename\*?\s*=\s*(?:"([^"]*)"|([^;\s]+))""", re.IGNORECASE)
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _chomp(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith((b"\n", b"\r")):
        return line[:-1]
    return line


def _looks_like_header(text: bytes) -> bool:
    """A folded line that reads like "Name: value" is a header of its own (browsers take it so)."""
    colon = text.find(b":")
    if colon <= 0:
        return False
    name = text[:colon].strip(b" \t\x00")
    return bool(name) and all(c in _TOKEN_CHARS for c in name)


def parse_content_length(value: bytes) -> int | None:
    """Digits with optional junk before (tolerated, as libhtp) and only whitespace after; else None."""
    m = _DIGITS_RE.search(value)
    if m is None or value[m.end():].strip(_WS_CTL):
        return None
    return int(m.group(0))


def _both(req: str, res: str | None = None) -> tuple[str, str]:
    return (req, res or req)


# Our internal anomaly codes -> Suricata's app-layer-event names (request, response), so that
# `app-layer-event:http.<name>` rules work unchanged. Codes not listed are reported as they are.
_EVENT_NAMES = {
    "line_too_long": _both("request_field_too_long", "response_field_too_long"),
    "header_too_long": _both("request_field_too_long", "response_field_too_long"),
    "header_missing_colon": _both("request_field_missing_colon", "response_field_missing_colon"),
    "invalid_chunk_length": _both("invalid_request_chunk_len", "invalid_response_chunk_len"),
    "chunk_length_line_too_long": _both("invalid_request_chunk_len", "invalid_response_chunk_len"),
    "chunk_extension": _both("request_chunk_extension", "response_chunk_extension"),
    "invalid_transfer_encoding": _both("invalid_transfer_encoding_value_in_request",
                                       "invalid_transfer_encoding_value_in_response"),
    "abnormal_transfer_encoding": _both("invalid_transfer_encoding_value_in_request",
                                        "invalid_transfer_encoding_value_in_response"),
    "invalid_content_length": _both("invalid_content_length_field_in_request",
                                    "invalid_content_length_field_in_response"),
    "content_length_extra_data": _both("invalid_content_length_field_in_request",
                                       "invalid_content_length_field_in_response"),
    "duplicate_content_length_field": _both("duplicate_content_length_field_in_request",
                                            "duplicate_content_length_field_in_response"),
    "duplicate_100_continue": _both("100_continue_already_seen"),
    "invalid_header_folding": _both("invalid_request_field_folding", "invalid_response_field_folding"),
    "too_many_headers": _both("request_too_many_headers", "response_too_many_headers"),
    "header_repetition": _both("request_header_repetition", "response_header_repetition"),
    "header_name_nul": _both("request_header_invalid", "response_header_invalid"),
    "header_name_trailing_whitespace": _both("request_header_invalid", "response_header_invalid"),
    "header_name_empty": _both("request_header_invalid", "response_header_invalid"),
    "folded_line_looks_like_header": _both("request_header_invalid", "response_header_invalid"),
    "request_method_invalid": _both("request_line_invalid"),
    "uri_contains_whitespace": _both("uri_delim_non_compliant"),
    "decompression_failed": _both("gzip_decompression_failed"),
    "unknown_content_encoding": _both("abnormal_ce_header"),
}
_AUTH_SCHEMES = (b"basic", b"digest", b"bearer")
# libhtp's method table: a line after a request that starts with anything else is body.
_KNOWN_METHODS = frozenset((
    b"GET", b"PUT", b"POST", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH", b"PROPFIND",
    b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"VERSION-CONTROL", b"CHECKOUT",
    b"UNCHECKOUT", b"CHECKIN", b"UPDATE", b"LABEL", b"REPORT", b"MKWORKSPACE", b"MKACTIVITY",
    b"BASELINE-CONTROL", b"MERGE", b"INVALID", b"HEAD",
))
_NAME_END_ODD = frozenset(b" \t\r\n\x0b\x0c")   # a header name ending like this is an anomaly
_FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"content-encoding", b"host"))
_DOUBLE_ENCODED_RE = re.compile(rb"%25(?:[0-9a-fA-F]{2}|[uU][0-9a-fA-F]{4})")


def _split_request_line(text: bytes) -> tuple[bytes, bytes, bytes]:
    """(method, uri, protocol). The URI may contain spaces (libhtp): the protocol is the last word,
    and only if it starts with "HTTP"; otherwise it is b"" and everything after the method is URI."""
    stripped = text.lstrip(b" \t")
    sp = 0
    n = len(stripped)
    while sp < n and stripped[sp] not in b" \t\r\x0b\x0c":
        sp += 1
    method = stripped[:sp]
    rest = stripped[sp:].strip(b" \t\r\x0b\x0c")
    cut = max(rest.rfind(b" "), rest.rfind(b"\t"))
    if cut != -1 and rest[cut + 1:].upper().startswith(b"HTTP"):
        return method, rest[:cut].rstrip(b" \t"), rest[cut + 1:]
    if cut == -1 and rest.upper().startswith(b"HTTP/"):
        return method, b"", rest
    return method, rest, b""


def _has_protocol(line: bytes) -> bool:
    return bool(_split_request_line(_chomp(line))[2])


def _is_status_line(line: bytes) -> bool:
    return line.lstrip(_WS_CTL + b"\x00")[:4].upper() == b"HTTP"


class HttpTransaction:
    """One request/response pair and the Suricata inspection buffers built from it."""

    __slots__ = (
        "anomalies",
        "file_views",
        "host_raw",
        "hostname",
        "http09",
        "method",
        "repeated",
        "request_body",
        "request_body_len",
        "request_codings",
        "request_complete",
        "request_files",
        "request_header_raw",
        "request_headers",
        "request_line",
        "request_protocol",
        "request_truncated",
        "response_body",
        "response_body_len",
        "response_codings",
        "response_complete",
        "response_header_raw",
        "response_headers",
        "response_line",
        "response_protocol",
        "response_started",
        "response_truncated",
        "status",
        "status_code",
        "status_msg",
        "tx_id",
        "uri",
        "uri_raw",
    )

    def __init__(self, tx_id: int):
        self.tx_id = tx_id
        self.method = b""
        self.uri_raw = b""
        self.uri = b""
        self.request_protocol = b""
        self.request_line = b""
        self.request_headers: dict[bytes, list] = {}   # lowercased name -> [name as seen, value]
        self.request_header_raw = bytearray()
        self.request_body = bytearray()
        self.request_body_len = 0
        self.request_complete = False
        self.hostname = b""
        self.host_raw = b""
        self.http09 = False
        self.response_line = b""
        self.response_protocol = b""
        self.status = b""
        self.status_code: int | None = None
        self.status_msg = b""
        self.response_headers: dict[bytes, list] = {}
        self.response_header_raw = bytearray()
        self.response_body = bytearray()
        self.response_body_len = 0
        self.response_complete = False
        self.response_started = False
        self.anomalies: list[str] = []
        self.request_truncated = False
        self.response_truncated = False
        self.request_codings: list[str] = []
        self.response_codings: list[str] = []
        self.repeated: set[tuple[bool, bytes]] = set()
        self.request_files: list[tuple[bytes, bytes]] = []   # multipart uploads: (filename, content)
        self.file_views: dict | None = None     # (to_server, index) -> HttpFile, made on demand

    # ------------------------------------------------------------------ header access
    def request_header(self, name: bytes) -> bytes | None:
        h = self.request_headers.get(name.lower())
        return None if h is None else h[1]

    def response_header(self, name: bytes) -> bytes | None:
        h = self.response_headers.get(name.lower())
        return None if h is None else h[1]

    # ------------------------------------------------------------------ Suricata buffers
    def buffer(self, keyword: str, to_server: bool | None = None) -> bytes | None:
        """The inspection buffer a Suricata keyword reads, or None when the tx has none.

        Keywords that exist in both directions (http.header, file.data, http.content_type, ...) need
        to_server; request-only and response-only keywords ignore it.
        """
        fn = _REQUEST_ONLY.get(keyword)
        if fn is not None:
            return fn(self)
        fn = _RESPONSE_ONLY.get(keyword)
        if fn is not None:
            return fn(self)
        fn = _BOTH.get(keyword)
        if fn is None:
            raise KeyError(f"unknown HTTP buffer {keyword!r}")
        if to_server is None:
            raise ValueError(f"{keyword} exists in both directions: pass to_server")
        return fn(self, to_server)

    def buffers(self, keyword: str, to_server: bool | None = None) -> list[bytes]:
        """Every buffer of a keyword as a list. Multi-buffer keywords: http.request_header and
        http.response_header ("Name: value" per header, Suricata 7); any single-buffer keyword gives
        [buffer] or []."""
        if keyword in ("http.request_header", "http.response_header"):
            headers = self.request_headers if keyword == "http.request_header" else self.response_headers
            return [n + b": " + v for n, v in headers.values()]
        if keyword == "file.name":
            return self.file_names(bool(to_server))
        if keyword in ("file.data", "file_data") and to_server and self.multipart_upload():
            # a multipart upload: each file is its own buffer (the parts captured so far while it arrives)
            if self.request_files:
                return [content for _, content in self.request_files]
            boundary = multipart.boundary_of(self.request_header(b"content-type"))
            return [content for _, content in multipart.files(bytes(self.request_body), boundary)]
        b = self.buffer(keyword, to_server)
        return [] if b is None else [b]

    def _headers(self, to_server: bool) -> dict[bytes, list]:
        return self.request_headers if to_server else self.response_headers

    def header_buffer(self, to_server: bool) -> bytes:
        """http.header: "Name: value\\r\\n" per header, Cookie (request) / Set-Cookie (response) left out."""
        skip = b"cookie" if to_server else b"set-cookie"
        parts: list[bytes] = []
        for k, (n, v) in self._headers(to_server).items():
            if k != skip:
                parts += (n, b": ", v, b"\r\n")     # (one join of the pieces: ~3x faster than formatting each)
        return b"".join(parts)

    def header_names_buffer(self, to_server: bool) -> bytes | None:
        headers = self._headers(to_server)
        if not headers:
            return None
        return b"\r\n" + b"\r\n".join([n for n, _ in headers.values()]) + b"\r\n\r\n"

    def start_buffer(self, to_server: bool) -> bytes | None:
        line = self.request_line if to_server else self.response_line
        if not line:
            return None
        parts = [line, b"\r\n"]
        for n, v in self._headers(to_server).values():
            parts += (n, b": ", v, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def multipart_upload(self) -> bool:
        """The request body is multipart/form-data (its files are the parts with a filename)."""
        return bool(self.request_files) or multipart.boundary_of(self.request_header(b"content-type")) is not None

    def files(self, to_server: bool) -> list[HttpFile]:
        """One HttpFile per file of the direction (see file_names); the same objects on every call."""
        names = self.file_names(to_server)
        if not names:
            return []
        views = self.file_views
        if views is None:
            views = self.file_views = {}
        out = []
        for i, name in enumerate(names):
            f = views.get((to_server, i))
            if f is None or f.name != name:
                f = views[(to_server, i)] = HttpFile(self, name, to_server, i)
            out.append(f)
        return out

    def file_names(self, to_server: bool) -> list[bytes]:
        """The names of the files this direction carries so far (Suricata's file.name): each multipart
        upload part with a filename once the request is parsed, else one file per non-empty body."""
        if to_server:
            if self.request_files:
                return [name for name, _ in self.request_files]
            if not self.request_body or multipart.boundary_of(self.request_header(b"content-type")):
                return []
            return [self.file_name(True)]
        return [self.file_name(False)] if self.response_body else []

    def file_name(self, to_server: bool) -> bytes:
        """Content-Disposition filename, else the URI path (Suricata's fileinfo.filename)."""
        cd = (self.request_header if to_server else self.response_header)(b"content-disposition")
        if cd:
            m = _CD_FILENAME_RE.search(cd)
            if m:
                name = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
                return name.split(b"''", 1)[1] if b"''" in name else name   # RFC 5987 charset''name
        path = split_uri(self.uri)[2] or b""
        return path

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"HttpTransaction({self.tx_id}, {self.method!r} {self.uri_raw!r} -> {self.status!r})"


def _hdr(name: bytes, to_server: bool):
    """A getter of one header's value (`name` lowercase, as the header dicts are keyed)."""
    if to_server:
        def get(tx: HttpTransaction) -> bytes | None:
            h = tx.request_headers.get(name)
            return None if h is None else h[1]
    else:
        def get(tx: HttpTransaction) -> bytes | None:
            h = tx.response_headers.get(name)
            return None if h is None else h[1]
    return get


def _opt(v: bytes) -> bytes | None:
    return v if v else None


def buffer_getter(keyword: str, to_server: bool):
    """The function behind HttpTransaction.buffer(keyword, to_server) as a plain `get(tx) -> bytes | None`, for a
    caller that fetches one keyword from many transactions (the IDS prefilter: the dispatch costs more than most
    buffers). None for keywords buffer() does not serve."""
    fn = _REQUEST_ONLY.get(keyword) or _RESPONSE_ONLY.get(keyword)
    if fn is not None:
        return fn
    both = _BOTH.get(keyword)
    if both is None:
        return None
    return lambda tx: both(tx, to_server)


_REQUEST_ONLY = {
    "http.method": lambda tx: _opt(tx.method),
    "http.uri": lambda tx: tx.uri if tx.request_line else None,
    "http.uri.raw": lambda tx: tx.uri_raw if tx.request_line else None,
    "http.request_line": lambda tx: _opt(tx.request_line),
    "http.request_body": lambda tx: _opt(bytes(tx.request_body)),
    "http.user_agent": _hdr(b"user-agent", True),
    "http.host": lambda tx: tx.hostname if (tx.hostname or tx.host_raw) else None,
    "http.host.raw": lambda tx: _opt(tx.host_raw),
    "http.accept": _hdr(b"accept", True),
    "http.accept_lang": _hdr(b"accept-language", True),
    "http.accept_enc": _hdr(b"accept-encoding", True),
    "http.referer": _hdr(b"referer", True),
    "http.connection": _hdr(b"connection", True),
}
_RESPONSE_ONLY = {
    "http.stat_code": lambda tx: _opt(tx.status),
    "http.stat_msg": lambda tx: _opt(tx.status_msg),
    "http.response_line": lambda tx: _opt(tx.response_line),
    "http.response_body": lambda tx: _opt(bytes(tx.response_body)),
    "http.server": _hdr(b"server", False),
    "http.location": _hdr(b"location", False),
}
_BOTH = {
    "http.header": lambda tx, ts: _opt(tx.header_buffer(ts)),
    "http.header.raw": lambda tx, ts: _opt(bytes(tx.request_header_raw if ts else tx.response_header_raw)),
    "http.cookie": lambda tx, ts: tx.request_header(b"cookie") if ts else tx.response_header(b"set-cookie"),
    "http.content_type": lambda tx, ts: (tx.request_header if ts else tx.response_header)(b"content-type"),
    "http.content_len": lambda tx, ts: (tx.request_header if ts else tx.response_header)(b"content-length"),
    "http.start": lambda tx, ts: tx.start_buffer(ts),
    "http.protocol": lambda tx, ts: _opt(tx.request_protocol if ts else tx.response_protocol),
    "http.header_names": lambda tx, ts: tx.header_names_buffer(ts),
    "file.data": lambda tx, ts: _opt(bytes(tx.request_body if ts else tx.response_body)),
}
# Older Suricata names for the same buffers.
_ALIASES = {
    "http_uri": "http.uri", "http_raw_uri": "http.uri.raw", "http_method": "http.method",
    "http_request_line": "http.request_line", "http_client_body": "http.request_body",
    "http_user_agent": "http.user_agent", "http_host": "http.host", "http_raw_host": "http.host.raw",
    "http_stat_code": "http.stat_code", "http_stat_msg": "http.stat_msg",
    "http_response_line": "http.response_line", "http_server_body": "http.response_body",
    "http_header": "http.header", "http_raw_header": "http.header.raw", "http_cookie": "http.cookie",
    "file_data": "file.data", "http_protocol": "http.protocol", "http_start": "http.start",
    "http_header_names": "http.header_names", "http_accept": "http.accept",
    "http_accept_lang": "http.accept_lang", "http_accept_enc": "http.accept_enc",
    "http_referer": "http.referer", "http_connection": "http.connection",
    "http_content_type": "http.content_type", "http_content_len": "http.content_len",
}
for _old, _new in _ALIASES.items():
    for _table in (_REQUEST_ONLY, _RESPONSE_ONLY, _BOTH):
        if _new in _table:
            _table[_old] = _table[_new]

HTTP_BUFFERS = frozenset(_REQUEST_ONLY) | frozenset(_RESPONSE_ONLY) | frozenset(_BOTH)
class HttpFile:
    """One file of a transaction as Suricata's file inspection sees it: file.name is this file's name,
    every other buffer and attribute is the transaction's."""

    __slots__ = ("_digests", "index", "name", "to_server", "tx")

    def __init__(self, tx: HttpTransaction, name: bytes, to_server: bool = False, index: int = 0):
        self.tx = tx
        self.name = name
        self.to_server = to_server
        self.index = index
        self._digests: dict[str, str] = {}

    def content(self) -> bytes | None:
        """The whole file once it is complete and was captured whole, else None (a hash of part of a
        file must never be compared with a hash list)."""
        tx = self.tx
        if self.to_server:
            if not tx.request_complete or tx.request_truncated:
                return None
            if tx.request_files:
                return tx.request_files[self.index][1] if self.index < len(tx.request_files) else None
            return bytes(tx.request_body)
        if not tx.response_complete or tx.response_truncated:
            return None
        return bytes(tx.response_body)

    def digest(self, algo: str) -> str | None:
        """Lowercase hex md5 / sha1 / sha256 of the complete file (None while it is not)."""
        d = self._digests.get(algo)
        if d is None:
            data = self.content()
            if data is None:
                return None
            d = self._digests[algo] = hashlib.new(algo, data).hexdigest()
        return d

    def buffers(self, keyword: str, to_server: bool | None = None) -> list[bytes]:
        if keyword == "file.name":
            return [self.name]
        return self.tx.buffers(keyword, to_server)

    def __getattr__(self, attr):
        return getattr(self.tx, attr)


HTTP_MULTI_BUFFERS = frozenset(("http.request_header", "http.response_header", "file.name"))


class _Direction:
    """Parse state of one direction of the connection."""

    __slots__ = (
        "buf",
        "captured_cap",
        "decoder",
        "header",
        "header_bytes",
        "left",
        "nheaders",
        "over_budget",
        "pos",
        "seen_100",
        "state",
        "to_server",
        "trailer",
        "tx",
        "wait",
    )

    def __init__(self, to_server: bool):
        self.to_server = to_server
        self.buf = bytearray()
        self.pos = 0
        self.state = _IDLE
        self.tx: HttpTransaction | None = None
        self.header: bytes | None = None    # header line being assembled (folding)
        self.nheaders = 0
        self.header_bytes = 0                # header text stored for the current message
        self.over_budget = False
        self.left = 0                        # bytes left in a Content-Length body or a chunk
        self.decoder: BodyDecoder | None = None
        self.captured_cap = 0
        self.trailer = False
        self.seen_100 = False
        self.wait = 0                        # 1: nothing happens before a LF (or CR); 2: before non-space


class HttpParser:
    """HTTP/1.x connection parser (both directions). See the module docstring for the events."""

    def __init__(self, limits: HttpLimits = DEFAULT_LIMITS):
        self.limits = limits
        self.req = _Direction(True)
        self.res = _Direction(False)
        self.waiting: deque[HttpTransaction] = deque()   # requests whose response has not started
        self.transactions: list[HttpTransaction] = []   # not yet completed, in request order
        self.next_tx_id = 0
        self.anomaly_count = 0
        self.last_request: HttpTransaction | None = None   # data that is no request line is its body
        self._events: list[AppEvent] = []

    # ------------------------------------------------------------------ public API
    def feed_toserver(self, data: bytes) -> list[AppEvent]:
        return self.feed(data, True)

    def feed_toclient(self, data: bytes) -> list[AppEvent]:
        return self.feed(data, False)

    def feed(self, data: bytes, to_server: bool) -> list[AppEvent]:
        d = self.req if to_server else self.res
        self._events = events = []
        if d.state == _DEAD or d.state == _TUNNEL or not data:
            return events
        try:
            wait = d.wait
            if wait and len(d.buf) - d.pos + len(data) <= self.limits.max_line and (
                    (wait == 1 and data.find(b"\n") < 0 and (d.to_server or data.find(b"\r") < 0))
                    or (wait == 2 and not data.strip(_WS_CTL))):
                # Nothing in these bytes can end what we are waiting for: keep them without
                # rescanning the buffer (tiny segments would otherwise cost O(n^2)).
                d.buf += data
                return events
            d.wait = 0
            if not d.buf and d.state in _BODY_STATES:
                # Fast path: body bytes with nothing buffered go straight through, no copy.
                used = self._body_direct(d, data)
                if used == len(data):
                    return events
                data = data[used:]
            d.buf += data
            self._run(d, False)
            if d.pos:
                del d.buf[:d.pos]
                d.pos = 0
        except Exception as e:  # noqa: BLE001 - a parser bug must never take the worker down
            self._give_up(d, f"internal_error:{type(e).__name__}")
        return events

    def eof(self, to_server: bool) -> list[AppEvent]:
        """The direction closed (FIN/RST/flow end): finish a close-delimited body and pending state."""
        d = self.req if to_server else self.res
        self._events = events = []
        if d.state == _DEAD or d.state == _TUNNEL:
            return events
        try:
            self._run(d, True)
            if d.tx is not None and d.state == _HEADERS:
                if d.pos < len(d.buf):             # a last header line without its LF
                    self._headers_line_at_eof(d)
                if d.header is not None:
                    self._header_line(d, d.header)
                    d.header = None
                if d.trailer:
                    self._body_done(d)
                else:
                    # The peer closed inside the headers: what was seen is still inspected.
                    self._anomaly(d.tx, "headers_truncated_at_close", to_server)
                    self._headers_done(d)
                    self._run(d, True)
            tx = d.tx
            if tx is not None and d.state in (_BODY_CLOSE, _BODY_CL, _CHUNK_LEN, _CHUNK_DATA, _CHUNK_END):
                if d.state != _BODY_CLOSE:
                    self._anomaly(tx, "body_truncated_at_close", to_server)
                self._body_done(d)
            d.state = _DEAD
            d.buf = bytearray()
            d.pos = 0
        except Exception as e:  # noqa: BLE001 - same: never raise out of a parser
            self._give_up(d, f"internal_error:{type(e).__name__}")
        return events

    def _headers_line_at_eof(self, d: _Direction) -> None:
        text = _chomp(bytes(d.buf[d.pos:]))
        d.pos = len(d.buf)
        if text[:1] in (b" ", b"\t") and d.header is not None:
            d.header += text
        elif text:
            if d.header is not None:
                self._header_line(d, d.header)
            d.header = text

    # ------------------------------------------------------------------ machinery
    def _emit(self, kind: str, tx, to_server: bool, data: bytes = b"", info: str = "") -> None:
        self._events.append(AppEvent(kind, tx, to_server, data, info))

    def _anomaly(self, tx, code: str, to_server: bool) -> None:
        names = _EVENT_NAMES.get(code)
        if names is not None:
            code = names[0] if to_server else names[1]
        self.anomaly_count += 1
        if tx is not None and len(tx.anomalies) < 64:
            tx.anomalies.append(code)
        self._emit("anomaly", tx, to_server, b"", code)

    def _give_up(self, d: _Direction, why: str) -> None:
        self._anomaly(d.tx, why, d.to_server)
        self._anomaly(d.tx, "gave_up", d.to_server)
        d.state = _DEAD
        d.buf = bytearray()
        d.pos = 0

    def _line(self, d: _Direction) -> bytes | None:
        return self._cut_line(d, d.buf.find(b"\n", d.pos), True)

    def _cut_line(self, d: _Direction, i: int, wait_lf: bool) -> bytes | None:
        """The line ending at index i (-1: not complete yet, wait for more when wait_lf), bounded by max_line."""
        if i == -1:
            if len(d.buf) - d.pos > self.limits.max_line:
                self._give_up(d, "line_too_long")
            if wait_lf:
                d.wait = 1
            return None
        if i + 1 - d.pos > self.limits.max_line:
            self._give_up(d, "line_too_long")
            return None
        line = bytes(d.buf[d.pos:i + 1])
        d.pos = i + 1
        return line

    def _line_res(self, d: _Direction, at_eof: bool) -> bytes | None:
        """Response lines end at LF or at a CR not followed by LF (libhtp and browsers agree)."""
        buf = d.buf
        end = len(buf)
        i = buf.find(b"\n", d.pos)
        limit = i if i != -1 else end
        cr = buf.find(b"\r", d.pos, limit)
        wait_lf = True
        while cr != -1:
            if cr + 1 >= end:
                i = cr if at_eof else -1   # a CR at the very end: wait to see what follows
                wait_lf = False
                break
            nb = buf[cr + 1]
            if nb == 0x0A:
                break
            if nb != 0x0D:
                i = cr                     # lone CR ends the line; CR CR does not (http-evader)
                break
            cr = buf.find(b"\r", cr + 1, limit)
        return self._cut_line(d, i, wait_lf)

    def _run(self, d: _Direction, at_eof: bool) -> None:
        while True:
            st = d.state
            if st == _IDLE:
                progressed = self._start_line(d, at_eof)
            elif st == _HEADERS:
                progressed = self._headers(d, at_eof)
            elif st == _BODY_CL or st == _CHUNK_DATA:
                progressed = self._body_counted(d)
            elif st == _CHUNK_LEN:
                progressed = self._chunk_len(d, at_eof)
            elif st == _CHUNK_END:
                progressed = self._chunk_end(d)
            elif st == _BODY_CLOSE:
                n = len(d.buf) - d.pos
                if n:
                    self._body_data(d, bytes(d.buf[d.pos:]))
                    d.pos = len(d.buf)
                progressed = False
            elif st == _TUNNEL:
                d.buf = bytearray()
                d.pos = 0
                progressed = False
            else:
                progressed = False
            if not progressed:
                return

    # ------------------------------------------------------------------ start lines
    def _start_line(self, d: _Direction, at_eof: bool) -> bool:
        if d.pos >= len(d.buf):
            return False
        if not d.to_server:
            tx = self.waiting[0] if self.waiting else None
            if tx is not None and tx.http09:
                # An HTTP/0.9 request gets a bare body back, no status line.
                self._begin_response(d)
                d.state = _BODY_CLOSE
                return True
        start = d.pos
        line = self._line(d) if d.to_server else self._line_res(d, at_eof)
        if line is None:
            if at_eof and d.pos < len(d.buf) and d.state == _IDLE:
                line = bytes(d.buf[d.pos:])
                d.pos = len(d.buf)
            else:
                return False
        if not line.strip(_WS_CTL + b"\x00"):
            return True          # blank lines between messages are ignored (as libhtp and browsers do)
        if d.to_server:
            prev = self.last_request
            if prev is not None:
                word = line.lstrip(b" \t\x0b\x0c").split(None, 1)[:1]
                if word and word[0] not in _KNOWN_METHODS:
                    # libhtp: a line after a request that does not start with a method is more of
                    # that request's body ("Unexpected request body"), not a new request.
                    if "request_body_unexpected" not in prev.anomalies:
                        self._anomaly(prev, "request_body_unexpected", True)
                    prev.request_body_len += len(line)
                    self._store_body(d, prev, line)
                    return True
            # "GET /" alone is HTTP/0.9 only if no header line follows (libhtp); wait for the next
            # line to tell.
            if (not at_eof and not _has_protocol(line) and d.buf.find(b"\n", d.pos) == -1
                    and len(d.buf) - d.pos <= self.limits.max_line):
                d.pos = start
                d.wait = 1
                return False
            self._request_line(d, line)
            return True
        if not _is_status_line(line):
            # One line of junk before a real status line is skipped (http-evader); otherwise the
            # response is body.
            nxt = self._line_res(d, at_eof)
            if nxt is None and d.state != _DEAD and not at_eof:
                d.pos = start
                return False
            if nxt is not None and _is_status_line(nxt):
                tx = self.waiting[0] if self.waiting else None
                self._anomaly(tx, "junk_before_response_line", False)
                line = nxt
            elif d.state != _DEAD:
                d.pos = start + len(line)
        self._response_line(d, line)
        return True

    def _request_line(self, d: _Direction, line: bytes) -> None:
        lim = self.limits
        if len(self.waiting) >= lim.max_transactions:
            self._give_up(d, "too_many_transactions")
            return
        tx = HttpTransaction(self.next_tx_id)
        self.next_tx_id += 1
        self.transactions.append(tx)
        self.waiting.append(tx)
        d.tx = tx
        text = _chomp(line)
        tx.request_line = text
        if text[:1] in (b" ", b"\t"):
            self._anomaly(tx, "request_line_leading_whitespace", True)
        tx.method, tx.uri_raw, tx.request_protocol = _split_request_line(text)
        if not tx.method or any(c not in _TOKEN_CHARS for c in tx.method):
            self._anomaly(tx, "request_method_invalid", True)
        if not tx.uri_raw and tx.request_protocol:
            self._anomaly(tx, "request_uri_missing", True)
        if tx.uri_raw.find(b" ") >= 0 or tx.uri_raw.find(b"\t") >= 0:
            self._anomaly(tx, "uri_contains_whitespace", True)
        if tx.uri_raw.find(b"%25") >= 0 and _DOUBLE_ENCODED_RE.search(tx.uri_raw):
            self._anomaly(tx, "double_encoded_uri", True)
        tx.uri, uri_host = normalize_uri(tx.uri_raw)
        if uri_host:
            tx.hostname = uri_host
            tx.host_raw = split_uri(tx.uri_raw)[1]
        d.header = None
        d.nheaders = 0
        d.header_bytes = 0
        d.over_budget = False
        d.trailer = False
        if not tx.request_protocol:
            self._anomaly(tx, "request_line_missing_protocol", True)
            nl = d.buf.find(b"\n", d.pos)
            if nl == -1 or d.buf[d.pos:nl + 1] in (b"\n", b"\r\n"):
                # HTTP/0.9: no headers, no body.
                tx.http09 = True
                self._emit("request_headers", tx, True)
                self._request_done(d)
                return
            # Header lines follow: parse them (the request is just missing its protocol).
        if tx.request_protocol and not tx.request_protocol.startswith(b"HTTP/"):
            self._anomaly(tx, "request_protocol_invalid", True)
        d.state = _HEADERS

    def _begin_response(self, d: _Direction) -> HttpTransaction:
        if self.waiting:
            tx = self.waiting.popleft()
        else:
            tx = HttpTransaction(self.next_tx_id)
            self.next_tx_id += 1
            self.transactions.append(tx)
            tx.request_complete = True
            self._anomaly(tx, "unable_to_match_response_to_request", False)
        tx.response_started = True
        d.tx = tx
        d.header = None
        d.nheaders = 0
        d.header_bytes = 0
        d.over_budget = False
        d.trailer = False
        d.seen_100 = False
        self._setup_body(d, tx, [])
        return tx

    def _response_line(self, d: _Direction, line: bytes) -> None:
        tx = d.tx if (d.tx is not None and d.seen_100 and not d.tx.response_complete) else None
        if tx is None:
            tx = self._begin_response(d)
        text = _chomp(line)
        lead = text.lstrip(_WS_CTL + b"\x00")
        if lead[:4].upper() != b"HTTP":
            # Not a status line: browsers show it as content, so libhtp treats the rest as body.
            self._anomaly(tx, "response_line_not_http", False)
            tx.response_line = b""
            self._emit("response_headers", tx, False)
            d.state = _BODY_CLOSE
            self._body_data(d, line)
            return
        if len(lead) != len(text):
            self._anomaly(tx, "response_line_leading_whitespace", False)
        tx.response_line = text
        parts = lead.split(None, 2)
        tx.response_protocol = parts[0]
        tx.status = parts[1] if len(parts) > 1 else b""
        tx.status_msg = parts[2].strip(b" \t") if len(parts) > 2 else b""
        code = None
        if tx.status.isdigit() and len(tx.status) == 3:
            code = int(tx.status)
        else:
            self._anomaly(tx, "response_status_invalid", False)
        tx.status_code = code
        tx.response_headers = {}
        tx.response_header_raw = bytearray()
        d.header_bytes = 0
        d.over_budget = False
        d.state = _HEADERS

    # ------------------------------------------------------------------ headers
    def _headers_block(self, d: _Direction) -> bool:
        """Fast path: a whole, plain CRLF header block already in the buffer is parsed in one go.

        Only blocks where the line-by-line path could not do anything different qualify: every line
        ends in CRLF (no bare CR or LF), nothing is folded, no line or count limit is near.
        """
        buf = d.buf
        end = buf.find(b"\r\n\r\n", d.pos)
        if end == -1 or buf.startswith(b"\r\n", d.pos):    # (an empty block ends right away)
            return False
        block = bytes(buf[d.pos:end])
        if not block:
            return False
        lim = self.limits
        crlf = block.count(b"\r\n")
        tx = d.tx
        raw = tx.request_header_raw if d.to_server else tx.response_header_raw
        if (block.count(b"\n") != crlf or block.count(b"\r") != crlf or crlf + 1 > lim.max_headers
                or block[:1] in (b" ", b"\t", b"\x00") or block.find(b"\r\n ") >= 0 or block.find(b"\r\n\t") >= 0
                or block.find(b"\r\n\x00") >= 0 or len(raw) + len(block) + 4 > lim.max_header_bytes):
            return False
        lines = block.split(b"\r\n")
        if len(block) > lim.max_line and max(len(x) for x in lines) + 2 > lim.max_line:
            return False
        raw += block
        raw += b"\r\n\r\n"
        d.pos = end + 4
        header_line = self._header_line
        headers = tx.request_headers if d.to_server else tx.response_headers
        budget = lim.max_header_bytes
        for text in lines:
            # Inline common case: "Name: value", a new name, nothing odd; the rest goes the long way.
            colon = text.find(b":")
            if colon > 0:
                name = text[:colon]
                key = name.lower()
                if (key not in headers and name[-1] not in _NAME_END_ODD and name.find(b"\x00") < 0
                        and d.header_bytes + len(text) <= budget):
                    d.nheaders += 1
                    d.header_bytes += len(text)
                    headers[key] = [name, text[colon + 1:].strip(b" \t")]
                    continue
            header_line(d, text)
        self._headers_done(d)
        return True

    def _headers(self, d: _Direction, at_eof: bool = False) -> bool:
        if d.header is None and d.nheaders == 0 and not d.trailer and self._headers_block(d):
            return True
        start = d.pos
        line = self._line(d) if d.to_server else self._line_res(d, at_eof)
        if line is None:
            return False
        if line in (b" \n", b"\t\n"):
            # libhtp: a lone whitespace line ends the headers unless another LF follows right away.
            if d.pos >= len(d.buf) and not at_eof:
                d.pos = start
                return False
            if d.pos >= len(d.buf) or d.buf[d.pos] != 0x0A:
                self._anomaly(d.tx, "whitespace_line_ends_headers", d.to_server)
                line = b"\n"
        tx = d.tx
        raw = tx.request_header_raw if d.to_server else tx.response_header_raw
        if not d.trailer and len(raw) + len(line) <= self.limits.max_header_bytes:
            raw += line
        if line == b"\r\n" or line == b"\n" or line == b"\r" or line == b"\r\r\n":
            if d.header is not None:
                self._header_line(d, d.header)
                d.header = None
            if d.trailer:
                self._body_done(d)
            else:
                self._headers_done(d)
            return True
        text = _chomp(line)
        if text[:1] in (b" ", b"\t", b"\x00") and not _looks_like_header(text):
            if d.header is None:
                self._anomaly(tx, "invalid_header_folding", d.to_server)
                d.header = text
            else:
                if len(d.header) + len(text) > self.limits.max_line:
                    self._give_up(d, "header_too_long")
                    return False
                d.header += text
            return True
        if d.header is not None:
            self._header_line(d, d.header)
        if text[:1] in (b" ", b"\t", b"\x00"):
            self._anomaly(tx, "folded_line_looks_like_header", d.to_server)
            text = text.lstrip(b" \t\x00")
        d.header = text
        return True

    def _header_line(self, d: _Direction, text: bytes) -> None:
        tx = d.tx
        d.nheaders += 1
        if d.nheaders > self.limits.max_headers:
            if d.nheaders == self.limits.max_headers + 1:
                self._anomaly(tx, "too_many_headers", d.to_server)
            return
        colon = text.find(b":")
        if colon == -1:
            self._anomaly(tx, "header_missing_colon", d.to_server)
            name = b""
            value = text.strip(b" \t")
        else:
            name = text[:colon]
            if name.find(b"\x00") >= 0:
                self._anomaly(tx, "header_name_nul", d.to_server)
                name = name.replace(b"\x00", b"")
            if name[-1:].isspace():
                self._anomaly(tx, "header_name_trailing_whitespace", d.to_server)
                name = name.rstrip(_WS_CTL)
            if not name:
                self._anomaly(tx, "header_name_empty", d.to_server)
            value = text[colon + 1:].strip(b" \t")
        if d.trailer:
            return            # trailers are parsed (for limits) but do not change the headers
        headers = tx.request_headers if d.to_server else tx.response_headers
        key = name.lower()
        d.header_bytes += len(text)
        if d.header_bytes > self.limits.max_header_bytes and key not in _FRAMING_HEADERS:
            # Past the budget only the headers that decide framing and decoding are kept.
            if not d.over_budget:
                d.over_budget = True
                self._anomaly(tx, "header_too_long", d.to_server)
            return
        have = headers.get(key)
        if have is None:
            headers[key] = [name, value]
        elif key == b"content-length":
            if parse_content_length(have[1]) != parse_content_length(value):
                self._anomaly(tx, "duplicate_content_length_field", d.to_server)
            # libhtp keeps the first Content-Length
        else:
            if (d.to_server, key) not in tx.repeated:
                tx.repeated.add((d.to_server, key))      # reported once per header name
                self._anomaly(tx, "header_repetition", d.to_server)
            have[1] = have[1] + b", " + value

    def _headers_done(self, d: _Direction) -> None:
        tx = d.tx
        if d.to_server:
            host = tx.request_header(b"host")
            if host is not None and not tx.host_raw:
                tx.host_raw = host
                tx.hostname = normalize_host(host)
            elif host is not None and normalize_host(host) != tx.hostname:
                self._anomaly(tx, "host_header_ambiguous", True)
            auth = tx.request_header(b"authorization")
            if auth is not None and auth.split(None, 1)[:1] and auth.split(None, 1)[0].lower() not in _AUTH_SCHEMES:
                self._anomaly(tx, "request_auth_unrecognized", True)
            elif host is None and tx.request_protocol.upper() == b"HTTP/1.1" and not tx.host_raw:
                self._anomaly(tx, "missing_host_header", True)
            self._emit("request_headers", tx, True)
            self._request_body_mode(d, tx)
        else:
            code = tx.status_code
            if code == 100:
                if d.seen_100:
                    self._anomaly(tx, "duplicate_100_continue", False)
                d.seen_100 = True
                tx.response_headers = {}
                tx.response_header_raw = bytearray()
                d.state = _IDLE
                return
            self._emit("response_headers", tx, False)
            if code == 101 or (tx.method.upper() == b"CONNECT" and code is not None and 200 <= code < 300):
                # The connection stops being HTTP; nothing more to parse in either direction.
                self._response_done(d)
                d.state = _TUNNEL
                self.req.state = _TUNNEL
                return
            self._response_body_mode(d, tx)

    def _transfer_mode(self, d: _Direction, headers_of) -> str:
        tx = d.tx
        te = headers_of(b"transfer-encoding")
        cl = headers_of(b"content-length")
        if te is not None and b"chunked" in te.replace(b"\x00", b"").lower():
            if te.strip().lower() != b"chunked":
                self._anomaly(tx, "abnormal_transfer_encoding", d.to_server)
            if cl is not None:
                self._anomaly(tx, "content_length_with_chunked", d.to_server)
            return "chunked"
        if te is not None:
            self._anomaly(tx, "invalid_transfer_encoding", d.to_server)
        if cl is not None:
            n = parse_content_length(cl)
            if n is None:
                self._anomaly(tx, "invalid_content_length", d.to_server)
                return "invalid"
            if cl.strip(b" \t") != str(n).encode():
                self._anomaly(tx, "content_length_extra_data", d.to_server)
            d.left = n
            return "cl"
        return "none"

    def _request_body_mode(self, d: _Direction, tx: HttpTransaction) -> None:
        mode = self._transfer_mode(d, tx.request_header)
        codings: list[str] = []
        ce = tx.request_header(b"content-encoding")
        if ce is not None:
            # libhtp decodes compressed request bodies too (http-post-data-decompression)
            codings, unknown = parse_content_encoding(ce.replace(b"\x00", b""))
            if unknown:
                self._anomaly(tx, "unknown_content_encoding", True)
        self._setup_body(d, tx, codings)
        if mode == "chunked":
            d.state = _CHUNK_LEN
        elif mode == "cl" and d.left > 0:
            d.state = _BODY_CL
        else:
            self._request_done(d)

    def _response_body_mode(self, d: _Direction, tx: HttpTransaction) -> None:
        code = tx.status_code
        if tx.method.upper() == b"HEAD":
            self._response_done(d)
            return
        if code is not None and (100 <= code < 200 or code in (204, 304)):
            te = tx.response_header(b"transfer-encoding")
            cl = parse_content_length(tx.response_header(b"content-length") or b"")
            if not ((te is not None and b"chunked" in te.lower()) or cl):
                self._response_done(d)
                return
            # The RFC says no body, but a client that reads one anyway would get content we must see.
            self._anomaly(tx, "body_on_bodyless_status", False)
        ce = tx.response_header(b"content-encoding")
        codings: list[str] = []
        if ce is not None:
            codings, unknown = parse_content_encoding(ce.replace(b"\x00", b""))
            if unknown:
                self._anomaly(tx, "unknown_content_encoding", False)
        self._setup_body(d, tx, codings)
        mode = self._transfer_mode(d, tx.response_header)
        if mode == "chunked":
            d.state = _CHUNK_LEN
        elif mode == "cl":
            if d.left > 0:
                d.state = _BODY_CL
            else:
                self._response_done(d)
        else:
            # No length (or a broken one): the body runs until the server closes.
            d.state = _BODY_CLOSE

    def _setup_body(self, d: _Direction, tx: HttpTransaction, codings: list[str]) -> None:
        lim = self.limits
        inspect = lim.request_body_limit if d.to_server else lim.response_body_limit
        d.captured_cap = max(inspect, lim.file_limit)
        d.decoder = None
        if codings:
            d.decoder = BodyDecoder(codings, d.captured_cap, lim.decompress_layer_limit, lim.lzma_enabled)
            if d.to_server:
                tx.request_codings = codings
            else:
                tx.response_codings = codings

    # ------------------------------------------------------------------ bodies
    def _body_direct(self, d: _Direction, data: bytes) -> int:
        """Consume body bytes straight from `data`; return how many were used."""
        n = len(data)
        if n < d.left and d.decoder is None and d.state != _BODY_CLOSE:
            # Most segments of a long Content-Length or chunked body: inside the body, nothing to
            # decode, no state change. Count and capture them with one call instead of four
            # (~0.95 -> ~0.68 us per 1,400-byte segment; the capture copy itself is ~0.14 us).
            d.left -= n
            tx = d.tx
            if d.to_server:
                tx.request_body_len += n
            else:
                tx.response_body_len += n
            self._store_body(d, tx, data)
            return n
        if d.state == _BODY_CLOSE:
            self._body_data(d, data)
            return len(data)
        n = min(len(data), d.left)
        self._body_data(d, data if n == len(data) else data[:n])
        d.left -= n
        if d.left == 0:
            if d.state == _CHUNK_DATA:
                d.state = _CHUNK_END
            else:
                self._body_done(d)
        return n

    def _body_counted(self, d: _Direction) -> bool:
        avail = len(d.buf) - d.pos
        if avail <= 0:
            return False
        n = min(avail, d.left)
        self._body_data(d, bytes(d.buf[d.pos:d.pos + n]))
        d.pos += n
        d.left -= n
        if d.left == 0:
            if d.state == _CHUNK_DATA:
                d.state = _CHUNK_END
            else:
                self._body_done(d)
            return True
        return False

    def _chunk_len(self, d: _Direction, at_eof: bool) -> bool:
        buf = d.buf
        end = len(buf)
        m = _CHUNK_LEN_RE.match(buf, d.pos)
        s, e = m.span(1)
        if s == end:
            if end - d.pos > self.limits.max_line:
                self._give_up(d, "chunk_length_line_too_long")
            d.wait = 2
            return False
        if s == e:
            self._invalid_chunk(d)
            return True
        nl = buf.find(b"\n", s)
        if nl == -1:
            if end - d.pos > self.limits.max_line:
                self._give_up(d, "chunk_length_line_too_long")
            d.wait = 1
            return False
        tail = bytes(buf[e:nl]).strip(_WS_CTL)
        if tail:
            self._anomaly(d.tx, "chunk_extension" if tail.startswith(b";") else "chunk_length_extra_data",
                          d.to_server)
        size = int(bytes(buf[s:e]), 16) if e - s <= 16 else 1 << 64
        if size > 0x7FFFFFFF:
            self._invalid_chunk(d)
            return True
        d.pos = nl + 1
        if size == 0:
            d.trailer = True
            d.header = None
            d.state = _HEADERS
        else:
            d.left = size
            d.state = _CHUNK_DATA
        return True

    def _invalid_chunk(self, d: _Direction) -> None:
        # libhtp: not chunked after all; everything from here to the close is body.
        self._anomaly(d.tx, "invalid_chunk_length", d.to_server)
        d.state = _BODY_CLOSE

    def _chunk_end(self, d: _Direction) -> bool:
        i = d.buf.find(b"\n", d.pos)
        if i == -1:
            if len(d.buf) - d.pos > self.limits.max_line:
                self._give_up(d, "chunk_data_end_too_long")
            d.wait = 1
            return False
        if i - d.pos > 1:
            self._anomaly(d.tx, "chunk_data_end_junk", d.to_server)
        d.pos = i + 1
        d.state = _CHUNK_LEN
        return True

    def _body_data(self, d: _Direction, data: bytes) -> None:
        tx = d.tx
        if d.to_server:
            tx.request_body_len += len(data)
        else:
            tx.response_body_len += len(data)
        if d.decoder is not None:
            data = d.decoder.feed(data)
        self._store_body(d, tx, data)

    def _store_body(self, d: _Direction, tx: HttpTransaction, data: bytes) -> None:
        if not data:
            return
        body = tx.request_body if d.to_server else tx.response_body
        room = d.captured_cap - len(body)
        if room <= 0:
            self._mark_truncated(d, tx)
            return
        if len(data) > room:
            data = data[:room]
            self._mark_truncated(d, tx)
        body += data
        inspect = self.limits.request_body_limit if d.to_server else self.limits.response_body_limit
        start = len(body) - len(data)
        if start < inspect:
            self._emit("request_body" if d.to_server else "response_body", tx, d.to_server,
                       data[:inspect - start])

    def _mark_truncated(self, d: _Direction, tx: HttpTransaction) -> None:
        if d.to_server:
            tx.request_truncated = True
        else:
            tx.response_truncated = True

    def _body_done(self, d: _Direction) -> None:
        tx = d.tx
        if d.decoder is not None:
            self._store_body(d, tx, d.decoder.finish())
            if d.decoder.truncated:
                self._mark_truncated(d, tx)
            for code in d.decoder.anomalies:
                self._anomaly(tx, code, d.to_server)
            d.decoder = None
        if d.to_server:
            self._request_done(d)
        else:
            self._response_done(d)

    def _file_event(self, d: _Direction, tx: HttpTransaction) -> None:
        body = tx.request_body if d.to_server else tx.response_body
        if not body:
            return
        if d.to_server:
            boundary = multipart.boundary_of(tx.request_header(b"content-type"))
            if boundary is not None:
                # A form upload: each part with a filename is a file of its own (as Suricata logs).
                parts = multipart.files(bytes(body), boundary)
                tx.request_files = parts
                for fname, content in parts:
                    self._emit("file", tx, True, content[:self.limits.file_limit],
                               fname.decode("utf-8", "replace"))
                return
        name = tx.file_name(d.to_server).decode("utf-8", "replace")
        self._emit("file", tx, d.to_server, bytes(body[:self.limits.file_limit]), name)

    def _request_done(self, d: _Direction) -> None:
        tx = d.tx
        tx.request_complete = True
        self.last_request = tx
        self._file_event(d, tx)
        self._emit("request_complete", tx, True)
        d.state = _IDLE
        d.tx = None
        self._maybe_retire(tx)

    def _response_done(self, d: _Direction) -> None:
        tx = d.tx
        tx.response_complete = True
        self._file_event(d, tx)
        self._emit("response_complete", tx, False)
        d.state = _IDLE
        d.tx = None
        self._maybe_retire(tx)

    def _maybe_retire(self, tx: HttpTransaction) -> None:
        if tx.request_complete and tx.response_complete:
            try:
                self.transactions.remove(tx)
            except ValueError:
                pass
