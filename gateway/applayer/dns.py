"""Sans-I/O DNS parser: UDP (one message per datagram) and TCP (2-byte length prefix, split anywhere).

    parser = DnsParser(tcp=False)
    events = parser.feed(datagram, to_server)     # UDP: one call per datagram
    events = parser.feed(segment_bytes, to_server)  # TCP: contiguous stream bytes, any split

Events (AppEvent):
    query      tx = DnsTransaction, tx.query is the parsed message
    response   tx = DnsTransaction, tx.response parsed (tx.query set when a query with the same id
               was seen on this flow)
    anomaly    info = code (Suricata-like: malformed_data, z_flag_set, infinite_loop, ...)

Names are returned as bytes without the trailing dot, labels joined with '.', exactly the bytes on
the wire (Suricata's dns.query buffer); the root is b"". Compression pointers are followed with a hop
limit and must point strictly backwards, so loops cannot hang the worker. Nothing raises.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from .common import AppEvent

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_MX, TYPE_TXT, TYPE_AAAA, TYPE_SRV = 1, 2, 5, 6, 12, 15, 16, 28, 33
TYPE_OPT = 41
RR_TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
                 33: "SRV", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 65: "HTTPS",
                 255: "ANY", 257: "CAA"}
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
               6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}

_HDR = struct.Struct("!HHHHHH")
_QTAIL = struct.Struct("!HH")
_RRTAIL = struct.Struct("!HHIH")
_MAX_NAME = 1025          # bytes of a decoded name (255 on the wire, escapes aside)
_MAX_HOPS = 128           # compression pointers followed per name before calling it a loop


@dataclass(frozen=True)
class DnsLimits:
    max_records: int = 256        # questions + answers + authorities + additionals kept per message
    max_pending: int = 256        # unanswered queries remembered per flow
    max_tcp_message: int = 65535


DEFAULT_LIMITS = DnsLimits()


class _Malformed(Exception):
    pass


class DnsRecord:
    __slots__ = ("name", "rdata", "rrclass", "rrtype", "ttl", "value")

    def __init__(self, name: bytes, rrtype: int, rrclass: int, ttl: int, rdata: bytes, value):
        self.name = name
        self.rrtype = rrtype
        self.rrclass = rrclass
        self.ttl = ttl
        self.rdata = rdata
        self.value = value        # decoded rdata: str address, bytes name, (pref, name), [txt], ...

    def __repr__(self) -> str:  # pragma: no cover
        return f"DnsRecord({self.name!r}, {RR_TYPE_NAMES.get(self.rrtype, self.rrtype)}, {self.value!r})"


class DnsMessage:
    __slots__ = (
        "aa",
        "additionals",
        "anomalies",
        "answers",
        "authorities",
        "complete",
        "flags",
        "id",
        "is_response",
        "opcode",
        "questions",
        "ra",
        "rcode",
        "rd",
        "tc",
        "z",
    )

    def __init__(self):
        self.id = 0
        self.flags = 0
        self.is_response = False
        self.opcode = 0
        self.aa = self.tc = self.rd = self.ra = False
        self.z = False
        self.rcode = 0
        self.questions: list[tuple[bytes, int, int]] = []
        self.answers: list[DnsRecord] = []
        self.authorities: list[DnsRecord] = []
        self.additionals: list[DnsRecord] = []
        self.anomalies: list[str] = []
        self.complete = False     # every section parsed without error

    @property
    def rcode_name(self) -> str:
        return RCODE_NAMES.get(self.rcode, str(self.rcode))


class DnsTransaction:
    """A query and its response (either may be missing)."""

    __slots__ = ("_sides", "id", "query", "response")

    def __init__(self, msg_id: int):
        self.id = msg_id
        self.query: DnsMessage | None = None
        self.response: DnsMessage | None = None
        self._sides: tuple | None = None

    def side(self, to_server: bool) -> DnsSide:
        """The transaction as Suricata's detection sees it: a DNS request and its response are two
        transactions, each alerted on at most once. The same object is returned on every call."""
        if self._sides is None:
            self._sides = (DnsSide(self, False), DnsSide(self, True))
        return self._sides[to_server]

    def buffers(self, keyword: str, to_server: bool | None = None) -> list[bytes]:
        """Suricata multi-buffers, from the message travelling in the given direction (the query
        to_server, the response to_client; both when to_server is None):
        dns.query (query names of the request), dns.queries.rrname, dns.answers.rrname,
        dns.authorities.rrname, dns.additionals.rrname, dns.response.rrname (every name in the
        response)."""
        if to_server is None:
            msgs = [m for m in (self.query, self.response) if m is not None]
        else:
            m = self.query if to_server else self.response
            msgs = [m] if m is not None else []
        if keyword in ("dns.query", "dns_query"):
            return [name for name, _, _ in self.query.questions] if self.query and to_server is not False else []
        if keyword == "dns.queries.rrname":
            return [name for m in msgs for name, _, _ in m.questions]
        section = _SECTIONS.get(keyword)
        if section is not None:
            return [rr.name for m in msgs for rr in getattr(m, section) if rr.rrtype != TYPE_OPT]
        if keyword == "dns.response.rrname":
            r = self.response
            if r is None or to_server:
                return []
            # Suricata 8: every record's name, then its rdata when that is a name (CNAME, PTR, MX, NS,
            # SOA mname), in section order
            out = [name for name, _, _ in r.questions]
            for sec in (r.answers, r.authorities, r.additionals):
                for rr in sec:
                    if rr.rrtype == TYPE_OPT:
                        continue
                    out.append(rr.name)
                    target = _rdata_name(rr)
                    if target:
                        out.append(target)
            return out
        raise KeyError(f"unknown DNS buffer {keyword!r}")


class DnsSide:
    """One direction of a DnsTransaction: `query` is only set to_server, `response` only to_client;
    buffers() always reads the message of its own direction."""

    __slots__ = ("to_server", "tx")

    def __init__(self, tx: DnsTransaction, to_server: bool):
        self.tx = tx
        self.to_server = to_server

    @property
    def id(self) -> int:
        return self.tx.id

    @property
    def query(self) -> DnsMessage | None:
        return self.tx.query if self.to_server else None

    @property
    def response(self) -> DnsMessage | None:
        return None if self.to_server else self.tx.response

    def buffers(self, keyword: str, to_server: bool | None = None) -> list[bytes]:
        return self.tx.buffers(keyword, self.to_server)


def _rdata_name(rr: DnsRecord) -> bytes | None:
    v = rr.value
    if rr.rrtype in (TYPE_CNAME, TYPE_NS, TYPE_PTR):
        return v if isinstance(v, bytes) else None
    if rr.rrtype in (TYPE_MX, TYPE_SOA) and isinstance(v, tuple):
        return v[1] if rr.rrtype == TYPE_MX else v[0]
    return None


_SECTIONS = {"dns.answers.rrname": "answers", "dns.authorities.rrname": "authorities",
             "dns.additionals.rrname": "additionals"}
DNS_BUFFERS = frozenset(("dns.query", "dns_query", "dns.queries.rrname", "dns.response.rrname")) | frozenset(_SECTIONS)


def read_name(msg: bytes, pos: int, notes: list[str] | None = None) -> tuple[bytes, int]:
    """Decode the name at pos; return (name, offset just after it in the original position).

    Like Suricata, an over-long name is truncated to 1025 bytes ("name_too_long") and more than 255
    labels stop being collected ("too_many_labels"); both keep parsing. Pointer chains are bounded
    ("infinite_loop"), which does stop the message.
    """
    labels: list[bytes] = []
    total = 0
    hops = 0
    nlabels = 0
    end_pos = -1
    n = len(msg)
    truncated = False
    while True:
        if pos >= n:
            raise _Malformed("name runs past the message")
        ln = msg[pos]
        if ln == 0:
            pos += 1
            break
        kind = ln & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise _Malformed("truncated compression pointer")
            target = ((ln & 0x3F) << 8) | msg[pos + 1]
            if end_pos == -1:
                end_pos = pos + 2
            hops += 1
            if hops > _MAX_HOPS or target == pos:
                raise _Malformed("infinite_loop")
            pos = target
            continue
        if kind:
            raise _Malformed("unsupported label type")
        label = msg[pos + 1:pos + 1 + ln]
        if len(label) != ln:
            raise _Malformed("label runs past the message")
        nlabels += 1
        if nlabels > 255:
            if nlabels == 256 and notes is not None:
                notes.append("too_many_labels")
            if nlabels > 4096:
                raise _Malformed("infinite_loop")
        elif not truncated:
            add = ln + (1 if labels else 0)
            if total + add > _MAX_NAME:
                truncated = True
                if notes is not None:
                    notes.append("name_too_long")
                room = _MAX_NAME - total - (1 if labels else 0)
                if room > 0:
                    labels.append(label[:room])
                    total = _MAX_NAME
            else:
                labels.append(label)
                total += add
        pos += 1 + ln
    return b".".join(labels), (end_pos if end_pos != -1 else pos)


def _rdata_value(msg: bytes, rrtype: int, start: int, rdlen: int):
    rdata = msg[start:start + rdlen]
    if rrtype == TYPE_A and rdlen == 4:
        return socket.inet_ntop(socket.AF_INET, rdata)
    if rrtype == TYPE_AAAA and rdlen == 16:
        return socket.inet_ntop(socket.AF_INET6, rdata)
    if rrtype in (TYPE_CNAME, TYPE_NS, TYPE_PTR):
        return read_name(msg, start)[0]
    if rrtype == TYPE_MX and rdlen >= 3:
        return (struct.unpack_from("!H", msg, start)[0], read_name(msg, start + 2)[0])
    if rrtype == TYPE_TXT:
        out = []
        i = 0
        while i < rdlen:
            ln = rdata[i]
            out.append(rdata[i + 1:i + 1 + ln])
            i += 1 + ln
        return out
    if rrtype == TYPE_SOA:
        mname, p = read_name(msg, start)
        rname, p = read_name(msg, p)
        if p + 20 > start + rdlen:
            raise _Malformed("short SOA")
        return (mname, rname) + struct.unpack_from("!IIIII", msg, p)
    if rrtype == TYPE_SRV and rdlen >= 7:
        prio, weight, port = struct.unpack_from("!HHH", msg, start)
        return (prio, weight, port, read_name(msg, start + 6)[0])
    return rdata


def parse_message(msg: bytes, limits: DnsLimits = DEFAULT_LIMITS) -> DnsMessage | None:
    """Parse one DNS message. None if even the 12-byte header is missing; otherwise a message with
    whatever could be parsed and its anomalies (never raises)."""
    if len(msg) < 12:
        return None
    m = DnsMessage()
    m.id, flags, qd, an, ns, ar = _HDR.unpack_from(msg, 0)
    m.flags = flags
    m.is_response = bool(flags & 0x8000)
    m.opcode = (flags >> 11) & 0xF
    m.aa = bool(flags & 0x0400)
    m.tc = bool(flags & 0x0200)
    m.rd = bool(flags & 0x0100)
    m.ra = bool(flags & 0x0080)
    m.z = bool(flags & 0x0040)
    m.rcode = flags & 0xF
    if m.z:
        m.anomalies.append("z_flag_set")
    if qd + an + ns + ar > limits.max_records:
        m.anomalies.append("too_many_records")
    budget = limits.max_records
    pos = 12
    try:
        for _ in range(qd):
            name, pos = read_name(msg, pos, m.anomalies)
            if pos + 4 > len(msg):
                raise _Malformed("truncated question")
            qtype, qclass = _QTAIL.unpack_from(msg, pos)
            pos += 4
            if budget > 0:
                m.questions.append((name, qtype, qclass))
                budget -= 1
        for count, section in ((an, m.answers), (ns, m.authorities), (ar, m.additionals)):
            for _ in range(count):
                name, pos = read_name(msg, pos, m.anomalies)
                if pos + 10 > len(msg):
                    raise _Malformed("truncated record")
                rrtype, rrclass, ttl, rdlen = _RRTAIL.unpack_from(msg, pos)
                pos += 10
                if pos + rdlen > len(msg):
                    raise _Malformed("rdata runs past the message")
                if budget > 0:
                    try:
                        value = _rdata_value(msg, rrtype, pos, rdlen)
                    except (_Malformed, struct.error, IndexError, ValueError):
                        m.anomalies.append("malformed_rdata")
                        value = msg[pos:pos + rdlen]
                    section.append(DnsRecord(name, rrtype, rrclass, ttl, msg[pos:pos + rdlen], value))
                    budget -= 1
                pos += rdlen
        m.complete = True
        if pos != len(msg):
            m.anomalies.append("trailing_data")
    except _Malformed as e:
        m.anomalies.append("infinite_loop" if str(e) == "infinite_loop" else "malformed_data")
    except (struct.error, IndexError):
        m.anomalies.append("malformed_data")
    if len(m.anomalies) > 1:
        m.anomalies = list(dict.fromkeys(m.anomalies))   # one event per kind per message
    return m


class DnsParser:
    """Per-flow DNS state: TCP framing buffers and query/response matching."""

    def __init__(self, tcp: bool = False, limits: DnsLimits = DEFAULT_LIMITS):
        self.tcp = tcp
        self.limits = limits
        self._bufs = (bytearray(), bytearray())   # to_client, to_server (TCP only)
        self.pending: dict[int, DnsTransaction] = {}
        self.anomaly_count = 0

    def feed_toserver(self, data: bytes) -> list[AppEvent]:
        return self.feed(data, True)

    def feed_toclient(self, data: bytes) -> list[AppEvent]:
        return self.feed(data, False)

    def feed(self, data: bytes, to_server: bool) -> list[AppEvent]:
        events: list[AppEvent] = []
        try:
            if not self.tcp:
                self._message(data, to_server, events)
                return events
            buf = self._bufs[to_server]
            buf += data
            pos = 0
            while len(buf) - pos >= 2:
                ln = (buf[pos] << 8) | buf[pos + 1]
                if ln == 0 or ln > self.limits.max_tcp_message:
                    self._anomaly(None, "malformed_data", to_server, events)
                    pos += 2
                    continue
                if len(buf) - pos - 2 < ln:
                    break
                self._message(bytes(buf[pos + 2:pos + 2 + ln]), to_server, events)
                pos += 2 + ln
            if pos:
                del buf[:pos]
        except Exception as e:  # noqa: BLE001 - never raise out of a parser
            self._anomaly(None, f"internal_error:{type(e).__name__}", to_server, events)
        return events

    def _anomaly(self, tx, code: str, to_server: bool, events: list[AppEvent]) -> None:
        self.anomaly_count += 1
        events.append(AppEvent("anomaly", tx, to_server, b"", code))

    def _message(self, data: bytes, to_server: bool, events: list[AppEvent]) -> None:
        m = parse_message(data, self.limits)
        if m is None:
            self._anomaly(None, "malformed_data", to_server, events)
            return
        if m.is_response:
            tx = self.pending.pop(m.id, None)
            if tx is None:
                tx = DnsTransaction(m.id)
                m.anomalies.append("unsolicited_response")
            tx.response = m
            if to_server:
                m.anomalies.append("not_a_request")
            kind = "response"
        else:
            tx = DnsTransaction(m.id)
            tx.query = m
            if len(self.pending) >= self.limits.max_pending:
                self.pending.pop(next(iter(self.pending)))
                m.anomalies.append("flooded")
            self.pending[m.id] = tx
            if not to_server:
                m.anomalies.append("not_a_response")
            kind = "query"
        events.append(AppEvent(kind, tx, to_server))
        for code in m.anomalies:
            self._anomaly(tx, code, to_server, events)
