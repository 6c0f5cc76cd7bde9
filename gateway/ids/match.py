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

`match_list(ml, buf)` returns True/False. It runs a function generated for the list on its first evaluation
(compile_list, below: the interpreter unrolled for that keyword sequence, a single content becomes one
`buf.find(pattern) >= 0`); `match_generic` is the interpreter itself, the reference semantics and the
fallback (lists with byte_extract, whose variables live in a small dict for one evaluation, and lists ending
in base64_decode, whose base64_data list it runs on the decoded bytes).
"""
from __future__ import annotations

import re

from .base64dec import decode_rfc4648
from .model import (
    Base64Decode,
    BufferSize,
    ByteExtract,
    ByteJump,
    ByteTest,
    ContentMatch,
    IsDataAt,
    PcreMatch,
)

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
    """Does the MatchList `ml` match the buffer `buf`? `lowered` may pass buf.lower() if already made.

    Runs the function compiled for ml.matches on its first evaluation (match_compile.py); its answer is
    match_generic's, which stays the reference and the fallback."""
    fn = ml.compiled
    if fn is None:
        fn = ml.compiled = compile_list(ml.matches)
    return fn(buf, lowered)


def match_generic(ml, buf: bytes, lowered: bytes | None = None) -> bool:
    """match_list by the generic interpreter (the reference semantics; the fallback of compile_list)."""
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
        elif t is Base64Decode:
            return _base64(matches, i, m, buf, prev, st)       # the last keyword of its list (rules.py)
        else:  # an unknown match type never matches (never silently ignored)
            return _STOP
        i += 1
    return _OK


def _relative_next(matches: list, i: int) -> bool:
    """Is the keyword after i anchored on i's match (so moving i can change its outcome)?"""
    for m in matches[i + 1:]:
        if getattr(m, "relative", False):
            # base64_decode reads the cursor but, as in Suricata, does not make the content before it retry
            return type(m) is not Base64Decode
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


def _base64(matches, i, m: Base64Decode, buf: bytes, prev: int, st: _State) -> int:
    """base64_decode and its base64_data list, as Suricata 7 runs them (DetectBase64DecodeDoMatch, then the
    base64_data list on the decoded bytes): the list's answer."""
    start = prev if m.relative else 0
    if m.offset:
        if m.offset >= len(buf) - start:
            return _b64_fail(matches, i)
        start += m.offset
    decoded = decode_rfc4648(buf[start:start + m.nbytes])
    if not decoded:
        return _b64_fail(matches, i)
    # Suricata inspects the decoded bytes without resetting the cursor: a relative keyword that comes first in
    # base64_data is anchored at the cursor of the encoded buffer. Budget and byte_extract variables are shared.
    r = _inspect(m.data.matches, 0, decoded, None, prev, st)
    if r == _FAIL:
        return _b64_fail(matches, i)
    return r        # _STOP (an absolute keyword missed in the decoded data, budget) stops everything, as there


def _b64_fail(matches, i) -> int:
    """No match from base64_decode: may an earlier content retry at its next occurrence? In Suricata only one
    whose next keyword is relative to it (DETECT_CONTENT_RELATIVE_NEXT, which base64_decode does not set): the
    content or pcre right before base64_decode, with nothing relative between them, gives up for good."""
    for m in reversed(matches[:i]):
        t = type(m)
        if (t is ContentMatch or t is PcreMatch) and not m.negated:
            return _STOP
        if getattr(m, "relative", False):
            return _FAIL    # byte_jump, isdataat, a negated content ... relative to an earlier content
    return _STOP


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
    return int.from_bytes(raw, "little" if endian in _LITTLE else "big")


_LITTLE = ("little", "dce")


def _apply_bitmask(val: int, mask: int | None) -> int:
    if not mask:
        return val
    val &= mask
    shift = (mask & -mask).bit_length() - 1
    return val >> shift if val else val


