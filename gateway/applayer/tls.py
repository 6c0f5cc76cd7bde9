"""Sans-I/O TLS handshake parser: records, ClientHello (JA3, SNI, ALPN), ServerHello (JA3S),
Certificate (subject / issuer / serial / fingerprint / SAN), for TLS 1.0-1.3 and an SSLv2 ClientHello.

    parser = TlsParser()
    events = parser.feed(data, to_server)   # contiguous stream bytes, split anywhere

Events (AppEvent, tx = the TlsSession of the flow):
    client_hello   ClientHello parsed: session.sni, .ja3_string/.ja3_hash, .alpn, ...
    server_hello   ServerHello parsed: .version (negotiated), .cipher, .ja3s_*
    certificate    server Certificate parsed (TLS <= 1.2): .certs, .subject, .issuer, .serial, ...
    encrypted      a direction switched to encrypted records; when both have, .done is True
    anomaly        info = Suricata's tls app-layer-event name (invalid_record_length, invalid_record_type,
                   invalid_handshake_message, handshake_invalid_length, invalid_certificate, ...)

Records may be split across segments, several handshake messages may share a record and one message
may span records. Per-direction buffers are bounded (a record by the TLS maximum, a handshake message
by max_handshake); beyond that the direction is given up with an anomaly. Nothing raises.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .common import AppEvent, anomaly_event
from .x509 import CertError, epoch, parse_certificate

CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA, CT_HEARTBEAT = 20, 21, 22, 23, 24
HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_CERTIFICATE = 1, 2, 11
EXT_SNI, EXT_GROUPS, EXT_POINT_FORMATS, EXT_ALPN, EXT_SUPPORTED_VERSIONS = 0, 10, 11, 16, 43

_MAX_RECORD = 16384 + 2048            # TLSCiphertext limit
_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


@dataclass(frozen=True)
class TlsLimits:
    max_handshake: int = 256 * 1024   # one handshake message (certificate chains can be large)
    max_certs: int = 16


DEFAULT_LIMITS = TlsLimits()


def is_grease(v: int) -> bool:
    """GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa."""
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def version_string(v: int | None) -> str:
    """Suricata's EVE spelling of a protocol version."""
    if v is None:
        return "UNDETERMINED"
    return {0x0200: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
            0x0304: "TLS 1.3"}.get(v, "UNDETERMINED")


class TlsSession:
    """Everything learned about one TLS connection, and the Suricata buffers built from it."""

    __slots__ = (
        "alpn",
        "alpn_server",
        "anomalies",
        "certs",
        "cipher",
        "ciphers",
        "client_random",
        "client_version",
        "encrypted",
        "extensions",
        "fingerprint",
        "groups",
        "issuer",
        "ja3_hash",
        "ja3_string",
        "ja3s_hash",
        "ja3s_string",
        "not_after",
        "not_before",
        "point_formats",
        "sans",
        "selected_version",
        "serial",
        "server_extensions",
        "server_version",
        "session_id",
        "sni",
        "sslv2",
        "subject",
        "supported_versions",
    )

    def __init__(self):
        self.client_version: int | None = None
        self.client_random = b""
        self.session_id = b""
        self.ciphers: list[int] = []
        self.extensions: list[int] = []
        self.groups: list[int] = []
        self.point_formats: list[int] = []
        self.sni = b""
        self.alpn: list[bytes] = []
        self.supported_versions: list[int] = []
        self.ja3_string = ""
        self.ja3_hash = ""
        self.server_version: int | None = None
        self.cipher: int | None = None
        self.server_extensions: list[int] = []
        self.selected_version: int | None = None
        self.alpn_server = b""
        self.ja3s_string = ""
        self.ja3s_hash = ""
        self.certs: list[bytes] = []
        self.subject = b""
        self.issuer = b""
        self.serial = ""
        self.fingerprint = ""
        self.sans: list[str] = []
        self.not_before = ""
        self.not_after = ""
        self.anomalies: list[str] = []
        self.encrypted = [False, False]     # [to_client, to_server]
        self.sslv2 = False

    @property
    def not_before_epoch(self) -> int | None:
        """tls_cert_notbefore as seconds since 1970 (for date comparisons)."""
        return epoch(self.not_before) if self.not_before else None

    @property
    def not_after_epoch(self) -> int | None:
        return epoch(self.not_after) if self.not_after else None

    @property
    def version(self) -> int | None:
        """Negotiated version: supported_versions choice, else ServerHello, else ClientHello."""
        if self.selected_version is not None:
            return self.selected_version
        if self.server_version is not None:
            return self.server_version
        return 0x0200 if self.sslv2 else self.client_version

    @property
    def version_string(self) -> str:
        return version_string(self.version)

    @property
    def done(self) -> bool:
        """Both directions encrypted: nothing more for a parser to see."""
        return self.encrypted[0] and self.encrypted[1]

    def buffer(self, keyword: str) -> bytes | None:
        """Single-buffer Suricata keywords (tls.sni, tls.cert_subject, ja3.hash, ...)."""
        fn = _BUFFERS.get(keyword)
        if fn is None:
            raise KeyError(f"unknown TLS buffer {keyword!r}")
        v = fn(self)
        if not v:
            return None
        return v if isinstance(v, bytes) else v.encode()

    def buffers(self, keyword: str) -> list[bytes]:
        """Multi-buffer keywords: tls.certs (DER of each certificate), tls.subjectaltname, tls.alpn."""
        if keyword == "tls.certs":
            return list(self.certs)
        if keyword == "tls.subjectaltname":
            return [s.encode() for s in self.sans]
        if keyword == "tls.alpn":
            return list(self.alpn)
        b = self.buffer(keyword)
        return [b] if b is not None else []


