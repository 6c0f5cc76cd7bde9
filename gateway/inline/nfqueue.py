"""A small NFQUEUE binding over a raw AF_NETLINK socket (NETLINK_NETFILTER, nfnetlink_queue).

Why our own and not python-netfilterqueue: that binding has no fail-open flag (NFQA_CFG_F_FAIL_OPEN)
and no batched verdicts, and it calls back into Python per packet anyway. Here a burst of packets is
read with non-blocking recv_into, and all verdicts of the burst go out in ONE sendto: the non-accept
verdicts one message each, then a single NFQNL_MSG_VERDICT_BATCH accepting every remaining id up to
the burst's last. (The kernel handles the messages of one datagram in order; ids of a queue grow, so
"every id <= last" is exactly the packets of this burst still waiting.)

Wire format (include/uapi/linux/netfilter/nfnetlink_queue.h): nlmsghdr, nfgenmsg(family, version,
res_id=queue number, big-endian), then attributes; attribute payloads are big-endian.
"""
from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = NFNL_SUBSYS_QUEUE << 8 | 0
NFQNL_MSG_VERDICT = NFNL_SUBSYS_QUEUE << 8 | 1
NFQNL_MSG_CONFIG = NFNL_SUBSYS_QUEUE << 8 | 2
NFQNL_MSG_VERDICT_BATCH = NFNL_SUBSYS_QUEUE << 8 | 3
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 1
NLM_F_ACK = 4

# attributes of a packet / verdict message
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_MARK = 3
NFQA_IFINDEX_INDEV = 5
NFQA_IFINDEX_OUTDEV = 6
NFQA_PAYLOAD = 10
# attributes of a config message
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 1

# netfilter verdicts
NF_DROP = 0
NF_ACCEPT = 1
NF_REPEAT = 4

_NLMSGHDR = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")          # res_id is packed big-endian by hand
_ATTR = struct.Struct("=HH")
_BE32 = struct.Struct("!I")
_ERRNO = struct.Struct("=i")


class NfQueueError(OSError):
    pass


def _attr(atype: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return _ATTR.pack(n, atype) + payload + b"\0" * (-n & 3)


def _message(mtype: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = _NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return _NLMSGHDR.pack(16 + len(body), mtype, flags, seq, 0) + body


def verdict_message(queue: int, packet_id: int, verdict: int, mark: int | None = None) -> bytes:
    attrs = _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
    if mark is not None:
        attrs += _attr(NFQA_MARK, _BE32.pack(mark))
    return _message(NFQNL_MSG_VERDICT, queue, attrs)


def batch_verdict_message(queue: int, last_id: int, verdict: int = NF_ACCEPT) -> bytes:
    return _message(NFQNL_MSG_VERDICT_BATCH, queue, _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, last_id)))


# PACKET_HDR (11 bytes, padded to 12), IFINDEX_INDEV and IFINDEX_OUTDEV (8 each) at offset 20:
# their (length, type) headers in native order, and their values (big-endian).
_FWD_HEADS = (11, 1, 8, 5, 8, 6)
_FWD_HEAD_FMT = struct.Struct("=HH8xHH4xHH4x")
_FWD_VALUE_FMT = struct.Struct("!4xI8xI4xI")


def parse_packet(buf, n: int, _attr=_ATTR.unpack_from, _be32=_BE32.unpack_from, _hdr=_NLMSGHDR.unpack_from,
                 _fwd_heads=_FWD_HEAD_FMT.unpack_from, _fwd_values=_FWD_VALUE_FMT.unpack_from):
    """Parse one NFQNL_MSG_PACKET out of buf[:n] into (id, mark, indev, outdev, payload); a plain tuple,
    because this runs per packet. Returns None for other messages (acks); raises NfQueueError for an
    error reply. Attribute numbers are literals here for speed: 1 PACKET_HDR, 3 MARK, 5/6 IFINDEX_IN/OUTDEV,
    10 PAYLOAD (always the kernel's last attribute)."""
    if n < 20:
        return None
    if not isinstance(buf, memoryview):
        buf = memoryview(buf)          # the worker passes one already: a slice of it copies once
    mlen, mtype, _, _, _ = _hdr(buf, 0)
    if mtype != NFQNL_MSG_PACKET:
        if mtype == NLMSG_ERROR:
            err = -_ERRNO.unpack_from(buf, 16)[0]
            if err:
                raise NfQueueError(err, f"nfnetlink_queue: {os.strerror(err)}")
        return None
    end = min(n, mlen)
    off = 20
    pid = mark = indev = outdev = 0
    payload = b""
    if end >= 48 and _fwd_heads(buf, 20) == _FWD_HEADS:
        # A forwarded packet starts with PACKET_HDR, IFINDEX_INDEV, IFINDEX_OUTDEV (the kernel's order):
        # read the three in two struct calls instead of a loop turn each.
        pid, indev, outdev = _fwd_values(buf, 20)
        off = 48
    while off + 4 <= end:
        alen, atype = _attr(buf, off)
        if alen < 4:
            break
        atype &= 0x3FFF
        if atype == 10:
            payload = buf[off + 4:min(off + alen, end)].tobytes()   # never past what was received
            break
        if atype <= 6 and off + 8 <= end:     # a value cut off by the datagram's end is not read
            v = _be32(buf, off + 4)[0]
            if atype == 1:
                pid = v
            elif atype == 3:
                mark = v
            elif atype == 5:
                indev = v
            elif atype == 6:
                outdev = v
        off += (alen + 3) & ~3
    return pid, mark, indev, outdev, payload


