"""Streaming Content-Encoding decoder for HTTP bodies: gzip / deflate (zlib or raw) / lzma, capped.

Like libhtp (and browsers), each layer sniffs what it really got instead of trusting the header: a
"deflate" body may carry a zlib header or none, a "gzip" body may be zlib. A layer that fails before
producing any output passes its input through unchanged (libhtp's passthrough), so a lying
Content-Encoding header cannot hide a plain body from inspection. Output is capped per layer with
zlib's max_length, so a compression bomb costs at most `limit` bytes of work and memory.
"""
from __future__ import annotations

import lzma
import re
import zlib

_TOKEN_RE = re.compile(rb"[a-z0-9\-]+")
_KNOWN = {b"gzip": "gzip", b"x-gzip": "gzip", b"deflate": "deflate", b"x-deflate": "deflate",
          b"lzma": "lzma"}
_SNIFF = 10            # bytes needed to tell gzip / zlib / raw deflate apart
_BLOCK = 1024          # decoder input block (fixed offsets make errors split-independent)
_LZMA_MEMLIMIT = 16 << 20


def parse_content_encoding(value: bytes) -> tuple[list[str], list[bytes]]:
    """Return (known codings in header order, unknown tokens). Tolerates junk separators."""
    known: list[str] = []
    unknown: list[bytes] = []
    for tok in _TOKEN_RE.findall(value.lower()):
        kind = _KNOWN.get(tok)
        if kind:
            known.append(kind)
        elif tok != b"identity":
            unknown.append(tok)
    return known, unknown


_MAX_GZIP_HEADER = 4096
_FEXTRA, _FNAME, _FCOMMENT, _FHCRC = 4, 8, 16, 2


def _gzip_header_len(buf: bytearray) -> int | None:
    """Length of the gzip member header at buf[0:], None if incomplete, -1 if not deflate."""
    if len(buf) < 10:
        return None
    if buf[2] != 8:
        return -1
    flags = buf[3]
    pos = 10
    if flags & _FEXTRA:
        if len(buf) < pos + 2:
            return None
        pos += 2 + (buf[pos] | (buf[pos + 1] << 8))
    for bit in (_FNAME, _FCOMMENT):
        if flags & bit:
            end = buf.find(b"\x00", pos)
            if end == -1:
                return None
            pos = end + 1
    if flags & _FHCRC:
        pos += 2
    if len(buf) < pos:
        return None
    return pos


def _looks_zlib(head: bytes) -> bool:
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] >> 4) <= 7 and ((head[0] << 8) | head[1]) % 31 == 0