_BUFFERS = {
    "tls.sni": lambda s: s.sni,
    "tls.cert_subject": lambda s: s.subject,
    "tls.cert_issuer": lambda s: s.issuer,
    "tls.cert_serial": lambda s: s.serial,
    "tls.cert_fingerprint": lambda s: s.fingerprint,
    "tls.version": lambda s: s.version_string if s.version is not None else "",
    "ja3.hash": lambda s: s.ja3_hash,
    "ja3.string": lambda s: s.ja3_string,
    "ja3s.hash": lambda s: s.ja3s_hash,
    "ja3s.string": lambda s: s.ja3s_string,
    # older names
    "tls_sni": lambda s: s.sni, "tls_cert_subject": lambda s: s.subject,
    "tls_cert_issuer": lambda s: s.issuer, "tls_cert_serial": lambda s: s.serial,
    "tls_cert_fingerprint": lambda s: s.fingerprint, "ja3_hash": lambda s: s.ja3_hash,
    "ja3_string": lambda s: s.ja3_string, "ja3s_hash": lambda s: s.ja3s_hash,
    "ja3s_string": lambda s: s.ja3s_string,
}


def buffer_getter(keyword: str):
    """TlsSession.buffer(keyword) as a plain `get(session) -> bytes | None`, for a caller that fetches one keyword
    from many sessions (the IDS prefilter); None for the multi-buffer keywords and unknown ones."""
    fn = _BUFFERS.get(keyword)
    if fn is None:
        return None

    def get(s: TlsSession) -> bytes | None:
        v = fn(s)
        if not v:
            return None
        return v if isinstance(v, bytes) else v.encode()
    return get


class _Malformed(Exception):
    pass


class _Reader:
    __slots__ = ("b", "end", "p")

    def __init__(self, b: bytes, start: int = 0, end: int | None = None):
        self.b = b
        self.p = start
        self.end = len(b) if end is None else end

    def u8(self) -> int:
        if self.p + 1 > self.end:
            raise _Malformed("truncated")
        v = self.b[self.p]
        self.p += 1
        return v

    def u16(self) -> int:
        if self.p + 2 > self.end:
            raise _Malformed("truncated")
        v = (self.b[self.p] << 8) | self.b[self.p + 1]
        self.p += 2
        return v

    def u24(self) -> int:
        if self.p + 3 > self.end:
            raise _Malformed("truncated")
        b, p = self.b, self.p
        self.p += 3
        return (b[p] << 16) | (b[p + 1] << 8) | b[p + 2]

    def take(self, n: int) -> bytes:
        if self.p + n > self.end:
            raise _Malformed("truncated")
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def sub(self, n: int) -> _Reader:
        if self.p + n > self.end:
            raise _Malformed("truncated")
        r = _Reader(self.b, self.p, self.p + n)
        self.p += n
        return r

    def left(self) -> int:
        return self.end - self.p


def _u16_list(data: bytes) -> list[int]:
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data) - 1, 2)]


def _dash(values) -> str:
    return "-".join(str(v) for v in values)


class _Dir:
    __slots__ = ("dead", "encrypted", "hbuf", "rbuf", "seen_record")

    def __init__(self):
        self.rbuf = bytearray()
        self.hbuf = bytearray()
        self.encrypted = False
        self.dead = False
        self.seen_record = False


