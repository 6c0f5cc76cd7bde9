"""Application protocol detection from the first bytes of each direction, with ports as a hint only.

    detect(to_server=b"GET / HTTP/1.1\\r\\n", to_client=b"", transport="tcp", dport=8080) -> "http"

Returns "http" | "tls" | "dns" | "smtp" | "ftp" | "ssh" | "smb" | "dcerpc", or None when the bytes seen so far do not decide
(the caller retries with more data, up to its own bound). Content decides: an HTTP request on port
443 is "http", a TLS ClientHello on port 80 is "tls". The port only breaks ties the content cannot:
an FTP or SMTP banner alone ("220 ...") with no tell-tale text, or a DNS-shaped datagram that is too
small to be sure of.
"""
from __future__ import annotations

from .dns import parse_message

HTTP_METHODS = (
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH", b"REPORT",
    b"MKACTIVITY", b"CHECKOUT", b"MERGE", b"SUBSCRIBE", b"NOTIFY", b"M-SEARCH",
)
_METHOD_PREFIXES = tuple(m + b" " for m in HTTP_METHODS) + tuple(m + b"\t" for m in HTTP_METHODS)
_LONGEST_METHOD = max(len(m) for m in HTTP_METHODS) + 1
_SMTP_CLIENT = (b"EHLO", b"HELO", b"LHLO")
_FTP_CLIENT = (b"USER", b"AUTH", b"FEAT", b"SYST", b"OPTS", b"PASV", b"EPSV", b"PORT", b"TYPE", b"CLNT")

PORT_HINTS = {80: "http", 8080: "http", 8000: "http", 3128: "http", 443: "tls", 8443: "tls", 993: "tls",
              995: "tls", 465: "tls", 53: "dns", 5353: "dns", 25: "smtp", 587: "smtp", 21: "ftp"}


def _tls(data: bytes) -> bool | None:
    """True: TLS handshake record (or SSLv2 ClientHello); False: not TLS; None: too short."""
    if not data:
        return None
    b0 = data[0]
    if b0 == 0x16:
        if len(data) >= 2 and data[1] != 3 or len(data) >= 3 and data[2] > 4:
            return False
        if len(data) < 6:
            return None
        return data[5] in (1, 2)
    if b0 & 0x80 and len(data) >= 5:
        # SSLv2 record header + CLIENT-HELLO, version SSLv3..TLS1.2 as offered by hybrid clients
        return data[2] == 1 and data[3] in (0, 2, 3) and ((b0 & 0x7F) << 8 | data[1]) >= 9
    return False


def _http_request(data: bytes) -> bool | None:
    data = data[:64].lstrip(b"\r\n")      # blank lines before a request are tolerated (libhtp)
    if not data:
        return None
    if data.startswith(_METHOD_PREFIXES):
        return True
    head = data[:_LONGEST_METHOD]
    if len(data) < _LONGEST_METHOD and any(m.startswith(head) for m in HTTP_METHODS):
        return None                 # a prefix of a method: wait for more
    return False


def _http_response(data: bytes) -> bool | None:
    if not data:
        return None
    if data.startswith(b"HTTP/"):
        return True
    if len(data) < 5 and b"HTTP/".startswith(data):
        return None
    return False


def _dns_message(msg: bytes, to_server: bool, strict: bool) -> bool:
    m = parse_message(msg)
    if m is None or not m.complete or m.opcode > 6 or m.is_response == to_server:
        return False
    if not m.questions and not m.is_response:
        return False
    # Suricata's probe parses the header and sections it needs: bytes after them do not matter on a DNS
    # port; without a port hint they make the message look like something else
    ok = ("z_flag_set",) if strict else ("z_flag_set", "trailing_data")
    bad = [a for a in m.anomalies if a not in ok]
    if bad:
        return False
    if strict:
        # Without a port hint demand a plain-looking message: few questions, sane class.
        qd = len(m.questions)
        if qd == 0 or qd > 4 or any(qclass not in (1, 3, 4, 255) for _, _, qclass in m.questions):
            return False
    return True


def _dns(to_server: bytes, to_client: bytes, transport: str, hinted: bool) -> bool | None:
    for data, ts in ((to_server, True), (to_client, False)):
        if not data:
            continue
        if transport == "tcp":
            if len(data) < 2:
                return None
            ln = (data[0] << 8) | data[1]
            if ln < 12:
                return False
            if len(data) - 2 < ln:
                return None if hinted else False
            return _dns_message(data[2:2 + ln], ts, not hinted)
        return _dns_message(data, ts, not hinted)
    return None


