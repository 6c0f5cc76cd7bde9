"""Incremental, sans-I/O SMTP parser with MIME decoding, following Suricata 7's app-layer-smtp.c.

One SmtpParser per TCP connection: `feed(data, to_server)` with the contiguous bytes of each direction,
returns a list of AppEvent:

    command     a client command line was parsed (tx = the transaction it belongs to; info = the verb)
    reply       a complete (possibly multi-line) server reply (info = the code)
    file        an attachment ended (data = its decoded bytes up to file_limit, info = its name)
    tx_complete the mail ended (end of DATA / BDAT LAST and the server's answer, or RSET)
    anomaly     info = Suricata's smtp event name (invalid_reply, bdat_chunk_len_exceeded, mime_invalid_base64...)

Transactions are Suricata's: one per mail, from the first command after the previous mail ended
(HELO/EHLO and MAIL FROM go into it) to the end of its DATA or BDAT LAST (or an RSET). Commands are
queued and matched to replies in order, so pipelined commands (RFC 2920) work; multi-line replies
("250-..." lines) count once. After DATA is answered with 354 (or at once when the server announced
PIPELINING, as Suricata does) the message is read line by line up to the lone "." line; leading dots
are unstuffed (RFC 5321 4.5.2). BDAT chunks (RFC 3030) are read by byte count. After a STARTTLS that the
server accepts (220) nothing more is parsed: the rest of the connection is TLS (`done`).

The message goes through a MIME decoder (util-decode-mime.c semantics): headers (folded lines joined),
multipart bodies with nested boundaries, message/rfc822 parts, Content-Transfer-Encoding base64 and
quoted-printable. As in Suricata, a part is a file (an attachment) when its Content-Disposition has a
filename or its Content-Type a name (RFC 2231 `filename*0=`, `filename*1=`... continuations joined);
the decoded bytes of those files are the smtp `file.data` buffers. Text parts without a name are no files
(Suricata 7 logs no file for them and file.data does not see them).

Everything is bounded (SmtpLimits): command/reply lines (max_line; longer ones are cut and the rest of
the line discarded, with an event), queued commands, recipients, MIME nesting, parts, headers per part,
file bytes kept per file and files per mail. Nothing raises: malformed input becomes anomaly events and
parsing goes on; an internal error gives the direction up ("gave_up").
"""
from __future__ import annotations

import binascii
import re
from collections import deque
from dataclasses import dataclass

from .common import AppEvent


@dataclass(frozen=True)
class SmtpLimits:
    max_line: int = 4096                 # Suricata SMTP_LINE_BUFFER_LIMIT: longest command/reply line kept
    max_pending_commands: int = 256      # commands waiting for their reply (pipelining)
    max_recipients: int = 256            # RCPT TO kept per transaction
    max_mime_depth: int = 16             # nested multiparts / message parts
    max_parts: int = 512                 # MIME parts per mail
    max_headers: int = 256               # header lines kept per MIME part
    max_header_value: int = 2000         # Suricata MAX_HEADER_VALUE: longer values are cut (with an event)
    max_mime_line: int = 8192            # a message line longer than this is decoded in pieces (Suricata: 8192)
    # Decoded bytes kept per file for inspection (file.data); the rest is counted only. Held while the mail
    # is open, so it multiplies by concurrent mails, as HttpLimits.file_limit does.
    file_limit: int = 256 * 1024
    max_files: int = 64                  # attachments kept per mail (more are counted, not kept)


DEFAULT_LIMITS = SmtpLimits()

# Suricata's smtp app-layer events (app-layer-smtp.c smtp_decoder_event_table), lowercase as rules name
# them, and the few of our own (gave_up, mime_too_many_parts).
SMTP_EVENTS = frozenset((
    "invalid_reply", "unable_to_match_reply_with_request", "max_command_line_len_exceeded",
    "max_reply_line_len_exceeded", "invalid_pipelined_sequence", "bdat_chunk_len_exceeded",
    "no_server_welcome_message", "tls_rejected", "data_command_rejected",
    "mime_parse_failed", "mime_malformed_msg", "mime_invalid_base64", "mime_invalid_qp", "mime_long_line",
    "mime_long_enc_line", "mime_long_header_name", "mime_long_header_value", "mime_long_boundary",
    "mime_long_filename", "duplicate_fields", "unparsable_content", "truncated_line",
    "gave_up", "mime_too_many_parts",
))

# Suricata accepts the reply codes of its table only (smtp_reply_map); any other is an invalid reply
_REPLY_CODES = frozenset((b"211", b"214", b"220", b"221", b"235", b"250", b"251", b"252", b"334", b"354",
                          b"421", b"450", b"451", b"452", b"455", b"500", b"501", b"502", b"503", b"504",
                          b"550", b"551", b"552", b"553", b"554", b"555"))

