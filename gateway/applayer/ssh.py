"""Sans-I/O SSH parser: each side's version banner and its binary packets up to NEWKEYS (Suricata 7's ssh
parser). After NEWKEYS a side's bytes are encrypted; once both sides sent it there is nothing more to parse or
inspect (Suricata's encryption handling for SSH, as for TLS).

    parser = SshParser()
    events = parser.feed(data, to_server)   # contiguous stream bytes, split anywhere

Events (AppEvent, tx = the SshSession of the flow):
    banner     a side's banner parsed: session.client / .server .proto_version ("2.0"), .software_version
    kexinit    a side's KEXINIT parsed: its .hassh and .hassh_string (HASSH / HASSHServer)
    encrypted  a side sent NEWKEYS; when both have, session.done is True
    anomaly    info = Suricata's ssh app-layer-event name: invalid_banner, long_banner, invalid_record,
               long_kex_record

Bounded: a banner line is kept up to MAX_BANNER bytes, a KEXINIT up to MAX_KEX_RECORD; every other packet is
skipped by its length without being kept. A side that breaks the framing is given up with an anomaly.
Nothing raises.
"""
from __future__ import annotations

import hashlib

from .common import AppEvent, anomaly_event

MAX_BANNER = 256            # Suricata SSH_MAX_BANNER_LEN: a longer banner line is a long_banner
MAX_LINE_KEPT = 4096        # of a long banner that arrived whole, what is read (the versions it yields are bounded)
MAX_KEX_RECORD = 65535      # Suricata SSH_MAX_REASSEMBLED_RECORD_LEN: a longer KEXINIT is a long_kex_record
MSG_KEXINIT, MSG_NEWKEYS = 20, 21

# a side's progress (Suricata's SSHConnectionState)
IN_PROGRESS, BANNER_WAIT_EOL, BANNER_DONE, FINISHED = range(4)


class SshSide:
    """What one side (client or server) said."""

    __slots__ = ("_buf", "_skip", "dead", "hassh", "hassh_string", "proto_version", "software_version",
                 "state")

    def __init__(self) -> None:
        self.proto_version = b""        # "2.0" of "SSH-2.0-OpenSSH_9.2p1 Debian-2"
        self.software_version = b""     # "OpenSSH_9.2p1"
        self.hassh = b""                # md5 hex of hassh_string, from the side's KEXINIT
        self.hassh_string = b""         # "kex;encryption;mac;compression" algorithms of the side's own direction
        self.state = IN_PROGRESS
        self.dead = False               # framing broken: nothing more is parsed
        self._buf = bytearray()         # a banner line or a record header / KEXINIT in pieces
        self._skip = 0                  # bytes left of a packet that is skipped, not kept


class SshSession:
    """The SSH transaction of a flow (Suricata has one per flow), and the buffers detection reads from it."""

    __slots__ = ("anomalies", "client", "server")

    def __init__(self) -> None:
        self.client = SshSide()
        self.server = SshSide()
        self.anomalies: list[str] = []

    def side(self, to_server: bool) -> SshSide:
        return self.client if to_server else self.server

    @property
    def done(self) -> bool:
        """Both sides sent NEWKEYS (or gave up): the rest of the flow is encrypted."""
        return all(s.state == FINISHED or s.dead for s in (self.client, self.server))

    def buffers(self, keyword: str, to_server: bool | None) -> list[bytes]:
        """ssh.proto / ssh.software of the packet's side; ssh.hassh(.string) of the client, ssh.hassh.server(.string)
        of the server. A side's banner buffers exist once its banner is parsed."""
        if keyword in ("ssh.hassh", "ssh.hassh.string"):
            side = self.client
        elif keyword in ("ssh.hassh.server", "ssh.hassh.server.string"):
            side = self.server
        else:
            side = self.side(to_server is not False)
        get = _BUFFERS.get(keyword)
        if get is None or side.state < BANNER_DONE and keyword in ("ssh.proto", "ssh.software"):
            return []
        value = get(side)
        return [value] if value else []


_BUFFERS = {
    "ssh.proto": lambda s: s.proto_version,
    "ssh.software": lambda s: s.software_version,
    "ssh.hassh": lambda s: s.hassh,
    "ssh.hassh.string": lambda s: s.hassh_string,
    "ssh.hassh.server": lambda s: s.hassh,
    "ssh.hassh.server.string": lambda s: s.hassh_string,
}


def parse_banner(line: bytes) -> tuple[bytes, bytes] | None:
    """(protocol version, software version) of "SSH-protoversion-softwareversion[ comments]", or None when the line
    is no SSH banner. The protocol version may not be empty; the software version ends at a space."""
    if not line.startswith(b"SSH-"):
        return None
    dash = line.find(b"-", 4)
    if dash <= 4:
        return None
    rest = line[dash + 1:]
    end = len(rest)
    for stop in (b" ", b"\r", b"\n"):
        i = rest.find(stop)
        if 0 <= i < end:
            end = i
    return line[4:dash], rest[:end]


def _line_end(data: bytes) -> tuple[int, int] | None:
    """(end of the line, start of what follows) of a line ended by LF, CRLF or a lone CR with something after it;
    None while the end is not known yet."""
    lf = data.find(b"\n")
    cr = data.find(b"\r", 0, lf if lf >= 0 else len(data))
    if cr < 0:
        return (lf, lf + 1) if lf >= 0 else None
    if cr + 1 == len(data):
        return None                     # CR as the last byte: an LF may follow
    return cr, cr + 2 if data[cr + 1] == 10 else cr + 1