class NfQueue:
    """A bound queue. `recv_burst()` returns up to `burst` packets without blocking;
    `send(verdict bytes)` sends the verdicts of a burst in one datagram."""

    def __init__(self, queue: int, maxlen: int = 4096, fail_open: bool = False, copy_range: int = 0xFFFF,
                 rcvbuf: int = 16 << 20, burst: int = 64):
        self.queue = queue
        self.burst = burst
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            # A full socket buffer must not surface as ENOBUFS on every recv: the kernel then drops or
            # (fail-open) accepts, and counts it in /proc/net/netfilter/nfnetlink_queue.
            self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except PermissionError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.bind((0, 0))
            self._seq = 0
            self._config(_attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0)))
            self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", copy_range, NFQNL_COPY_PACKET)))
            self._config(_attr(NFQA_CFG_QUEUE_MAXLEN, _BE32.pack(maxlen)))
            flags = NFQA_CFG_F_FAIL_OPEN if fail_open else 0
            self._config(_attr(NFQA_CFG_MASK, _BE32.pack(NFQA_CFG_F_FAIL_OPEN))
                         + _attr(NFQA_CFG_FLAGS, _BE32.pack(flags)))
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self.buf = bytearray(copy_range + 4096)
        self.view = memoryview(self.buf)
        self.errors = 0           # error replies from the kernel (e.g. a verdict for an unknown id)
        self.last_error = ""

    def _config(self, attrs: bytes) -> None:
        """Send one config message with NLM_F_ACK and wait for its ack (raises on error, e.g. EBUSY
        when another process is bound to the queue)."""
        self._seq += 1
        self.sock.sendto(_message(NFQNL_MSG_CONFIG, self.queue, attrs, NLM_F_REQUEST | NLM_F_ACK, self._seq),
                         (0, 0))
        self.sock.settimeout(5.0)
        while True:
            data = self.sock.recv(65536)
            _, mtype, _, seq, _ = _NLMSGHDR.unpack_from(data, 0)
            if mtype == NLMSG_ERROR and seq == self._seq:
                err = -_ERRNO.unpack_from(data, 16)[0]
                if err:
                    hint = " (is another process bound to this queue?)" if err == errno.EPERM else ""
                    raise NfQueueError(err, f"nfnetlink_queue: queue {self.queue}: config refused: "
                                            f"{os.strerror(err)}{hint}")
                return

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_burst(self) -> list[tuple]:
        """Up to `burst` packets as (id, mark, indev, outdev, payload) tuples, without blocking."""
        out = []
        recv_into = self.sock.recv_into
        buf = self.buf
        view = self.view
        for _ in range(self.burst):
            try:
                n = recv_into(buf)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in (errno.ENOBUFS, errno.EINTR):
                    continue
                raise
            try:
                pkt = parse_packet(view, n)
            except NfQueueError as e:
                self.errors += 1
                self.last_error = str(e)
                continue
            if pkt is not None:
                out.append(pkt)
        return out

    def send(self, data: bytes) -> None:
        if not data:
            return
        while True:
            try:
                self.sock.sendto(data, (0, 0))
                return
            except InterruptedError:
                continue
            except BlockingIOError:
                # The kernel processes netlink sends synchronously; this is a full socket buffer for
                # error replies. Wait briefly rather than lose verdicts (packets would sit in the queue).
                import select
                select.select([], [self.sock], [], 0.1)

    def close(self) -> None:
        """Closing the socket unbinds the queue; the kernel drops what was still waiting for a verdict
        (or, with --queue-bypass, accepts new packets while nobody is bound)."""
        self.sock.close()