# queued command kinds (what a reply is matched against)
_CMD_OTHER, _CMD_STARTTLS, _CMD_DATA, _CMD_BDAT, _CMD_DATA_END, _CMD_RSET, _CMD_BDAT_END = range(7)

MAX_BOUNDARY_LEN = 254      # Suricata: longer is mime_long_boundary (and the MIME parse fails)
MAX_HEADER_NAME = 75        # RFC 2045 via Suricata: longer is mime_long_header_name
MAX_LINE_LEN = 998          # RFC 5322 line length: longer is mime_long_line
MAX_ENC_LINE_LEN = 76       # RFC 2045 encoded line length: longer is mime_long_enc_line
MAX_FILENAME_LEN = 255      # Suricata SC_FILENAME_MAX: a longer name is cut (mime_long_filename)

_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_INVALID = re.compile(rb"[^A-Za-z0-9+/=]")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_PARAM_RE = re.compile(rb"""(?:^|;)\s*([A-Za-z0-9_.*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"?|([^;]*))""")


def header_params(value: bytes) -> dict[bytes, bytes]:
    """The parameters of a structured header value (`type/sub; a=1; b="x y"`), names lowercased. RFC 2231
    continuations (`filename*0=..; filename*1=..`) are joined under the plain name; `name*=charset''x` is
    decoded to x (its percent escapes undone)."""
    out: dict[bytes, bytes] = {}
    cont: dict[bytes, dict[int, bytes]] = {}
    for m in _PARAM_RE.finditer(value):
        name = m.group(1).lower()
        v = m.group(2) if m.group(2) is not None else (m.group(3) or b"").strip()
        if m.group(2) is not None:
            v = re.sub(rb"\\(.)", rb"\1", v)
        extended = name.endswith(b"*")
        if extended:
            name = name[:-1]
            if b"''" in v:
                v = v.split(b"''", 1)[1]
            v = re.sub(rb"%([0-9A-Fa-f]{2})", lambda x: bytes([int(x.group(1), 16)]), v)
        base, star, idx = name.partition(b"*")
        if star and idx.isdigit():
            if len(cont) < 16:
                cont.setdefault(base, {})[int(idx)] = v
            continue
        if name not in out:
            out[name] = v
    for base, parts in cont.items():
        if base not in out:
            out[base] = b"".join(parts[i] for i in sorted(parts)[:64])
    return out


class SmtpFile:
    """One attachment of a mail: its name, the decoded bytes kept (up to file_limit) and its full size."""

    __slots__ = ("closed", "data", "name", "size", "truncated")

    def __init__(self, name: bytes):
        self.name = name
        self.data = bytearray()
        self.size = 0
        self.closed = False
        self.truncated = False

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"SmtpFile({self.name!r}, {self.size}B{' closed' if self.closed else ''})"


class SmtpTransaction:
    """One mail (Suricata's SMTP transaction) and what detection and the EVE log read from it."""

    __slots__ = ("anomalies", "attachments", "complete", "data_done", "file_count", "files", "headers", "helo",
                 "mail_from", "mime_status", "rcpt_to", "tx_id")

    def __init__(self, tx_id: int, helo: bytes | None):
        self.tx_id = tx_id
        self.helo = helo
        self.mail_from: bytes | None = None
        self.rcpt_to: list[bytes] = []
        self.headers: dict[bytes, bytes] = {}       # the message's own headers, lowercase name -> value
        self.files: list[SmtpFile] = []
        self.file_count = 0                          # files seen, kept or not
        self.attachments: list[bytes] = []           # names of the attachments (email.attachment)
        self.anomalies: list[str] = []
        self.data_done = False                       # the message ended (lone "." / BDAT LAST)
        self.complete = False                        # ...and the server answered it (or RSET / STARTTLS)
        self.mime_status: str | None = None          # Suricata's email.status once the message started

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name.lower())

    def file_data(self) -> list[bytes]:
        """file.data: the decoded bytes of each attachment so far (as much as was kept)."""
        return [bytes(f.data) for f in self.files if f.data]

    def buffers(self, keyword: str, to_server: bool | None = None) -> list[bytes]:
        if keyword in ("file.data", "file_data"):
            return self.file_data() if to_server is not False else []
        if keyword == "file.name":
            return [f.name for f in self.files] if to_server is not False else []
        return []

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"SmtpTransaction({self.tx_id}, from={self.mail_from!r}, files={len(self.files)})"