class TlsParser:
    def __init__(self, limits: TlsLimits = DEFAULT_LIMITS):
        self.limits = limits
        self.session = TlsSession()
        self._dirs = (_Dir(), _Dir())   # [to_client, to_server]
        self.anomaly_count = 0
        self._events: list[AppEvent] = []

    @property
    def done(self) -> bool:
        return self.session.done or (self._dirs[0].dead and self._dirs[1].dead)

    def feed_toserver(self, data: bytes) -> list[AppEvent]:
        return self.feed(data, True)

    def feed_toclient(self, data: bytes) -> list[AppEvent]:
        return self.feed(data, False)

    def feed(self, data: bytes, to_server: bool) -> list[AppEvent]:
        self._events = events = []
        d = self._dirs[to_server]
        if d.dead or not data:
            return events
        try:
            d.rbuf += data
            self._records(d, to_server)
        except Exception as e:  # noqa: BLE001 - never raise out of a parser
            self._give_up(d, to_server, f"internal_error:{type(e).__name__}")
        return events

    # ------------------------------------------------------------------ helpers
    def _anomaly(self, code: str, to_server: bool) -> None:
        self.anomaly_count += 1
        self._events.append(anomaly_event(self.session, code, to_server))

    def _give_up(self, d: _Dir, to_server: bool, code: str) -> None:
        self._anomaly(code, to_server)
        d.dead = True
        d.rbuf = bytearray()
        d.hbuf = bytearray()

    def _set_encrypted(self, d: _Dir, to_server: bool) -> None:
        if not d.encrypted:
            d.encrypted = True
            self.session.encrypted[to_server] = True
            d.hbuf = bytearray()
            self._events.append(AppEvent("encrypted", self.session, to_server))

    # ------------------------------------------------------------------ record layer
    def _records(self, d: _Dir, to_server: bool) -> None:
        buf = d.rbuf
        pos = 0
        n = len(buf)
        while n - pos >= 5 and not d.dead:
            b0 = buf[pos]
            if b0 & 0x80 and not d.seen_record:
                # SSLv2-style record header (2 bytes): only the ClientHello form is of interest.
                ln = ((b0 & 0x7F) << 8) | buf[pos + 1]
                if n - pos - 2 < ln:
                    break
                self._sslv2(bytes(buf[pos + 2:pos + 2 + ln]), to_server)
                pos += 2 + ln
                d.seen_record = True
                continue
            ctype = b0
            major = buf[pos + 1]
            ln = (buf[pos + 3] << 8) | buf[pos + 4]
            if ctype not in (CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA, CT_HEARTBEAT) or major != 3:
                self._give_up(d, to_server, "invalid_record_type" if major == 3 else "invalid_record_version")
                return
            if ln > _MAX_RECORD:
                self._give_up(d, to_server, "invalid_record_length")
                return
            if n - pos - 5 < ln:
                break
            d.seen_record = True
            body_start = pos + 5
            pos = body_start + ln
            if ctype == CT_HANDSHAKE:
                if not d.encrypted:
                    d.hbuf += buf[body_start:pos]
                    self._handshakes(d, to_server)
            elif ctype == CT_CCS or ctype == CT_APPDATA:
                self._set_encrypted(d, to_server)
        if d.dead:
            return
        if pos:
            del buf[:pos]

    def _sslv2(self, rec: bytes, to_server: bool) -> None:
        s = self.session
        if to_server and len(rec) >= 3 and rec[0] == 1:
            s.sslv2 = True
            s.client_version = (rec[1] << 8) | rec[2]
            self._anomaly("sslv2_client_hello", to_server)
            self._events.append(AppEvent("client_hello", s, to_server))
        else:
            self._anomaly("sslv2_record", to_server)

    # ------------------------------------------------------------------ handshake layer
    def _handshakes(self, d: _Dir, to_server: bool) -> None:
        hb = d.hbuf
        pos = 0
        while len(hb) - pos >= 4:
            mtype = hb[pos]
            ln = (hb[pos + 1] << 16) | (hb[pos + 2] << 8) | hb[pos + 3]
            if ln > self.limits.max_handshake:
                self._give_up(d, to_server, "handshake_invalid_length")
                return
            if len(hb) - pos - 4 < ln:
                break
            body = bytes(hb[pos + 4:pos + 4 + ln])
            pos += 4 + ln
            try:
                self._handshake(mtype, body, d, to_server)
            except _Malformed:
                self._anomaly("invalid_handshake_message", to_server)
            if d.encrypted or d.dead:
                return
        if pos:
            del hb[:pos]

    def _handshake(self, mtype: int, body: bytes, d: _Dir, to_server: bool) -> None:
        if mtype == HS_CLIENT_HELLO and to_server:
            self._client_hello(body)
            self._events.append(AppEvent("client_hello", self.session, True))
        elif mtype == HS_SERVER_HELLO and not to_server:
            self._server_hello(body)
            self._events.append(AppEvent("server_hello", self.session, False))
            s = self.session
            if s.selected_version == 0x0304 and body[2:34] != _HRR_RANDOM:
                # TLS 1.3: everything after ServerHello is encrypted.
                self._set_encrypted(d, to_server)
        elif mtype == HS_CERTIFICATE and not to_server:
            self._certificate(body, to_server)

    def _client_hello(self, body: bytes) -> None:
        s = self.session
        r = _Reader(body)
        s.client_version = r.u16()
        s.client_random = r.take(32)
        s.session_id = r.take(r.u8())
        cs = r.take(r.u16())
        s.ciphers = _u16_list(cs)
        r.take(r.u8())                                   # compression methods
        s.extensions = []
        if r.left() >= 2:
            ext = r.sub(r.u16())
            while ext.left() >= 4:
                etype = ext.u16()
                edata = ext.sub(ext.u16())
                s.extensions.append(etype)
                self._client_extension(etype, edata)
        ja3 = ",".join((
            str(s.client_version),
            _dash(c for c in s.ciphers if not is_grease(c)),
            _dash(e for e in s.extensions if not is_grease(e)),
            _dash(g for g in s.groups if not is_grease(g)),
            _dash(s.point_formats),
        ))
        s.ja3_string = ja3
        s.ja3_hash = hashlib.md5(ja3.encode()).hexdigest()

    def _client_extension(self, etype: int, r: _Reader) -> None:
        s = self.session
        if etype == EXT_SNI:
            lst = r.sub(r.u16())
            while lst.left() >= 3:
                ntype = lst.u8()
                name = lst.take(lst.u16())
                if ntype == 0 and not s.sni:
                    s.sni = name
        elif etype == EXT_GROUPS:
            s.groups = _u16_list(r.take(r.u16()))
        elif etype == EXT_POINT_FORMATS:
            s.point_formats = list(r.take(r.u8()))
        elif etype == EXT_ALPN:
            lst = r.sub(r.u16())
            while lst.left() >= 1:
                s.alpn.append(lst.take(lst.u8()))
        elif etype == EXT_SUPPORTED_VERSIONS:
            s.supported_versions = _u16_list(r.take(r.u8()))

    def _server_hello(self, body: bytes) -> None:
        s = self.session
        r = _Reader(body)
        s.server_version = r.u16()
        r.take(32)                                       # random
        r.take(r.u8())                                   # session id
        s.cipher = r.u16()
        r.u8()                                           # compression
        s.server_extensions = []
        if r.left() >= 2:
            ext = r.sub(r.u16())
            while ext.left() >= 4:
                etype = ext.u16()
                edata = ext.sub(ext.u16())
                s.server_extensions.append(etype)
                if etype == EXT_SUPPORTED_VERSIONS and edata.left() >= 2:
                    s.selected_version = edata.u16()
                elif etype == EXT_ALPN and edata.left() >= 3:
                    lst = edata.sub(edata.u16())
                    s.alpn_server = lst.take(lst.u8())
        ja3s = ",".join((str(s.server_version), str(s.cipher),
                         _dash(e for e in s.server_extensions if not is_grease(e))))
        s.ja3s_string = ja3s
        s.ja3s_hash = hashlib.md5(ja3s.encode()).hexdigest()

    def _certificate(self, body: bytes, to_server: bool) -> None:
        s = self.session
        r = _Reader(body)
        lst = r.sub(r.u24())
        certs = []
        while lst.left() >= 3:
            certs.append(lst.take(lst.u24()))
            if len(certs) >= self.limits.max_certs:
                break
        s.certs = certs
        if certs:
            try:
                c = parse_certificate(certs[0])
            except CertError:
                # Suricata: the certificate decode error, then the handshake message that carried it fails
                self._anomaly("invalid_certificate", to_server)
                self._anomaly("invalid_handshake_message", to_server)
            else:
                s.subject, s.issuer, s.serial = c.subject, c.issuer, c.serial
                s.fingerprint, s.sans = c.fingerprint, c.sans
                s.not_before, s.not_after = c.not_before, c.not_after
        self._events.append(AppEvent("certificate", s, to_server))