def _byte_test(m: ByteTest, buf: bytes, prev: int, st: _State) -> bool:
    # literal offset, value and count, binary: the common case, read without the helpers' calls
    offset, value, nbytes = m.offset, m.value, m.nbytes
    if type(offset) is not int:
        offset = _val(offset, st)
    if type(value) is not int:
        value = _val(value, st)
    if offset is None or value is None:
        return False
    pos = prev + offset if m.relative else offset
    if type(nbytes) is not int:
        nbytes = _nbytes(m, st)
        if nbytes is None:
            return False
    if m.string is None:
        if pos < 0 or nbytes < 0 or pos + nbytes > len(buf):
            return False
        val = int.from_bytes(buf[pos:pos + nbytes], "little" if m.endian in _LITTLE else "big")
    else:
        if nbytes == 0:
            end = pos
            while end < len(buf) and 48 <= buf[end] <= 57:
                end += 1
            nbytes = end - pos
        val = _read_number(buf, pos, nbytes, m.endian, m.string)
        if val is None:
            return False
    if m.bitmask:
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


def _nbytes(m, st: _State) -> int | None:
    """byte_test / byte_jump's byte count; one taken from a byte_extract variable must fit what the keyword
    reads (up to 8 bytes, or a string's 20 decimal / 14 hex / 23 octal digits). A variable that is 0 reads
    nothing: the value is 0 (suricata-verify detect-bytejump-02 jumps by it and alerts)."""
    n = m.nbytes
    if type(n) is int:
        return n
    n = st.vars.get(n)
    if n is None:
        return None
    limit = {"dec": 20, "hex": 14, "oct": 23}.get(m.string, 8) if m.string else 8
    return n if 0 <= n <= limit else None


def _byte_jump(m: ByteJump, buf: bytes, prev: int, st: _State) -> int | None:
    offset = _val(m.offset, st)
    if offset is None:
        return None
    pos = prev + offset if m.relative else offset
    nbytes = _nbytes(m, st)
    if nbytes is None:
        return None
    val = _read_number(buf, pos, nbytes, m.endian, m.string)
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
        target = pos + nbytes + val
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


# ---------------------------------------------------------------------------------------------------------
# Compiled evaluation. Each MatchList becomes, on its first evaluation, one Python function specialised for
# its keywords: windows, lowered nocase patterns, the retry rule (_relative_next) and which keywords read the
# cursor are worked out once here instead of per call. The generated code is the interpreter unrolled, so it
# gives the same answers:
# - the list is a chain (keyword i runs only after 0..i-1 held), written as nested blocks: a FAIL of a
#   relative keyword falls out of its block to the next occurrence of the innermost content/pcre that retries
#   (or to `return False`), a STOP (absolute content missing, isdataat absolute, bsize) is `return False`;
# - a content or pcre that the interpreter would retry becomes a `while` loop over its occurrences, and then
#   the recursion budget is counted exactly as the interpreter counts it (one per keyword visited, one per
#   retry). Budget exhaustion only ever turns the answer to False, so it is checked at every retry (to bound
#   the work) and before `return True`, which gives the interpreter's answer;
# - byte_extract (variables) and anything the generator does not know run on the interpreter.

_MAX_NESTING = 60       # nested blocks per generated function (Python allows 100 indents, 20 loops)
_MAX_LOOPS = 18


# (bytes, its lower()) of the last buffer lowered: the candidate rules of one buffer share the lowering.
# One tuple in a box, swapped whole, so a reader never pairs a buffer with another one's lowering.
_LAST_LOWER: list = [(None, None)]


def _lower_cached(buf):
    low = buf.lower()
    if type(buf) is bytes:          # immutable, so identity means same content
        _LAST_LOWER[0] = (buf, low)
    return low


def compile_list(matches: list):
    """A function (buf, lowered) -> bool giving match_generic's answer for `matches`."""
    if not matches:
        return _always
    try:
        fn = _Generator(matches).build()
    # _Unsupported, or one of Python's limits on generated code: the interpreter decides
    except Exception:  # noqa: BLE001
        fn = None
    if fn is None:
        return _generic_for(matches)
    return fn


def _always(buf, lowered=None) -> bool:
    return True


def _generic_for(matches: list):
    def generic(buf, lowered=None, _matches=matches):
        return _inspect(_matches, 0, buf, lowered, 0, _State()) == _OK
    return generic


class _Unsupported(Exception):
    """The generator leaves this list to the interpreter."""


_FACTORIES: dict[str, object] = {}      # generated source -> its factory (list shapes repeat a lot)
_NOVARS = _State()                      # for byte_test/byte_jump helpers of lists without byte_extract


def _static_int(v) -> int:
    if type(v) is not int:
        raise _Unsupported("variable or unexpected value")
    return v