class _Entity:
    """One MIME entity (the message or a part) while it is parsed."""

    __slots__ = ("attachment", "b64", "boundary", "encoding", "file", "header", "headers", "multipart",
                 "nheaders", "pending_eol", "rfc822")

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.header: bytes | None = None        # header line being assembled (folding)
        self.nheaders = 0
        self.boundary: bytes | None = None      # b"--" + boundary, for a multipart
        self.multipart = False
        self.rfc822 = False
        self.encoding = b""
        self.attachment: bytes | None = None    # file name
        self.file: SmtpFile | None = None
        self.b64 = bytearray()                  # base64 characters waiting for a full quad
        self.pending_eol = b""                  # a line end held back: it belongs to a boundary if one follows


# MIME parse states of the innermost level
_M_HEADERS, _M_BODY, _M_SKIP, _M_FAILED = range(4)


class MimeParser:
    """Line-at-a-time MIME decoder for one message. `line(text, eol, cont)` with each message line (cont: the
    rest of a line too long to take whole); `finish()` at the end. Anomalies and files go to the transaction."""

    def __init__(self, tx: SmtpTransaction, limits: SmtpLimits, anomaly, on_file):
        self.tx = tx
        self.limits = limits
        self._anomaly = anomaly
        self._on_file = on_file
        self.stack: list[_Entity] = [_Entity()]     # the message, then the nested parts being read
        self.state = _M_HEADERS
        self.parts = 0
        self.finished = False
        tx.mime_status = "HEADER_STARTED"

    # ------------------------------------------------------------------ lines
    def line(self, text: bytes, eol: bytes, cont: bool = False) -> None:
        st = self.state
        if st == _M_FAILED:
            return
        if len(text) > MAX_LINE_LEN and not cont:
            self._event("mime_long_line")
        if st == _M_HEADERS:
            if cont:
                return                       # the rest of an over-long header line: dropped
            self._header_line(text)
            return
        if not cont and text[:2] == b"--" and self._boundary(text):
            return
        if st == _M_BODY:
            self._body(text, eol, cont)

    def _boundary(self, text: bytes) -> bool:
        """A boundary line of any open multipart (innermost first): start a part or close the multipart."""
        stack = self.stack
        for i in range(len(stack) - 1, -1, -1):
            b = stack[i].boundary
            if b is None or not text.startswith(b):
                continue
            rest = text[len(b):]
            closing = rest[:2] == b"--"
            if not closing and rest.strip(b" \t"):
                continue                 # "--boundaryX" is not this boundary (RFC 2046: only trailing space)
            # everything inside this multipart ends
            while len(stack) > i + 1:
                self._close(stack.pop())
            if closing:
                stack[i].boundary = None     # its epilogue: skipped until an outer boundary
                self.state = _M_SKIP
            else:
                self.parts += 1
                if self.parts > self.limits.max_parts:
                    if self.parts == self.limits.max_parts + 1:
                        self._event("mime_too_many_parts")
                    self.state = _M_SKIP
                    return True
                if len(stack) >= self.limits.max_mime_depth:
                    self._fail()
                    return True
                stack.append(_Entity())
                self.state = _M_HEADERS
                self.tx.mime_status = "HEADER_STARTED"
            return True
        return False

    def _header_line(self, text: bytes) -> None:
        ent = self.stack[-1]
        if not text.strip(b" \t"):
            self._flush_header(ent)
            self._headers_done(ent)
            return
        if text[:1] in (b" ", b"\t"):
            if ent.header is not None:
                if len(ent.header) < self.limits.max_header_value + 256:
                    ent.header += b" " + text.strip(b" \t")
                return
            # a folded line with nothing to fold into: taken as a header line of its own
            text = text.lstrip(b" \t")
        self._flush_header(ent)
        colon = text.find(b":")
        if colon <= 0 or text[:colon].strip(b" \t") == b"" or b" " in text[:colon].strip(b" \t"):
            if len(self.stack) == 1 and ent.nheaders == 0 and not ent.headers:
                # no header block at all: the message is body from its first line
                self._headers_done(ent)
                self._body(text, b"\r\n", False)
            return
        ent.header = text

    def _flush_header(self, ent: _Entity) -> None:
        text = ent.header
        if text is None:
            return
        ent.header = None
        ent.nheaders += 1
        if ent.nheaders > self.limits.max_headers:
            return
        colon = text.find(b":")
        name = text[:colon].strip(b" \t")
        value = text[colon + 1:].strip(b" \t")
        if len(name) > MAX_HEADER_NAME:
            self._event("mime_long_header_name")
        if len(value) > self.limits.max_header_value:
            self._event("mime_long_header_value")
            value = value[:self.limits.max_header_value]
        key = name.lower()
        if key not in ent.headers:
            ent.headers[key] = value
            if len(self.stack) == 1 and len(self.tx.headers) < self.limits.max_headers:
                self.tx.headers.setdefault(key, value)

    def _headers_done(self, ent: _Entity) -> None:
        h = ent.headers
        ctype = h.get(b"content-type", b"")
        ct = ctype.split(b";", 1)[0].strip().lower()
        cparams = header_params(ctype.split(b";", 1)[1]) if b";" in ctype else {}
        disp = h.get(b"content-disposition")
        name = None
        if disp is not None and b";" in disp:
            name = header_params(disp.split(b";", 1)[1]).get(b"filename")
        if name is None:
            name = cparams.get(b"name")
        if name is not None:
            if len(name) > MAX_FILENAME_LEN:
                self._event("mime_long_filename")
                name = name[:MAX_FILENAME_LEN]
            ent.attachment = name
        ent.encoding = h.get(b"content-transfer-encoding", b"").strip().lower()
        self.tx.mime_status = "BODY_STARTED"
        if ct.startswith(b"multipart/"):
            b = cparams.get(b"boundary")
            if b:
                if len(b) > MAX_BOUNDARY_LEN:
                    self._event("mime_long_boundary")
                    self._fail()
                    return
                ent.multipart = True
                ent.boundary = b"--" + b
                self.state = _M_SKIP        # the preamble, up to the first boundary
                return
        if ct == b"message/rfc822" and ent.attachment is None and len(self.stack) < self.limits.max_mime_depth:
            # an attached message: its own headers and body follow (Suricata's encapsulated entity)
            ent.rfc822 = True
            self.stack.append(_Entity())
            self.state = _M_HEADERS
            return
        self.state = _M_BODY
        if ent.attachment is not None:
            self.tx.file_count += 1
            if len(self.tx.attachments) < 256:
                self.tx.attachments.append(ent.attachment)
            if len(self.tx.files) < self.limits.max_files:
                ent.file = SmtpFile(ent.attachment)
                self.tx.files.append(ent.file)

    # ------------------------------------------------------------------ bodies
    def _body(self, text: bytes, eol: bytes, cont: bool) -> None:
        ent = self.stack[-1]
        f = ent.file
        enc = ent.encoding
        if enc == b"base64":
            if len(text) > MAX_ENC_LINE_LEN and not cont:
                self._event("mime_long_enc_line")
            if f is not None:
                self._append(f, self._b64(ent, text))
        elif enc == b"quoted-printable":
            if len(text) > MAX_ENC_LINE_LEN and not cont:
                self._event("mime_long_enc_line")
            if f is not None:
                data, soft = self._qp(text)
                self._append(f, ent.pending_eol + data)
                ent.pending_eol = b"" if soft else eol
        elif f is not None:
            self._append(f, ent.pending_eol + text)
            ent.pending_eol = eol

    def _b64(self, ent: _Entity, text: bytes) -> bytes:
        """Decode base64 characters, carrying an incomplete quad to the next line (Suricata: "NA=" "=Mg"
        "==" is "42"). Spaces are skipped; another invalid character is mime_invalid_base64 and ends the line."""
        buf = ent.b64
        if b" " in text or b"\t" in text:
            text = text.replace(b" ", b"").replace(b"\t", b"")
        buf += text
        if buf.translate(None, _B64_CHARS):
            self._event("mime_invalid_base64")
            del buf[_B64_INVALID.search(buf).start():]
        n = len(buf) - len(buf) % 4
        if not n:
            return b""
        quads = bytes(buf[:n])
        del buf[:n]
        eq = quads.find(b"=")
        if eq < 0 or eq >= n - 2 and quads.endswith(b"=") and quads.count(b"=") == n - eq:
            # whole quads, padding only at the very end (every well-formed attachment line): C speed, same bytes
            return binascii.a2b_base64(quads)
        return self._b64_quads(quads)

    def _b64_quads(self, quads: bytes) -> bytes:
        """Quad by quad, for "=" inside the data: each quad decodes what precedes its padding."""
        out = bytearray()
        for pos in range(0, len(quads), 4):
            q = quads[pos:pos + 4]
            try:
                if q[0] == 61 or q[1] == 61:         # "=" in the first two places: nothing decodes
                    raise ValueError
                v0, v1 = _B64_VAL[q[0]], _B64_VAL[q[1]]
                out.append(((v0 << 2) | (v1 >> 4)) & 0xFF)
                if q[2] == 61:
                    continue
                v2 = _B64_VAL[q[2]]
                out.append(((v1 << 4) | (v2 >> 2)) & 0xFF)
                if q[3] == 61:
                    continue
                out.append(((v2 << 6) | _B64_VAL[q[3]]) & 0xFF)
            except (KeyError, ValueError):
                self._event("mime_invalid_base64")
        return bytes(out)

    def _qp(self, text: bytes) -> tuple[bytes, bool]:
        """Quoted-printable: (decoded, soft line break). A bad escape is mime_invalid_qp and kept as is."""
        if b"=" not in text:
            return text, False
        out = bytearray()
        i, n = 0, len(text)
        soft = False
        while i < n:
            c = text[i]
            if c != 61:
                out.append(c)
                i += 1
                continue
            if not text[i + 1:].strip(b" \t"):
                soft = True                       # "=" ending the line: a soft line break
                break
            if i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
                out.append(int(text[i + 1:i + 3], 16))
                i += 3
                continue
            self._event("mime_invalid_qp")
            out.append(c)
            i += 1
        return bytes(out), soft

    def _append(self, f: SmtpFile, data: bytes) -> None:
        if not data:
            return
        f.size += len(data)
        room = self.limits.file_limit - len(f.data)
        if room <= 0:
            f.truncated = True
            return
        if len(data) > room:
            data = data[:room]
            f.truncated = True
        f.data += data

    def _close(self, ent: _Entity) -> None:
        f = ent.file
        if f is not None and not f.closed:
            if ent.b64:
                tail = bytes(ent.b64)
                ent.b64.clear()
                # a last incomplete quad: what it holds, as if padded
                if len(tail) >= 2:
                    self._append(f, self._b64(ent, tail + b"=" * (4 - len(tail) % 4)))
            f.closed = True
            self._on_file(self.tx, f)

    def _fail(self) -> None:
        self._event("mime_parse_failed")
        self.tx.mime_status = "PARSE_ERROR"
        for ent in reversed(self.stack):
            self._close(ent)
        self.state = _M_FAILED

    def _event(self, name: str) -> None:
        self._anomaly(self.tx, name)

    def finish(self) -> None:
        """The message ended: close what is open."""
        if self.finished:
            return
        self.finished = True
        if self.state == _M_FAILED:
            return
        if self.state == _M_HEADERS:
            ent = self.stack[-1]
            self._flush_header(ent)
        while self.stack:
            self._close(self.stack.pop())
        self.tx.mime_status = "PARSE_DONE"


