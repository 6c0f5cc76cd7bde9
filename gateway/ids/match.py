"""Evaluate one MatchList against one inspection buffer with Suricata's content-inspection semantics.

The model (model.py) holds the keywords in rule order; this module walks them like Suricata's
DetectEngineContentInspection:

- A cursor (`prev`) is the end of the previous content/pcre/byte_jump/byte_extract match in the list; a
  relative keyword (distance/within, pcre R, byte_* relative, isdataat relative) is anchored there.
- offset/depth bound an absolute content (depth counts from offset, as in Suricata); distance/within bound a
  relative one (a negative distance may reach back, never before the buffer start).
- Backtracking: when a content or pcre matched but a later RELATIVE keyword failed, the content is retried at
  its next occurrence (Suricata's DETECT_CONTENT_RELATIVE_NEXT) until none is left. A failing absolute
  content can never be helped by moving an earlier match: that ends the evaluation (discontinue).
- A negated content/pcre matches when the pattern is absent from its window; it does not move the cursor.
- Work is bounded: at most RECURSION_LIMIT match attempts per evaluation (Suricata's
  inspection-recursion-limit), after which the list does not match.

`match_list(ml, buf)` returns True/False. byte_extract variables live in a small dict for one evaluation.
"""
from __future__ import annotations

import re

from .model import BufferSize, ByteExtract, ByteJump, ByteTest, ContentMatch, IsDataAt, PcreMatch

RECURSION_LIMIT = 3000

_FAIL = 0        # this path failed, an earlier content may retry
_OK = 1
_STOP = -1       # failed in a way no retry can fix (absolute content missing, limit hit)

_BASES = {"hex": 16, "dec": 10, "oct": 8}


class _State:
    __slots__ = ("budget", "vars")

    def __init__(self) -> None:
        self.budget = RECURSION_LIMIT
        self.vars: dict[str, int] = {}


def _val(v, st: _State) -> int | None:
    if isinstance(v, int) or v is None:
        return v
    return st.vars.get(v)


def match_list(ml, buf: bytes, lowered: bytes | None = None) -> bool:
    """Does the MatchList `ml` match the buffer `buf`? `lowered` may pass buf.lower() if already made."""
    matches = ml.matches
    if not matches:
        return True
    st = _State()
    return _inspect(matches, 0, buf, lowered, 0, st) == _OK


def _inspect(matches: list, i: int, buf: bytes, low: bytes | None, prev: int, st: _State) -> int:
    n = len(matches)
    blen = len(buf)
    while i < n:
        st.budget -= 1
        if st.budget < 0:
            return _STOP
        m = matches[i]
        t = type(m)
        if t is ContentMatch:
            return _content(matches, i, m, buf, low, prev, st)
        if t is PcreMatch:
            return _pcre(matches, i, m, buf, low, prev, st)
        if t is ByteTest:
            if not _byte_test(m, buf, prev, st):
                return _FAIL
        elif t is ByteJump:
            r = _byte_jump(m, buf, prev, st)
            if r is None:
                return _FAIL
            prev = r
        elif t is ByteExtract:
            r = _byte_extract(m, buf, prev, st)
            if r is None:
                return _FAIL
            prev = r
        elif t is IsDataAt:
            size = _val(m.size, st)
            if size is None:
                return _FAIL
            ok = (prev + size <= blen) if m.relative else (size < blen)
            if ok == m.negated:
                return _FAIL if m.relative else _STOP
        elif t is BufferSize:
            if not m.compare.matches(blen):
                return _STOP
        else:  # an unknown match type never matches (never silently ignored)
            return _STOP
        i += 1
    return _OK


def _relative_next(matches: list, i: int) -> bool:
    """Is the keyword after i anchored on i's match (so moving i can change its outcome)?"""
    for m in matches[i + 1:]:
        if getattr(m, "relative", False):
            return True
        # a non-relative keyword resets nothing, but later relative ones anchor on *it*, not on us
        if type(m) in (ContentMatch, PcreMatch, ByteJump, ByteExtract):
            return False
    return False


def _content(matches, i, m: ContentMatch, buf: bytes, low, prev: int, st: _State) -> int:
    blen = len(buf)
    pat = m.pattern
    plen = len(pat)
    if m.relative:
        dist = _val(m.distance, st) if m.distance is not None else 0
        if dist is None:
            return _FAIL
        start = prev + dist
        if start < 0:
            start = 0
        end = blen
        if m.within is not None:
            within = _val(m.within, st)
            if within is None:
                return _FAIL
            lim = prev + dist + within
            if lim < end:
                end = lim
    elif m.startswith:
        start, end = 0, plen
    else:
        start = _val(m.offset, st) if m.offset is not None else 0
        if start is None:
            return _FAIL
        end = blen
        if m.depth is not None:
            depth = _val(m.depth, st)
            if depth is None:
                return _FAIL
            if start + depth < end:
                end = start + depth
    if end > blen:
        end = blen
    if m.nocase:
        if low is None:
            low = buf.lower()
        hay = low
        pat = pat.lower()
    else:
        hay = buf
    if m.negated:
        if start > end or end - start < plen:
            return _inspect(matches, i + 1, buf, low, prev, st)
        if m.endswith:
            found = hay.endswith(pat, start, end) and end == blen
        else:
            found = hay.find(pat, start, end) >= 0
        if found:
            return _FAIL if m.relative else _STOP
        return _inspect(matches, i + 1, buf, low, prev, st)
    if start > end or end - start < plen:
        return _FAIL if m.relative else _STOP
    if m.endswith:
        # only an occurrence ending at the buffer end counts
        if end != blen or not hay.endswith(pat, start, end):
            return _FAIL if m.relative else _STOP
        pos = blen - plen
        return _inspect(matches, i + 1, buf, low, pos + plen, st)
    pos = hay.find(pat, start, end)
    if pos < 0:
        return _FAIL if m.relative else _STOP
    retry = None        # worked out on the first failure only: most evaluations end before one
    while pos >= 0:
        r = _inspect(matches, i + 1, buf, low, pos + plen, st)
        if r != _FAIL:
            return r
        if retry is None:
            retry = _relative_next(matches, i)
        if not retry:
            return _FAIL
        st.budget -= 1
        if st.budget < 0:
            return _STOP
        pos = hay.find(pat, pos + 1, end)
    return _FAIL


