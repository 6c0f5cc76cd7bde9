"""Minimal DER walker for X.509 certificates: subject, issuer, serial, validity, SANs, fingerprint.

Only what TLS inspection needs, formatted as Suricata prints it: distinguished names as bytes
b"C=US, O=Example, CN=host" (RDNs in certificate order, multi-valued RDNs joined with '+', unknown
attribute types as dotted OIDs), the serial as colon-separated uppercase hex of the raw INTEGER
bytes, the fingerprint as colon-separated lowercase SHA-1 of the DER. A small walker is used instead
of a full ASN.1 library because it runs for every TLS handshake on the hot path; anything it cannot
read raises CertError (the TLS parser turns that into an anomaly).
"""
from __future__ import annotations

import calendar
import hashlib


class CertError(ValueError):
    pass


_ATTR_NAMES = {
    "2.5.4.3": "CN", "2.5.4.4": "SN", "2.5.4.5": "serialNumber", "2.5.4.6": "C", "2.5.4.7": "L",
    "2.5.4.8": "ST", "2.5.4.9": "street", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.12": "title",
    "2.5.4.15": "businessCategory", "2.5.4.17": "postalCode", "2.5.4.42": "GN", "2.5.4.43": "initials",
    "2.5.4.46": "dnQualifier", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
    "1.2.840.113549.1.9.1": "Email",
}
_OID_SAN = "2.5.29.17"


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Return (tag, content start, content end) of the element at pos."""
    if pos + 2 > end:
        raise CertError("truncated element")
    tag = buf[pos]
    ln = buf[pos + 1]
    pos += 2
    if ln & 0x80:
        n = ln & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise CertError("bad length")
        ln = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    if pos + ln > end:
        raise CertError("element runs past its parent")
    return tag, pos, pos + ln


_OID_CACHE: dict[bytes, str] = {}


def _oid(data: bytes) -> str:
    # The same few attribute OIDs appear in every certificate: decode each once (bounded cache).
    s = _OID_CACHE.get(data)
    if s is None:
        s = _decode_oid(data)
        if len(_OID_CACHE) < 4096:
            _OID_CACHE[bytes(data)] = s
    return s


def _decode_oid(data: bytes) -> str:
    if not data:
        raise CertError("empty OID")
    first = data[0]
    parts = [str(min(first // 40, 2)), str(first - 40 * min(first // 40, 2))]
    v = 0
    for b in data[1:]:
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(str(v))
            v = 0
    return ".".join(parts)


def _string(tag: int, data: bytes) -> bytes:
    # Bytes as sent (Suricata keeps e.g. an injected NUL, which rules look for); only the wide
    # string types are converted to UTF-8.
    if tag == 0x1E:                      # BMPString
        return data.decode("utf-16-be", "replace").encode()
    if tag == 0x1C:                      # UniversalString
        return data.decode("utf-32-be", "replace").encode()
    return bytes(data)


def _name(buf: bytes, start: int, end: int) -> bytes:
    rdns = []
    pos = start
    while pos < end:
        tag, s, e = _tlv(buf, pos, end)
        if tag != 0x31:
            raise CertError("RDN is not a SET")
        atvs = []
        p = s
        while p < e:
            t2, s2, e2 = _tlv(buf, p, e)
            if t2 != 0x30:
                raise CertError("attribute is not a SEQUENCE")
            to, so, eo = _tlv(buf, s2, e2)
            if to != 0x06:
                raise CertError("attribute type is not an OID")
            oid = _oid(buf[so:eo])
            tv, sv, ev = _tlv(buf, eo, e2)
            atvs.append(_ATTR_NAMES.get(oid, oid).encode() + b"=" + _string(tv, buf[sv:ev]))
            p = e2
        rdns.append(b"+".join(atvs))
        pos = e
    return b", ".join(rdns)


def _time(tag: int, data: bytes) -> str:
    s = data.decode("ascii", "replace")
    if tag == 0x17 and len(s) >= 12:       # UTCTime YYMMDDHHMMSSZ
        year = int(s[:2])
        s = ("19" if year >= 50 else "20") + s
    if len(s) >= 14:
        return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[8:10]}:{s[10:12]}:{s[12:14]}"
    return s


def epoch(iso: str) -> int | None:
    """Seconds since 1970 for a "YYYY-MM-DDTHH:MM:SS" validity time (None if unreadable)."""
    try:
        return calendar.timegm((int(iso[0:4]), int(iso[5:7]), int(iso[8:10]), int(iso[11:13]),
                                int(iso[14:16]), int(iso[17:19]), 0, 0, 0))
    except (ValueError, IndexError):
        return None


class Certificate:
    __slots__ = ("der", "fingerprint", "issuer", "not_after", "not_before", "sans", "serial", "subject")

    def __init__(self, der: bytes):
        self.der = der
        self.fingerprint = ":".join(f"{b:02x}" for b in hashlib.sha1(der).digest())
        self.sans: list[str] = []
        _, s, e = _expect(der, 0, len(der), 0x30)          # Certificate
        _, ts, te = _expect(der, s, e, 0x30)               # TBSCertificate
        pos = ts
        tag, s1, e1 = _tlv(der, pos, te)
        if tag == 0xA0:                                    # [0] version
            pos = e1
        tag, s1, e1 = _expect(der, pos, te, 0x02)          # serialNumber
        self.serial = ":".join(f"{b:02X}" for b in der[s1:e1])
        _, _, pos = _expect(der, e1, te, 0x30)             # signature AlgorithmIdentifier
        _, s1, e1 = _expect(der, pos, te, 0x30)            # issuer
        self.issuer = _name(der, s1, e1)
        _, vs, ve = _expect(der, e1, te, 0x30)             # validity
        t1, a, b = _tlv(der, vs, ve)
        self.not_before = _time(t1, der[a:b])
        t2, c, d = _tlv(der, b, ve)
        self.not_after = _time(t2, der[c:d])
        _, s1, e1 = _expect(der, ve, te, 0x30)             # subject
        self.subject = _name(der, s1, e1)
        pos = e1
        _, _, pos = _expect(der, pos, te, 0x30)            # subjectPublicKeyInfo
        while pos < te:
            tag, s1, e1 = _tlv(der, pos, te)
            if tag == 0xA3:                                # [3] extensions
                self._extensions(der, s1, e1)
            pos = e1

    def _extensions(self, der: bytes, start: int, end: int) -> None:
        _, s, e = _expect(der, start, end, 0x30)
        pos = s
        while pos < e:
            _, es, ee = _expect(der, pos, e, 0x30)
            to, so, eo = _tlv(der, es, ee)
            if to == 0x06 and _oid(der[so:eo]) == _OID_SAN:
                p = eo
                tag, vs, ve = _tlv(der, p, ee)
                if tag == 0x01:                            # critical flag
                    tag, vs, ve = _tlv(der, ve, ee)
                if tag == 0x04:                            # OCTET STRING wrapping GeneralNames
                    _, gs, ge = _expect(der, vs, ve, 0x30)
                    q = gs
                    while q < ge:
                        gt, g1, g2 = _tlv(der, q, ge)
                        if gt == 0x82:                     # dNSName
                            self.sans.append(der[g1:g2].decode("ascii", "replace"))
                        q = g2
            pos = ee


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int, int]:
    t, s, e = _tlv(buf, pos, end)
    if t != tag:
        raise CertError(f"expected tag {tag:#x}, got {t:#x}")
    return t, s, e


def parse_certificate(der: bytes) -> Certificate:
    """Parse one DER certificate; raises CertError when it is not one."""
    try:
        return Certificate(der)
    except CertError:
        raise
    except (IndexError, ValueError) as e:
        raise CertError(str(e)) from None