_B64_VAL = {c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}

# client parse modes
_CMD, _DATA, _BDAT, _TLS, _DEAD = range(5)


class SmtpParser:
    """SMTP connection parser (both directions). See the module docstring for the events."""

    def __init__(self, limits: SmtpLimits = DEFAULT_LIMITS):
        self.limits = limits
        self.buf = [bytearray(), bytearray()]     # [to_client, to_server] bytes not yet parsed
        self.discard = [False, False]             # dropping the rest of an over-long line
        # bytes at the start of buf known to hold no LF (what is left after parsing is a partial line): a new
        # segment is searched from there, so tiny segments of a long line do not rescan it
        self.nolf = [0, 0]
        self.mode = _CMD
        self.cmds: deque[int] = deque()           # commands waiting for their reply
        self.tx: SmtpTransaction | None = None
        self.next_tx_id = 0
        self.helo: bytes | None = None
        self.first_reply_seen = False
        self.multiline = False                    # inside a "250-" reply
        self.reply_lines = 0
        self.pipelining = False                   # the server announced PIPELINING
        self.data_pending = False                 # DATA sent, its 354 not seen yet
        self.mime: MimeParser | None = None
        self.bdat_left = 0
        self.bdat_last = False
        self.line_start = True                    # in DATA: at the start of a message line
        self.done = False                         # STARTTLS accepted (or both directions given up)
        self.dead = [False, False]
        self.anomaly_count = 0
        self.reoffer: list[SmtpTransaction] = []  # txs a reply changed: detection of the client side sees them next
        self._events: list[AppEvent] = []

    # ------------------------------------------------------------------ public API
    def feed(self, data: bytes, to_server: bool) -> list[AppEvent]:
        self._events = events = []
        if not data or self.done or self.dead[to_server]:
            return events
        try:
            buf = self.buf[to_server]
            self.nolf[to_server] = len(buf)
            buf += data
            if to_server:
                mode = self.mode
                self._client(buf)
                if (mode == _DATA or mode == _BDAT) and self.tx is not None and \
                        not any(e.tx is self.tx for e in events):
                    # message bytes went into the mail (its files may have grown): detection looks again
                    self._emit("message_data", self.tx, True)
            else:
                self._server(buf)
            self.nolf[to_server] = len(buf)
        except Exception as e:  # noqa: BLE001 - a parser bug must never take the worker down
            self._give_up(to_server, f"internal_error:{type(e).__name__}")
        return events

    def feed_toserver(self, data: bytes) -> list[AppEvent]:
        return self.feed(data, True)

    def feed_toclient(self, data: bytes) -> list[AppEvent]:
        return self.feed(data, False)

    def eof(self, to_server: bool) -> list[AppEvent]:
        """A direction closed: a message still open is finished with what arrived."""
        self._events = events = []
        try:
            if to_server and self.mime is not None and self.tx is not None:
                self.mime.finish()
                self.mime = None
                self._emit("command", self.tx, True, info="EOF")
        except Exception as e:  # noqa: BLE001
            self._give_up(to_server, f"internal_error:{type(e).__name__}")
        return events

    # ------------------------------------------------------------------ machinery
    def _emit(self, kind: str, tx, to_server: bool, data: bytes = b"", info: str = "") -> None:
        self._events.append(AppEvent(kind, tx, to_server, data, info))

    def _anomaly(self, tx, code: str, to_server: bool = True) -> None:
        if tx is not None:
            if code in tx.anomalies:
                return                   # once per transaction (a wide base64 body would repeat it per line)
            if len(tx.anomalies) < 64:
                tx.anomalies.append(code)
        self.anomaly_count += 1
        self._emit("anomaly", tx, to_server, b"", code)

    def _mime_anomaly(self, tx, code: str) -> None:
        self._anomaly(tx, code, True)

    def _on_file(self, tx, f: SmtpFile) -> None:
        self._emit("file", tx, True, bytes(f.data), f.name.decode("utf-8", "replace"))

    def _give_up(self, to_server: bool, why: str) -> None:
        self._anomaly(self.tx, why, to_server)
        self._anomaly(self.tx, "gave_up", to_server)
        self.dead[to_server] = True
        self.buf[to_server] = bytearray()
        if self.dead[0] and self.dead[1]:
            self.done = True

    def _next_line(self, buf: bytearray, pos: int, to_server: bool):
        """(line without its end, its end, next pos) or None when no full line is buffered. A line longer than
        max_line is cut there (event) and the rest of it discarded."""
        while True:
            nl = buf.find(b"\n", max(pos, self.nolf[to_server]))
            if self.discard[to_server]:
                if nl == -1:
                    return None, len(buf)
                self.discard[to_server] = False
                pos = nl + 1
                continue
            if nl == -1:
                if len(buf) - pos > self.limits.max_line:
                    line = bytes(buf[pos:pos + self.limits.max_line])
                    self.discard[to_server] = True
                    self._line_too_long(to_server)
                    return (line, b"", len(buf)), len(buf)
                return None, pos
            end, eol = _text_end(buf, pos, nl)
            if end - pos > self.limits.max_line:
                self._line_too_long(to_server)
                return (bytes(buf[pos:pos + self.limits.max_line]), eol, nl + 1), nl + 1
            return (bytes(buf[pos:end]), eol, nl + 1), nl + 1

    def _line_too_long(self, to_server: bool) -> None:
        tx = self._current_tx() if to_server else self.tx
        self._anomaly(tx, "max_command_line_len_exceeded" if to_server else "max_reply_line_len_exceeded",
                      to_server)
        self._anomaly(tx, "truncated_line", to_server)

    # ------------------------------------------------------------------ client side
    def _current_tx(self) -> SmtpTransaction:
        """The transaction a client line belongs to: a new one once the last mail is complete (Suricata: RSET
        and QUIT stay in the ended one)."""
        tx = self.tx
        if tx is None or tx.complete:
            tx = self.tx = SmtpTransaction(self.next_tx_id, self.helo)
            self.next_tx_id += 1
        return tx

    def _client(self, buf: bytearray) -> None:
        pos = 0
        n = len(buf)
        while pos < n and not self.done and not self.dead[True]:
            mode = self.mode
            if mode == _DATA:
                pos = self._data(buf, pos)
                if self.mode == _DATA:
                    break
                continue
            if mode == _BDAT:
                pos = self._bdat(buf, pos)
                if self.mode == _BDAT:
                    break
                continue
            if mode == _TLS:
                pos = n
                break
            got, pos = self._next_line(buf, pos, True)
            if got is None:
                break
            self._command(got[0])
        del buf[:pos]

    def _command(self, line: bytes) -> None:
        tx = self._current_tx() if not (self.tx is not None and self.tx.complete and
                                        line[:4].upper() in (b"RSET", b"QUIT")) else self.tx
        if not self.first_reply_seen:
            self._anomaly(tx, "no_server_welcome_message", True)
        up = line[:10].upper()
        verb = up.split(b" ", 1)[0][:16].decode("ascii", "replace")
        kind = _CMD_OTHER
        if up.startswith(b"STARTTLS"):
            kind = _CMD_STARTTLS
        elif up.startswith(b"DATA"):
            kind = _CMD_DATA
            if self.mime is not None:
                # a second DATA before the first mail ended: Suricata starts a new transaction
                self._anomaly(tx, "unparsable_content", True)
                self.mime.finish()
                tx.complete = True
                tx = self._current_tx()
            self.mime = MimeParser(tx, self.limits, self._mime_anomaly, self._on_file)
            self.data_pending = True
            if self.pipelining:
                self._enter_data()
        elif up.startswith(b"BDAT"):
            size = _bdat_size(line)
            if size is None:
                self._anomaly(tx, "unparsable_content", True)
            else:
                self.bdat_left = size
                self.bdat_last = b" LAST" in line[4:].upper()
                # one reply answers a BDAT and its chunk: for the LAST one it completes the mail
                kind = _CMD_BDAT_END if self.bdat_last else _CMD_BDAT
                if self.mime is None:
                    self.mime = MimeParser(tx, self.limits, self._mime_anomaly, self._on_file)
                self.line_start = True
                self.mode = _BDAT
        elif up.startswith((b"HELO", b"EHLO")):
            if self.helo is not None:
                self._anomaly(tx, "duplicate_fields", True)
            else:
                self.helo = _param(line, 4)
                tx.helo = self.helo
        elif up.startswith(b"MAIL FROM"):
            if tx.mail_from is not None:
                self._anomaly(tx, "duplicate_fields", True)
            else:
                tx.mail_from = _param(line, 9)
        elif up.startswith(b"RCPT TO"):
            if len(tx.rcpt_to) < self.limits.max_recipients:
                tx.rcpt_to.append(_param(line, 7))
        elif up.startswith(b"RSET"):
            kind = _CMD_RSET
            self.bdat_left = 0
        self._queue(kind, tx)
        self._emit("command", tx, True, info=verb)

    def _queue(self, kind: int, tx) -> None:
        cmds = self.cmds
        if cmds and cmds[-1] in (_CMD_STARTTLS, _CMD_DATA):
            # a command pipelined after DATA or STARTTLS, which must end a pipelined group
            self._anomaly(tx, "invalid_pipelined_sequence", True)
        if len(cmds) >= self.limits.max_pending_commands:
            cmds.popleft()
        cmds.append(kind)

    def _enter_data(self) -> None:
        self.data_pending = False
        self.mode = _DATA
        self.line_start = True

    def _data(self, buf: bytearray, pos: int) -> int:
        """Message lines after DATA up to the lone "."; returns the new position."""
        n = len(buf)
        mime = self.mime
        limit = self.limits.max_mime_line
        skip = self.nolf[True]
        while pos < n:
            nl = buf.find(b"\n", max(pos, skip))
            if nl == -1:
                if n - pos <= limit:
                    break
                # a line too long to wait for: decoded in pieces
                cut = n
                piece = bytes(buf[pos:cut])
                if self.line_start and piece[:1] == b".":
                    piece = piece[1:]
                if mime is not None:
                    mime.line(piece, b"", not self.line_start)
                self.line_start = False
                pos = cut
                break
            end, eol = _text_end(buf, pos, nl)
            text = bytes(buf[pos:end])
            pos = nl + 1
            if self.line_start:
                if text == b".":
                    self._data_end()
                    return pos
                if text[:1] == b".":
                    text = text[1:]           # dot-stuffing
            if mime is not None:
                mime.line(text, eol, not self.line_start)
            self.line_start = True
        return pos

    def _data_end(self) -> None:
        tx = self.tx
        self.mode = _CMD
        if self.mime is not None:
            self.mime.finish()
            self.mime = None
        if tx is not None:
            tx.data_done = True
            self._queue(_CMD_DATA_END, tx)
            self._emit("command", tx, True, info=".")

    def _bdat(self, buf: bytearray, pos: int) -> int:
        n = len(buf)
        take = min(self.bdat_left, n - pos)
        chunk = bytes(buf[pos:pos + take])
        pos += take
        self.bdat_left -= take
        mime = self.mime
        if mime is not None and chunk:
            # message lines, carried across chunks (self.line_start: whether chunk starts a line)
            start = 0
            while start < len(chunk):
                nl = chunk.find(b"\n", start)
                if nl == -1:
                    mime.line(chunk[start:], b"", not self.line_start)
                    self.line_start = False
                    break
                end, eol = _text_end(chunk, start, nl)
                mime.line(chunk[start:end], eol, not self.line_start)
                self.line_start = True
                start = nl + 1
        if self.bdat_left == 0:
            self.mode = _CMD
            tx = self.tx
            if not chunk.endswith(b"\n") and take:
                # Suricata counts BDAT data in whole lines: a chunk that ends inside a line overruns it
                self._anomaly(tx, "bdat_chunk_len_exceeded", True)
            if self.bdat_last and tx is not None:
                if self.mime is not None:
                    self.mime.finish()
                    self.mime = None
                tx.data_done = True
            self._emit("command", tx, True, info="BDAT-DATA")
        return pos

    # ------------------------------------------------------------------ server side
    def _server(self, buf: bytearray) -> None:
        pos = 0
        while not self.done and not self.dead[False]:
            got, pos = self._next_line(buf, pos, False)
            if got is None:
                break
            self._reply(got[0], got[1])
        del buf[:pos]

    def _reply(self, line: bytes, eol: bytes) -> None:
        tx = self.tx
        if not line and eol == b"\n":
            return
        if len(line) < 3:
            self._anomaly(tx, "invalid_reply", False)
            return
        if len(line) >= 4 and line[3:4] == b"-":
            self.multiline = True
        else:
            self.multiline = False
        code = line[:3]
        if code not in _REPLY_CODES:
            # Suricata knows the codes of its table only; the reply still answers its command here, so the
            # replies after it keep matching theirs
            self._anomaly(tx, "invalid_reply", False)
            if not code.isdigit():
                return
        if not self.cmds:
            if not self.first_reply_seen:
                if not self.multiline:
                    self.first_reply_seen = True
                if code != b"220":
                    self._anomaly(tx, "invalid_reply", False)
            # (Suricata defines unable_to_match_reply_with_request but never raises it: neither do we)
            if not self.multiline:
                self._emit("reply", tx, False, info=code.decode())
            return
        kind = self.cmds[0]
        if code == b"250" and line[4:].strip().lower() == b"pipelining":
            self.pipelining = True
        if self.multiline:
            return
        self.cmds.popleft()
        if kind == _CMD_STARTTLS:
            if code == b"220":
                if tx is not None:
                    self._complete(tx)
                self.done = True                 # the rest is TLS
                self.mode = _TLS
            else:
                self._anomaly(tx, "tls_rejected", False)
        elif kind == _CMD_DATA:
            if code == b"354":
                if self.mode == _CMD and self.data_pending:
                    self._enter_data()
            else:
                self._anomaly(tx, "data_command_rejected", False)
                if self.mode == _DATA and self.pipelining and tx is not None and not tx.data_done:
                    # pipelined straight into data mode, but the server refused: those lines were commands
                    self.mode = _CMD
                self.data_pending = False
                if self.mime is not None and self.mode == _CMD:
                    self.mime = None
        elif kind in (_CMD_DATA_END, _CMD_BDAT_END):
            if tx is not None:
                self._complete(tx)
        elif kind == _CMD_RSET and code == b"250" and tx is not None and not tx.complete:
            if self.mime is not None:
                self.mime.finish()
                self.mime = None
            self._complete(tx)
        self._emit("reply", tx, False, info=code.decode())

    def _complete(self, tx: SmtpTransaction) -> None:
        if tx.complete:
            return
        tx.complete = True
        if len(self.reoffer) < 8 and tx not in self.reoffer:
            self.reoffer.append(tx)
        self._emit("tx_complete", tx, False)

    def take_reoffer(self) -> list[SmtpTransaction]:
        """Transactions a server reply changed since the last call (the client-side detection must see them)."""
        out = self.reoffer
        if out:
            self.reoffer = []
        return out


def _text_end(buf, start: int, nl: int) -> tuple[int, bytes]:
    """(where the text of the line ending at the LF at `nl` stops, its terminator): CRLF or a bare LF."""
    if nl > start and buf[nl - 1] == 0x0D:
        return nl - 1, b"\r\n"
    return nl, b"\n"


def _param(line: bytes, prefix: int) -> bytes:
    """Suricata's SMTPParseCommandWithParam: after the verb (and ':' for MAIL FROM / RCPT TO), spaces
    skipped, up to the next space (an ESMTP parameter such as SIZE= follows it)."""
    rest = line[prefix:]
    if rest[:1] == b":":
        rest = rest[1:]
    rest = rest.lstrip(b" ")
    return rest.split(b" ", 1)[0][:1024]


def _bdat_size(line: bytes) -> int | None:
    parts = line[4:].split()
    if line[4:5] != b" " or not parts or not parts[0].isdigit() or len(parts[0]) > 12:
        return None
    return int(parts[0])