def _moves_cursor(m) -> bool:
    t = type(m)
    if t is ContentMatch or t is PcreMatch:
        return not m.negated
    return t is ByteJump or t is ByteExtract


class _Generator:
    def __init__(self, matches: list):
        self.matches = matches
        self.lines: list[str] = []
        self.consts: list = []
        self.low_ready = False
        self.loops = 0
        if len(matches) > _MAX_NESTING:
            raise _Unsupported("long list")
        for m in matches:
            if type(m) is ByteExtract or type(m) not in _KINDS:
                raise _Unsupported(type(m).__name__)
        # a loop (retry) exists: the budget must be counted
        self.tracked = any(type(m) in (ContentMatch, PcreMatch) and not m.negated and not
                           (type(m) is ContentMatch and m.endswith) and _relative_next(matches, i)
                           for i, m in enumerate(matches))

    def k(self, value) -> str:
        self.consts.append(value)
        return f"K{len(self.consts) - 1}"

    def emit(self, ind: int, text: str) -> None:
        if ind > _MAX_NESTING:
            raise _Unsupported("too deep")
        self.lines.append("    " * (ind + 1) + text)

    def prev_used(self, i: int) -> bool:
        """Does a keyword after i read the cursor i leaves (before another keyword moves it)?"""
        for m in self.matches[i + 1:]:
            if getattr(m, "relative", False):
                return True
            if _moves_cursor(m):
                return False
        return False

    def build(self):
        body_start = len(self.lines)
        self.chain(0, 1, "0")
        self.emit(1, "return False")
        head = []
        if any("blen" in line for line in self.lines[body_start:]):
            head.append("        blen = len(buf)")
        if self.tracked:
            head.append(f"        bud = {RECURSION_LIMIT}")
        names = ", ".join(f"K{j}" for j in range(len(self.consts)))
        src = "\n".join([f"def factory({names}):", "    def compiled(buf, low=None):"] + head +
                        self.lines[body_start:] + ["    return compiled", ""])
        factory = _FACTORIES.get(src)
        if factory is None:
            made: dict = {}
            # our own source, built above; rule values only ever reach it as the factory's arguments
            exec(compile(src, "<match_list>", "exec"), _GENERATED_GLOBALS, made)  # noqa: S102
            factory = made["factory"]
            if len(_FACTORIES) < 4096:
                _FACTORIES[src] = factory
        return factory(*self.consts)

    def gate(self, i: int, ind: int, cond: str, stop: bool, prev: str) -> None:
        """Keyword i holds when `cond` (a bool expression); its failure is a STOP (return False) or a FAIL
        (fall out to the innermost retry). Then the rest of the chain."""
        if i == len(self.matches) - 1 and not self.tracked:
            # the last keyword of a list without loops: a FAIL, like a STOP, ends the evaluation
            self.emit(ind, f"return {cond}")
        elif stop:
            self.emit(ind, f"if not ({cond}): return False")
            self.chain(i + 1, ind, prev)
        else:
            self.emit(ind, f"if {cond}:")
            self.chain(i + 1, ind + 1, prev)

    # one keyword, then the rest of the chain (nested when this keyword's failure is a FAIL)
    def chain(self, i: int, ind: int, prev: str) -> None:
        if i == len(self.matches):
            if self.tracked:
                self.emit(ind, "if bud < 0: return False")
            self.emit(ind, "return True")
            return
        if self.tracked:
            self.emit(ind, "bud -= 1")
        m = self.matches[i]
        t = type(m)
        if t is ContentMatch:
            self.content(i, m, ind, prev)
        elif t is PcreMatch:
            self.pcre(i, m, ind, prev)
        elif t is IsDataAt:
            size = _static_int(m.size)
            if m.relative:
                self.gate(i, ind, f"{prev} + {self.k(size)} {'>' if m.negated else '<='} blen", False, prev)
            else:
                self.gate(i, ind, f"{self.k(size)} {'>=' if m.negated else '<'} blen", True, prev)
        elif t is BufferSize:
            c = m.compare
            lo, hi = self.k(c.value), self.k(c.high)
            cond = {"=": f"blen == {lo}", "<": f"blen < {lo}", ">": f"blen > {lo}",
                    "<>": f"{lo} < blen < {hi}", "<=": f"blen <= {lo}",
                    ">=": f"blen >= {lo}"}.get(c.op, f"blen != {lo}")
            self.gate(i, ind, cond, True, prev)
        elif t is ByteTest:
            self.gate(i, ind, f"_bt({self.k(m)}, buf, {prev}, _NOVARS)", False, prev)
        elif t is ByteJump:
            self.emit(ind, f"c{i} = _bj({self.k(m)}, buf, {prev}, _NOVARS)")
            self.emit(ind, f"if c{i} is not None:")
            self.chain(i + 1, ind + 1, f"c{i}")
        else:
            raise _Unsupported(t.__name__)

    def content(self, i: int, m: ContentMatch, ind: int, prev: str) -> None:
        pat = m.pattern.lower() if m.nocase else m.pattern
        # nocase only matters for a pattern with letters (lower() changes nothing else, in either string)
        nocase = m.nocase and pat != m.pattern.upper()
        plen = len(pat)
        K = self.k(pat)
        # the window [s, e) as the interpreter works it out; s_nonneg/e_nonneg: known >= 0 here
        retry = not m.negated and not m.endswith and _relative_next(self.matches, i)
        simple = not m.negated and not m.endswith and not retry and not self.prev_used(i)
        simple_start = simple and m.startswith and not m.relative and plen > 0
        if m.relative:
            dist = _static_int(m.distance) if m.distance is not None else 0
            if prev == "0":
                s = str(max(dist, 0))
            elif dist == 0:
                s = prev
            else:
                self.emit(ind, f"s{i} = {prev} + {self.k(dist)}")
                if dist < 0:
                    self.emit(ind, f"if s{i} < 0: s{i} = 0")
                s = f"s{i}"
            if m.within is None:
                e, e_nonneg = "blen", True
            else:
                span = dist + _static_int(m.within)
                self.emit(ind, f"e{i} = {prev} + {self.k(span)}" if prev != "0" else f"e{i} = {self.k(span)}")
                self.emit(ind, f"if e{i} > blen: e{i} = blen")
                e, e_nonneg = f"e{i}", span >= 0
        elif m.startswith:
            s, e, e_nonneg = "0", f"e{i}", True
            if simple_start:    # the window is not needed: buf.startswith(pattern) says it all
                e = "blen"
            else:
                self.emit(ind, f"e{i} = {self.k(plen)} if {self.k(plen)} < blen else blen")
        else:
            off = _static_int(m.offset) if m.offset is not None else 0
            if off < 0:
                raise _Unsupported("negative offset")
            s = self.k(off) if off else "0"
            if m.depth is None:
                e, e_nonneg = "blen", True
            else:
                lim = off + _static_int(m.depth)
                self.emit(ind, f"e{i} = {self.k(lim)} if {self.k(lim)} < blen else blen")
                e, e_nonneg = f"e{i}", lim >= 0 and off >= 0
        # find() answers -1 on a window shorter than the pattern by itself, unless a bound is negative
        guard = "" if (plen > 0 and e_nonneg) else f"{e} - {s} >= {self.k(plen)} and "
        whole = s == "0" and e == "blen"
        fail_is_stop = not m.relative

        if m.negated:
            hay = self.lowered(ind, nocase)
            if m.endswith:
                found = f"{guard}{hay}.endswith({K}, {s}, {e}) and {e} == blen"
            else:
                found = f"{guard}{_find(hay, K, s, e)} >= 0"
            self.gate(i, ind, f"not ({found})", fail_is_stop, prev)
            return

        if m.endswith:
            if whole and not guard:
                # buf.lower().endswith(K) without lowering the whole buffer (lower() is per byte)
                cond = f"buf[-{self.k(plen)}:].lower() == {K}" if nocase else f"buf.endswith({K})"
            else:
                cond = f"{guard}{e} == blen and {self.lowered(ind, nocase)}.endswith({K}, {s}, {e})"
            self.gate(i, ind, cond, fail_is_stop, "blen")
            return

        if simple:
            if simple_start:
                cond = f"buf[:{self.k(plen)}].lower() == {K}" if nocase else f"buf.startswith({K})"
            else:
                cond = f"{guard}{_find(self.lowered(ind, nocase), K, s, e)} >= 0"
            self.gate(i, ind, cond, fail_is_stop, prev)
            return
        q, p = f"q{i}", f"p{i}"
        hay = self.lowered(ind, nocase)
        find = _find(hay, K, s, e)
        self.emit(ind, f"{q} = {find} if {guard[:-5]} else -1" if guard else f"{q} = {find}")
        if fail_is_stop:
            self.emit(ind, f"if {q} < 0: return False")
        if not retry:
            if not fail_is_stop:
                self.emit(ind, f"if {q} >= 0:")
                ind += 1
            self.emit(ind, f"{p} = {q} + {self.k(plen)}")
            self.chain(i + 1, ind, p)
            return
        self.retry_loop(i, ind, f"{q} >= 0", f"{q} + {self.k(plen)}", [f"{q} = {_find(hay, K, q + ' + 1', e)}"])

    def lowered(self, ind: int, nocase: bool) -> str:
        """The haystack name for m: "low" (made here unless an earlier keyword, which always ran before
        this one, made it) for a nocase content, else "buf"."""
        if not nocase:
            return "buf"
        if not self.low_ready:
            self.emit(ind, "if low is None:")
            self.emit(ind + 1, "c = _LAST[0]")
            self.emit(ind + 1, "low = c[1] if c[0] is buf else _lower_cached(buf)")
            self.low_ready = True
        return "low"

    def retry_loop(self, i: int, ind: int, found: str, cursor: str, advance: list[str]) -> None:
        """A content or pcre the later keywords may make retry (DETECT_CONTENT_RELATIVE_NEXT): while `found`,
        run the rest of the chain from `cursor`, then `advance` to the next occurrence, one budget unit each."""
        self.loop_start()
        self.emit(ind, f"while {found}:")
        self.emit(ind + 1, f"p{i} = {cursor}")
        self.chain(i + 1, ind + 1, f"p{i}")
        self.emit(ind + 1, "bud -= 1")
        self.emit(ind + 1, "if bud < 0: return False")
        for line in advance:
            self.emit(ind + 1, line)

    def loop_start(self) -> None:
        self.loops += 1
        if self.loops > _MAX_LOOPS:
            raise _Unsupported("too many loops")

    def pcre(self, i: int, m: PcreMatch, ind: int, prev: str) -> None:
        search = self.k(m.regex.search)
        s = prev if m.relative else "0"
        if m.negated:
            arg = "buf" if s == "0" else f"buf, {s}"
            self.gate(i, ind, f"{search}({arg}) is None", False, prev)
            return
        # a relative pcre sees the buffer from the cursor on ("^" anchors there)
        if s == "0":
            h = "buf"
        else:
            h = f"h{i}"
            self.emit(ind, f"{h} = buf[{s}:] if {s} else buf")
        retry = _relative_next(self.matches, i)
        if not retry and not self.prev_used(i):
            self.gate(i, ind, f"{search}({h}) is not None", False, prev)
            return
        mo, p = f"mo{i}", f"p{i}"
        end = f"{mo}.end()" if s == "0" else f"{s} + {mo}.end()"
        self.emit(ind, f"{mo} = {search}({h})")
        if not retry:
            self.emit(ind, f"if {mo} is not None:")
            self.emit(ind + 1, f"{p} = {end}")
            self.chain(i + 1, ind + 1, p)
            return
        self.retry_loop(i, ind, f"{mo} is not None", end, [f"n{i} = {mo}.start() + 1", f"if n{i} > len({h}): break",
                                                            f"{mo} = {search}({h}, n{i})"])


def _find(hay: str, pat: str, s: str, e: str) -> str:
    """hay.find(pat, s, e) without the arguments that are find's defaults (e is blen = len(hay)). Also what
    `pat in hay` is written as: bytes.__contains__ first tries pat as an int, which costs ~100 ns more."""
    if e == "blen":
        return f"{hay}.find({pat})" if s == "0" else f"{hay}.find({pat}, {s})"
    return f"{hay}.find({pat}, {s}, {e})"


# what generated code may use (one dict shared by all of them)
_GENERATED_GLOBALS = {"_lower_cached": _lower_cached, "_LAST": _LAST_LOWER, "_bt": _byte_test,
                      "_bj": _byte_jump, "_NOVARS": _NOVARS, "__builtins__": {"len": len}}

_KINDS = (ContentMatch, PcreMatch, ByteTest, ByteJump, IsDataAt, BufferSize, ByteExtract)