def _ssh(data: bytes) -> bool | None:
    """An SSH version banner ("SSH-" at the start, any case, as Suricata's probe has it); None: too short."""
    if len(data) < 4:
        return None if data and b"SSH-".startswith(data.upper()) else False
    return data[:4].upper() == b"SSH-"


_SMB_MAGICS = (b"\xffSMB", b"\xfeSMB", b"\xfdSMB")     # SMB1, SMB2/3, SMB3 transform (encrypted)
_NBSS_OTHER = frozenset((0x81, 0x82, 0x83, 0x84, 0x85))   # NetBIOS session request, answers, retarget, keepalive


def _smb(data: bytes) -> bool | None:
    """SMB as Suricata's probe finds it: an SMB message in a NetBIOS session message (type 0; direct SMB on 445
    is framed the same way), possibly after one short NetBIOS message of another type (the session request on
    139, a keepalive). None: too short to tell."""
    if len(data) < 4:
        return _smb_message(data) if not data or data[0] == 0 else None if data[0] in _NBSS_OTHER else False
    if data[0] in _NBSS_OTHER and data[1] <= 1:
        length = (data[1] << 16) | (data[2] << 8) | data[3]
        if length >= 256:
            return False
        rest = data[4 + length:]
        return _smb_message(rest) if rest else None
    return _smb_message(data)


def _smb_message(data: bytes) -> bool | None:
    if not data:
        return None
    if data[0] != 0 or len(data) >= 2 and data[1] > 1:     # type 0, then at most the 17th bit of the length
        return False
    if len(data) < 8:
        head = data[4:]
        return None if any(m.startswith(head) for m in _SMB_MAGICS) else False
    return data[4:8] in _SMB_MAGICS


def _dcerpc(data: bytes) -> bool | None:
    """A connection-oriented DCE/RPC header (version 5.0 or 5.1, a sane data representation), as Suricata's
    DCERPC/TCP probe reads it; None: fewer than its 16 bytes."""
    if len(data) < 16:
        return None if data[:1] in (b"", b"\x05") and data[1:2] in (b"", b"\x00", b"\x01") else False
    if not (data[0] == 5 and data[1] <= 1 and data[2] <= 20 and not data[4] & 0xEE and data[5] <= 3):
        return False
    # stricter than Suricata's probe, which reads one segment: the probe here may join several short messages
    # (a SOCKS5 greeting and request look like 5.0 otherwise): the drep's reserved bytes are zero and the
    # fragment holds at least its header
    frag_len = int.from_bytes(data[8:10], "little" if data[4] & 0x10 else "big")
    return data[6] == 0 and data[7] == 0 and frag_len >= 16


# protocols told by a fixed header either side may send first: (name, check returning True / False / None = wait)
_HEADER_PROTOS = (("ssh", _ssh), ("smb", _smb), ("dcerpc", _dcerpc))


def _banner_220(data: bytes) -> bool | None:
    if not data:
        return None
    if len(data) < 4:
        return None if b"220 ".startswith(data) or b"220-".startswith(data) else False
    return data.startswith((b"220 ", b"220-"))


def detect(to_server: bytes = b"", to_client: bytes = b"", transport: str = "tcp",
           sport: int | None = None, dport: int | None = None) -> str | None:
    """Name the protocol of a flow from its first bytes (see module docstring)."""
    hint = PORT_HINTS.get(dport) if dport is not None else None
    if hint is None and sport is not None:
        hint = PORT_HINTS.get(sport)
    if transport == "udp":
        return "dns" if _dns(to_server, to_client, "udp", hint == "dns") else None

    undecided = False
    for check, data in ((_tls, to_server), (_tls, to_client)):
        r = check(data)
        if r:
            return "tls"
        undecided |= r is None and bool(data)
    r = _http_request(to_server)
    if r:
        return "http"
    undecided |= r is None and bool(to_server)
    r = _http_response(to_client)
    if r:
        return "http"
    for name, check in _HEADER_PROTOS:
        for data in (to_server, to_client):
            r = check(data)
            if r:
                return name
            undecided |= r is None and bool(data)

    banner = _banner_220(to_client)
    if banner:
        up = to_server[:4].upper()
        if up.startswith(_SMTP_CLIENT):
            return "smtp"
        if up.startswith(_FTP_CLIENT):
            return "ftp"
        text = to_client[:512].upper()
        if b"SMTP" in text:
            return "smtp"
        if b"FTP" in text:
            return "ftp"
        if hint in ("smtp", "ftp"):
            return hint
        return None
    if to_server[:4].upper().startswith(_SMTP_CLIENT) and not to_client:
        return "smtp"

    if hint == "dns" or (to_server[:2] and not undecided):
        r = _dns(to_server, to_client, "tcp", hint == "dns")
        if r:
            return "dns"
    return None