def _pcre(matches, i, m: PcreMatch, buf: bytes, low, prev: int, st: _State) -> int:
    start = prev if m.relative else 0
    rx = m.regex
    if m.negated:
        if rx.search(buf, start) is not None:
            return _FAIL
        return _inspect(matches, i + 1, buf, low, prev, st)
    # a relative pcre sees the buffer from the cursor on: "^" anchors there, as in Suricata
    hay = buf[start:] if start else buf
    mo = rx.search(hay)
    if mo is None:
        return _FAIL
    retry = None
    while mo is not None:
        r = _inspect(matches, i + 1, buf, low, start + mo.end(), st)
        if r != _FAIL:
            return r
        if retry is None:
            retry = _relative_next(matches, i)
        if not retry:
            return _FAIL
        st.budget -= 1
        if st.budget < 0:
            return _STOP
        nxt = mo.start() + 1
        if nxt > len(hay):
            break
        mo = rx.search(hay, nxt)
    return _FAIL


def _read_number(buf: bytes, pos: int, nbytes: int, endian: str, string: str | None) -> int | None:
    """The number at buf[pos:pos+nbytes]: binary (big/little/dce) or text digits in a base."""
    if pos < 0 or nbytes < 0 or pos + nbytes > len(buf):
        return None
    raw = buf[pos:pos + nbytes]
    if string is not None:
        try:
            text = raw.decode("ascii").strip()
            return int(text, _BASES[string]) if text else None
        except (ValueError, UnicodeDecodeError):
            return None
    return int.from_bytes(raw, "little" if endian in ("little", "dce") else "big")


def _apply_bitmask(val: int, mask: int | None) -> int:
    if not mask:
        return val
    val &= mask
    shift = (mask & -mask).bit_length() - 1
    return val >> shift if val else val


def _byte_test(m: ByteTest, buf: bytes, prev: int, st: _State) -> bool:
    offset = _val(m.offset, st)
    value = _val(m.value, st)
    if offset is None or value is None:
        return False
    pos = prev + offset if m.relative else offset
    nbytes = m.nbytes
    if m.string is not None and nbytes == 0:
        end = pos
        while end < len(buf) and 48 <= buf[end] <= 57:
            end += 1
        nbytes = end - pos
    val = _read_number(buf, pos, nbytes, m.endian, m.string)
    if val is None:
        return False
    val = _apply_bitmask(val, m.bitmask)
    op = m.operator
    if op == "<":
        ok = val < value
    elif op == ">":
        ok = val > value
    elif op == "=":
        ok = val == value
    elif op == "<=":
        ok = val <= value
    elif op == ">=":
        ok = val >= value
    elif op == "&":
        ok = (val & value) != 0
    elif op == "^":
        ok = (val ^ value) != 0
    else:
        ok = False
    return ok != m.negated


def _byte_jump(m: ByteJump, buf: bytes, prev: int, st: _State) -> int | None:
    offset = _val(m.offset, st)
    if offset is None:
        return None
    pos = prev + offset if m.relative else offset
    val = _read_number(buf, pos, m.nbytes, m.endian, m.string)
    if val is None:
        return None
    val = _apply_bitmask(val, m.bitmask)
    val *= m.multiplier
    if m.align and val % 4:
        val += 4 - val % 4
    val += m.post_offset
    if m.from_beginning:
        target = val
    elif m.from_end:
        target = len(buf) + val
    else:
        target = pos + m.nbytes + val
    if target < 0 or target > len(buf):
        return None
    return target


def _byte_extract(m: ByteExtract, buf: bytes, prev: int, st: _State) -> int | None:
    pos = prev + m.offset if m.relative else m.offset
    val = _read_number(buf, pos, m.nbytes, m.endian, m.string)
    if val is None:
        return None
    val = _apply_bitmask(val, m.bitmask)
    val *= m.multiplier
    if m.align and val % m.align:
        val += m.align - val % m.align
    st.vars[m.name] = val
    return pos + m.nbytes


def apply_transforms(buf: bytes, transforms: tuple[str, ...]) -> bytes:
    """dotprefix, to_lowercase, strip_whitespace, url_decode, in rule order."""
    for t in transforms:
        if t == "url_decode":
            buf = url_decode(buf)
        elif t == "dotprefix":
            buf = b"." + buf
        elif t == "to_lowercase":
            buf = buf.lower()
        elif t == "strip_whitespace":
            buf = bytes(c for c in buf if c not in b" \t\n\r\x0b\x0c")
    return buf


_URL_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})|\+")


def _url_unescape(m) -> bytes:
    h = m.group(1)
    return b" " if h is None else bytes((int(h, 16),))


def url_decode(buf: bytes) -> bytes:
    """Suricata's url_decode transform, one left-to-right pass: %HH becomes the byte, + a space; a bad
    or cut %-escape stays as it is."""
    if b"%" not in buf and b"+" not in buf:
        return buf
    return _URL_ESCAPE.sub(_url_unescape, buf)