def _name_lists(body: bytes) -> list[bytes] | None:
    """The ten name-lists of a KEXINIT body (after its message code: 16-byte cookie first), None if cut short."""
    pos = 16
    out = []
    for _ in range(10):
        if pos + 4 > len(body):
            return None
        n = int.from_bytes(body[pos:pos + 4], "big")
        pos += 4
        if pos + n > len(body):
            return None
        out.append(body[pos:pos + n])
        pos += n
    return out


class SshParser:
    def __init__(self) -> None:
        self.session = SshSession()
        self._events: list[AppEvent] = []

    @property
    def done(self) -> bool:
        return self.session.done

    def feed(self, data: bytes, to_server: bool) -> list[AppEvent]:
        self._events = events = []
        side = self.session.side(to_server)
        if side.dead or side.state == FINISHED or not data:
            return events
        try:
            self._feed(side, data, to_server)
        except Exception as e:  # noqa: BLE001 - never raise out of a parser
            self._give_up(side, to_server, f"internal_error:{type(e).__name__}")
        return events

    def _anomaly(self, code: str, to_server: bool) -> None:
        self._events.append(anomaly_event(self.session, code, to_server))

    def _give_up(self, side: SshSide, to_server: bool, code: str) -> None:
        self._anomaly(code, to_server)
        side.dead = True
        side._buf = bytearray()

    def _feed(self, side: SshSide, data: bytes, to_server: bool) -> None:
        if side.state < BANNER_DONE:
            data = self._banner(side, data, to_server)
            if not data:
                return
        self._records(side, memoryview(data), to_server)

    def _banner(self, side: SshSide, data: bytes, to_server: bool) -> bytes | None:
        """Consume the banner line: the bytes after it, or None while it is incomplete (or broken)."""
        if side._buf:
            data = bytes(side._buf) + data      # at most MAX_BANNER bytes wait here
            side._buf = bytearray()
        end = _line_end(data)
        if side.state == BANNER_WAIT_EOL:
            # the rest of a long banner, skipped up to its line end (not kept)
            if end is None:
                if data.endswith(b"\r"):
                    side._buf = bytearray(b"\r")
                return None
            side.state = BANNER_DONE
            return data[end[1]:]
        if end is None:
            if len(data) < MAX_BANNER:
                side._buf = bytearray(data)     # wait for the line end
                return None
            # no line end within the limit: the banner is read from what is there and the rest of the line skipped
            parsed = parse_banner(data[:MAX_BANNER])
            if parsed is None:
                self._give_up(side, to_server, "invalid_banner")
                return None
            self._set_banner(side, parsed, to_server)
            self._anomaly("long_banner", to_server)
            side.state = BANNER_WAIT_EOL
            return self._banner(side, data[MAX_BANNER:], to_server)
        line = data[:end[0]]
        parsed = parse_banner(line[:MAX_LINE_KEPT])
        if parsed is None:
            self._give_up(side, to_server, "invalid_banner")
            return None
        self._set_banner(side, parsed, to_server)
        if len(line) >= MAX_BANNER:
            self._anomaly("long_banner", to_server)
        side.state = BANNER_DONE
        return data[end[1]:]

    def _set_banner(self, side: SshSide, parsed: tuple[bytes, bytes], to_server: bool) -> None:
        side.proto_version, side.software_version = parsed
        self._events.append(AppEvent("banner", self.session, to_server))

    def _records(self, side: SshSide, view: memoryview, to_server: bool) -> None:
        """Binary packets: uint32 packet_length, byte padding_length, payload (message code first), padding."""
        while len(view) and not side.dead and side.state != FINISHED:
            if side._skip:
                n = min(side._skip, len(view))
                side._skip -= n
                view = view[n:]
                continue
            buf = side._buf
            if len(buf) < 6:
                take = 6 - len(buf)
                buf += view[:take]
                view = view[take:]
                if len(buf) < 6:
                    return
            pkt_len = int.from_bytes(buf[:4], "big")
            if pkt_len < 2:
                self._give_up(side, to_server, "invalid_record")
                return
            code = buf[5]
            if code != MSG_KEXINIT:
                side._buf = bytearray()
                side._skip = pkt_len - 2
                if code == MSG_NEWKEYS:
                    side.state = FINISHED
                    self._events.append(AppEvent("encrypted", self.session, to_server))
                continue
            if pkt_len - 2 > MAX_KEX_RECORD:
                self._anomaly("long_kex_record", to_server)
                side._buf = bytearray()
                side._skip = pkt_len - 2
                continue
            want = 4 + pkt_len - len(buf)
            buf += view[:want]
            view = view[want:]
            if len(buf) < 4 + pkt_len:
                return
            self._kexinit(side, bytes(buf[6:]), to_server)
            side._buf = bytearray()

    def _kexinit(self, side: SshSide, body: bytes, to_server: bool) -> None:
        lists = _name_lists(body)
        if lists is None:
            self._anomaly("invalid_record", to_server)
            return
        # HASSH: the key exchange, encryption, MAC and compression algorithms the side offers for its own direction
        if to_server:
            parts = (lists[0], lists[2], lists[4], lists[6])
        else:
            parts = (lists[0], lists[3], lists[5], lists[7])
        side.hassh_string = b";".join(parts)
        side.hassh = hashlib.md5(side.hassh_string, usedforsecurity=False).hexdigest().encode()
        self._events.append(AppEvent("kexinit", self.session, to_server))
