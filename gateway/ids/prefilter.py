"""Multi-pattern prefilter: one Hyperscan database per inspection buffer, built from each rule's fast pattern.

A scan of a buffer returns the indexes of the rules whose fast pattern occurs in it; only those are then
evaluated in full (match.py). Identical (pattern, nocase) pairs share one Hyperscan expression, which maps
back to every rule using it. Patterns are compiled as escaped byte regexes (`\\xHH` per byte): the
binding's literal mode stops at the first NUL byte, and rules use NULs freely.

A pattern may carry where its content has to sit (`anchor`, from an absolute content's offset/depth,
startswith, endswith): Hyperscan then reports it only there (min/max end offset, `\\z`), so a weak fast
pattern such as "z" with `depth:1; endswith` is a candidate only for a buffer that is exactly "z" instead of
every buffer holding a "z". The evaluation checks the same positions, so nothing that can match is lost.

Compiled databases are cached on disk (hyperscan.dumpb/loadb) keyed by a hash of the patterns, so a worker
restart or a reload of an unchanged rule set skips the compile. The cache is an optimisation only: any
failure to read or write it falls back to compiling. Hyperscan compiles with the GIL released, so
compile_all builds a rule set's databases on several threads.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hyperscan

SMALL_DB = 3                # at most this many patterns: plain substring checks instead of Hyperscan
MEMO_ENTRIES = 512          # scan_memo: buffers remembered per database
MEMO_MAX_LEN = 512          # scan_memo: longer buffers (URIs with query strings, cookies) are not kept
COMPILE_THREADS = 8         # compile_all: at most this many threads (and no more than usable_cpus())
_FLAGS_CASE = hyperscan.HS_FLAG_SINGLEMATCH
_FLAGS_NOCASE = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_CASELESS


class ExceptPorts(frozenset):
    """The port keys a pattern's rule is NOT for (an entry's `ports` when the rule names most ports, as
    1024:65535 does): the rule is a candidate for every other port."""


def default_cache_dir() -> Path | None:
    """$GATEWAY_HS_CACHE, else ~/.cache/clinic-gateway/hyperscan; "" or "off" disables the cache."""
    env = os.environ.get("GATEWAY_HS_CACHE")
    if env is not None:
        return None if env in ("", "off") else Path(env)
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(home) / "clinic-gateway" / "hyperscan"


def _escape(pattern: bytes) -> bytes:
    return b"".join(b"\\x%02x" % c for c in pattern)


class BufferPrefilter:
    """The Hyperscan database of one buffer kind.

    `scan(data, dport)` -> list of rule-index tuples whose pattern occurs in data. A rule entered with a
    destination port set is only returned for packets to one of those ports (Suricata's port grouping:
    "|05|" of a DCERPC rule for port 135 hits nearly every packet, but is only a candidate on port 135)."""

    __slots__ = ("db", "targets", "patterns", "_hits", "_on_match", "from_cache", "max_len", "_any_only",
                 "_literals", "_any_nocase", "memo", "port_keys", "_merged", "excepts", "remember", "app_of")

    def __init__(self, entries: list[tuple], cache_dir: Path | None = None, build: bool = True):
        """entries: (pattern, nocase, rule_index[, ports[, anchor]]) with ports None (any), an iterable of port
        keys (a destination port p as p, a source port p as -1 - p) or an ExceptPorts of the keys the rule is
        not for; anchor None or (min_end, max_end | None,
        endswith): the pattern counts only when its match ends between those offsets (and at the buffer end).
        A nocase pattern is stored lowercased. With build False the database is left for compile() (or
        compile_all) to build: until then the prefilter finds nothing."""
        ids: dict[tuple, int] = {}
        targets: list[tuple[list[int], dict]] = []
        excepts: dict[int, list] = {}           # pid -> [(rule, the port keys it is not for)]
        for entry in entries:
            pattern, nocase, rule_index = entry[:3]
            dports = entry[3] if len(entry) > 3 else None
            anchor = entry[4] if len(entry) > 4 else None
            key = (pattern.lower() if nocase else pattern, nocase) + ((anchor,) if anchor else ())
            pid = ids.get(key)
            if pid is None:
                pid = ids[key] = len(targets)
                targets.append(([], {}))
            if dports is None:
                targets[pid][0].append(rule_index)
            elif type(dports) is ExceptPorts:
                excepts.setdefault(pid, []).append((rule_index, dports))
            else:
                for port in dports:
                    targets[pid][1].setdefault(port, []).append(rule_index)
        self.targets = tuple((tuple(a), {p: tuple(v) for p, v in by.items()} or None) for a, by in targets)
        self.excepts = {pid: tuple(v) for pid, v in excepts.items()}
        # fast path when no pattern is port-bucketed: pid -> rule tuple directly
        self._any_only = tuple(a for a, _ in self.targets) if all(by is None for _, by in self.targets) and \
            not excepts else None
        self.port_keys = frozenset(p for _, by in self.targets if by for p in by) | \
            frozenset(p for v in excepts.values() for _, ex in v for p in ex)
        self._merged: dict[tuple, list] = {}     # (dst port key, src port key) -> pid -> rule tuple (rule_tuples)
        self.patterns = tuple(ids)      # (pattern, nocase[, anchor])
        self.max_len = max((len(k[0]) for k in self.patterns), default=0)   # for incremental scans
        self.from_cache = False
        # one to three patterns: bytes.find in C beats a Hyperscan call through the binding; from four on the
        # Python loop costs more (benchmarks/ids.py under callgrind: 8 -> 3 saved ~5% of the IDS' instructions)
        self._literals = None
        self._any_nocase = any(k[1] for k in self.patterns)
        self.db = None
        if build:
            self.compile(cache_dir)
        self.memo: dict[bytes, tuple[int, ...]] = {}     # scan_memo: buffer -> pattern ids found in it
        self.remember = True        # False: a buffer kind that seldom repeats (URIs), scanned without the memo
        # rule index -> the app-layer protocol its header names (`alert ftp ...`), for the rules of a payload
        # database that have one (set_apps): on a flow of another protocol they are no candidates
        self.app_of: dict[int, str] = {}
        hits: list[int] = []
        self._hits = hits
        append = hits.append

        def on_match(pid, _from, _to, _flags, _ctx):
            append(pid)
        self._on_match = on_match

    def compile(self, cache_dir: Path | None = None) -> None:
        """Build what scan() searches with: substring checks for a few patterns, else the Hyperscan database
        (from the on-disk cache when it holds one)."""
        if len(self.patterns) <= SMALL_DB:
            self._literals = tuple((k[0], k[1], pid) + _window(k) for pid, k in enumerate(self.patterns))
        elif self.patterns:
            self.db = self._build(cache_dir)

    def _digest(self) -> str:
        h = hashlib.sha256(hyperscan.__version__.encode())
        for key in self.patterns:
            pattern, nocase = key[0], key[1]
            h.update(b"\x01" if nocase else b"\x00")
            h.update(len(pattern).to_bytes(4, "big"))
            h.update(pattern)
            if len(key) > 2:
                h.update(repr(key[2]).encode())
        return h.hexdigest()

    def _build(self, cache_dir: Path | None):
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"{self._digest()}.hsdb"
            blob = None
            with contextlib.suppress(OSError):      # no entry yet (or unreadable): compile
                blob = path.read_bytes()
            if blob is not None:
                with contextlib.suppress(hyperscan.error):  # stale or corrupt entry: compile and rewrite it
                    db = hyperscan.loadb(blob, hyperscan.HS_MODE_BLOCK)
                    db.scratch = hyperscan.Scratch(db)
                    self.from_cache = True
                    return db
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        exprs = [_escape(k[0]) + (b"\\z" if len(k) > 2 and k[2][2] else b"") for k in self.patterns]
        flags = [_FLAGS_NOCASE if k[1] else _FLAGS_CASE for k in self.patterns]
        ext = [_ext(k[2]) if len(k) > 2 else _NO_EXT for k in self.patterns]
        db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags, ext=ext)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # per thread too: two databases of the same patterns may be compiled at once (compile_all)
                tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(hyperscan.dumpb(db))
                os.replace(tmp, path)
            except OSError:
                pass
        return db

    def scan(self, data: bytes, dport: int = -1, sport: int = -1, app: str | None = None) -> list[tuple[int, ...]]:
        """The rule-index tuples of every pattern present in data (each pattern at most once); with `app` (the
        flow's protocol, once known) without the rules that name another protocol (app_of)."""
        if not data:
            return []
        hits = self._find(data)
        if not hits:
            return []
        if app is not None and self.app_of:
            return self._rule_tuples_for_app(hits, dport, sport, app)
        return self.rule_tuples(hits, dport, sport)

    def set_apps(self, app_of) -> None:
        """Record which of this database's rules name an app-layer protocol (`app_of(rule index)` -> name or
        None)."""
        rules = {r for anyport, by_port in self.targets for r in anyport + tuple(
            i for v in (by_port or {}).values() for i in v)}
        rules.update(r for v in self.excepts.values() for r, _ in v)
        self.app_of = {r: a for r in rules if (a := app_of(r)) is not None}
        self._merged.clear()

    def _rule_tuples_for_app(self, pids, dport: int, sport: int, app: str) -> list[tuple[int, ...]]:
        """rule_tuples without the rules naming another app-layer protocol than `app`, remembered per port keys
        and protocol."""
        keys = self.port_keys
        dk = dport if dport in keys else None
        sk = -1 - sport if -1 - sport in keys else None
        merged = self._merged.get((dk, sk, app))
        if merged is None:
            if len(self._merged) >= MEMO_ENTRIES:
                self._merged.clear()
            merged = self._merged[(dk, sk, app)] = [None] * len(self.targets)
        out = []
        app_of = self.app_of
        for pid in pids:
            t = merged[pid]
            if t is None:
                base = self.rule_tuples((pid,), dport, sport)
                t = merged[pid] = tuple(r for r in base[0] if app_of.get(r, app) == app) if base else ()
            if t:
                out.append(t)
        return out

    def scan_memo(self, data: bytes, dport: int = -1, sport: int = -1) -> list[tuple[int, ...]]:
        """scan() for buffers that repeat from transaction to transaction (method, host, user agent, header
        names, status line, SNI, ...): the patterns found in a buffer are remembered by its bytes, so a
        repeated buffer costs a dict lookup instead of a scan. Bounded: at most MEMO_ENTRIES buffers of at
        most MEMO_MAX_LEN bytes, forgotten all at once when full."""
        pids = self.memo.get(data) if type(data) is bytes else None
        if pids is None:
            pids = self.find_memo(data)
        return self.rule_tuples(pids, dport, sport) if pids else []

    def find_memo(self, data) -> tuple[int, ...]:
        """The ids of the patterns in data, scanned and remembered (scan_memo) when data is bytes of at most
        MEMO_MAX_LEN; a bytearray is scanned each time (not hashable)."""
        if not data:
            return ()
        pids = tuple(self._find(data))
        if self.remember and len(data) <= MEMO_MAX_LEN and type(data) is bytes:
            memo = self.memo
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[data] = pids
        return pids

    def _find(self, data: bytes) -> list[int]:
        """The ids of the patterns present in data (a list reused by the next call)."""
        hits = self._hits
        hits.clear()
        db = self.db
        if db is None:
            lits = self._literals
            if not lits:
                return hits
            low = data.lower() if self._any_nocase else data
            for pat, nc, pid, lo, hi, endswith in lits:
                hay = low if nc else data
                if endswith:
                    if len(hay) <= hi and hay.endswith(pat, lo):
                        hits.append(pid)
                elif hay.find(pat, lo, hi) >= 0:
                    hits.append(pid)
        else:
            # the callback positionally: the binding's keyword parsing costs as much as a short scan
            db.scan(data, self._on_match)
        return hits

    def rule_tuples(self, pids, dport: int, sport: int) -> list[tuple[int, ...]]:
        """The rule-index tuples of these pattern ids (from _find / find_memo) for a packet between these ports."""
        if self._any_only is not None:
            any_only = self._any_only
            return [any_only[pid] for pid in pids]
        # the rules of each pattern for this pair of port keys, merged once and remembered (a flow's packets
        # and most flows to a service share the pair: ports no rule names count as none)
        keys = self.port_keys
        dk = dport if dport in keys else None
        sk = -1 - sport if -1 - sport in keys else None
        merged = self._merged.get((dk, sk))
        if merged is None:
            if len(self._merged) >= MEMO_ENTRIES:
                self._merged.clear()
            merged = self._merged[(dk, sk)] = [None] * len(self.targets)
        out = []
        for pid in pids:
            t = merged[pid]
            if t is None:
                anyport, by_port = self.targets[pid]
                t = anyport
                if by_port is not None:
                    t = t + by_port.get(dk, ()) + by_port.get(sk, ())
                ex = self.excepts.get(pid)
                if ex:
                    t = t + tuple(rule for rule, keys in ex if dk not in keys and sk not in keys)
                merged[pid] = t
            if t:
                out.append(t)
        return out

    def __len__(self) -> int:
        return len(self.patterns)


def compile_all(prefilters: list[BufferPrefilter], cache_dir: Path | None = None) -> None:
    """compile() each prefilter, on up to COMPILE_THREADS threads (Hyperscan releases the GIL while it
    compiles: ET Open's 90 databases take half the time on two cores), the largest first so that no thread
    is left with a big one at the end. An error (a pattern Hyperscan refuses) is raised as it would be
    without threads."""
    order = sorted(prefilters, key=lambda pf: -len(pf.patterns))
    workers = min(COMPILE_THREADS, usable_cpus(), len(order))
    if workers <= 1:
        for pf in order:
            pf.compile(cache_dir)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hs-compile") as pool:
            for _ in pool.map(lambda pf: pf.compile(cache_dir), order):
                pass
    _release_compile_memory()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a gateway pinned to some cores), not the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):       # no affinity call on this platform
        return os.cpu_count() or 1


def _release_compile_memory() -> None:
    """Hand the compiler's freed memory back to the system: glibc keeps it in its malloc arenas (one per
    compile thread), and every forked worker would carry it in its resident size (ET Open: 237 MB per worker
    without this, 166-169 MB with it)."""
    with contextlib.suppress(OSError, AttributeError):     # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


_NO_EXT = (0, 0, 0, 0, 0, 0)
_BIG = 1 << 62


def _ext(anchor) -> tuple:
    """Hyperscan's expression extension (flags, min_offset, max_offset, ...) for an anchor's end offsets."""
    lo, hi, _ = anchor
    flags = (hyperscan.HS_EXT_FLAG_MIN_OFFSET if lo else 0) | (hyperscan.HS_EXT_FLAG_MAX_OFFSET if hi is not None
                                                                 else 0)
    return (flags, lo, hi or 0, 0, 0, 0)


def _window(key) -> tuple:
    """(start, end, endswith) for bytes.find/endswith: the slice a pattern with this key must lie in."""
    if len(key) < 3:
        return (0, _BIG, False)
    lo, hi, endswith = key[2]
    return (max(0, lo - len(key[0])), _BIG if hi is None else hi, endswith)