class _Layer:
    __slots__ = ("dec", "eof", "failed", "inbuf", "kind", "limit", "lzma_ok", "mode", "pending", "produced")

    def __init__(self, kind: str, limit: int, lzma_ok: bool):
        self.kind = kind
        self.limit = limit
        self.lzma_ok = lzma_ok
        self.dec = None
        self.mode = "sniff"          # sniff | run | pass | stop
        self.pending = bytearray()   # raw input kept until the first output (for passthrough)
        self.produced = 0
        self.failed = ""
        self.eof = False
        self.inbuf = bytearray()     # input not yet given to the decoder (less than one block)

    def _start(self) -> bool:
        """Pick the decoder from the first bytes. False: need more bytes (a long gzip header)."""
        head = bytes(self.pending[:_SNIFF])
        if self.kind == "lzma":
            if not self.lzma_ok:
                self.mode = "pass"
                self.failed = "lzma_disabled"
                return True
            self.dec = lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=_LZMA_MEMLIMIT)
        elif head[:2] == b"\x1f\x8b":
            # Parse the gzip header ourselves and inflate raw: like libhtp we ignore reserved flag
            # bits and the CRC/length trailer, which evasions corrupt while browsers do not care.
            skip = _gzip_header_len(self.pending)
            if skip is None:
                return False
            if skip < 0:
                self.mode = "pass"
                self.failed = "gzip: bad header"
                return True
            del self.pending[:skip]
            self.dec = zlib.decompressobj(-15)
        elif _looks_zlib(head):
            self.dec = zlib.decompressobj(15)
        else:
            self.dec = zlib.decompressobj(-15)
        self.mode = "run"
        return True

    def feed(self, data: bytes, final: bool) -> bytes:
        if self.mode == "stop" or (not data and not final):
            return b""
        if self.mode == "pass":
            return self._cap(data)
        if self.mode == "sniff":
            self.pending += data
            if len(self.pending) < _SNIFF and not final:
                return b""
            if not self._start():
                if final or len(self.pending) > _MAX_GZIP_HEADER:
                    self.mode = "pass"
                    self.failed = "gzip: header too long"
                    data, self.pending = bytes(self.pending), bytearray()
                    return self._cap(data)
                return b""
            if self.mode == "pass":
                data, self.pending = bytes(self.pending), bytearray()
                return self._cap(data)
            data = bytes(self.pending)          # pending is kept for a possible passthrough
            del self.pending[self.limit:]
        elif not self.produced and len(self.pending) < self.limit:
            self.pending += data[:self.limit - len(self.pending)]   # bounded, like the output
        self.inbuf += data
        out = bytearray()
        # The decoder is fed fixed blocks at fixed input offsets, whatever the arrival pattern: a
        # corrupt stream then fails at the same point and yields the same output for any split.
        while self.mode == "run":
            n = len(self.inbuf)
            if n >= _BLOCK:
                block = bytes(self.inbuf[:_BLOCK])
                del self.inbuf[:_BLOCK]
                last = final and n == _BLOCK
            elif final:
                block = bytes(self.inbuf)
                self.inbuf = bytearray()
                last = True
            else:
                break
            out += self._decode(block, last)
            if last:
                break
        if self.mode != "run":
            self.inbuf = bytearray()
        return bytes(out)

    def _decode(self, block: bytes, last: bool) -> bytes:
        room = self.limit - self.produced
        if room <= 0 or self.eof:
            if room <= 0:
                self.mode = "stop"
            return b""
        try:
            out = self.dec.decompress(block, room) if block else b""
            self.eof = self.dec.eof
            if (last and not self.eof and not isinstance(self.dec, lzma.LZMADecompressor)
                    and not self.dec.unconsumed_tail and len(out) < room):
                out += self.dec.flush()[:room - len(out)]   # only buffered bytes: no tail left
        except (zlib.error, lzma.LZMAError, EOFError, MemoryError) as e:
            self.failed = f"{self.kind}: {e}"
            if not self.produced:
                # Nothing decoded yet: the header lied, inspect the body as it is.
                self.mode = "pass"
                raw, self.pending = bytes(self.pending), bytearray()
                return self._cap(raw)
            self.mode = "stop"
            return b""
        if out:
            if not self.produced:
                self.pending = bytearray()
            self.produced += len(out)
            if self.produced >= self.limit:
                self.mode = "stop"
        return out

    def _cap(self, data: bytes) -> bytes:
        room = self.limit - self.produced
        if room <= 0:
            return b""
        data = data[:room]
        self.produced += len(data)
        return data


class BodyDecoder:
    """A chain of decoding layers. feed() returns decoded bytes; finish() flushes at end of body."""

    __slots__ = ("anomalies", "layers")

    def __init__(self, codings: list[str], limit: int, layer_limit: int, lzma_enabled: bool = True):
        self.anomalies: list[str] = []
        if len(codings) > layer_limit:
            # Keep the outermost layers (listed last): those are the ones that can be peeled.
            self.anomalies.append("too_many_encoding_layers")
            codings = codings[-layer_limit:]
        # Decode in reverse order of application (the last coding listed was applied last).
        self.layers = [_Layer(k, limit, lzma_enabled) for k in reversed(codings)]

    def feed(self, data: bytes, final: bool = False) -> bytes:
        for layer in self.layers:
            data = layer.feed(data, final)
        return data

    @property
    def truncated(self) -> bool:
        """Some layer hit the output cap: the decoded body is longer than what was kept."""
        return any(layer.produced >= layer.limit and not layer.eof for layer in self.layers)

    def finish(self) -> bytes:
        out = self.feed(b"", True)
        for layer in self.layers:
            if layer.failed:
                self.anomalies.append("decompression_failed")
                break
        return out
