"""One prefilter answer for the HTTP buffers that come from a message's header list alone.

A transaction's user agent, accept headers, referer, connection, content type and length, server, location,
http.header and http.header_names are functions of its header list, and clients send the same header list again
and again (one browser, one site, one server software). The candidate rules of all those buffers are remembered
together, keyed by the header list, so a repeated list costs one lookup instead of a getter call and a scan-memo
lookup per buffer (inspect ran ~18 of them per request). The cookie's value is left out of the key: it changes
from client to client and none of these buffers holds it (http.header leaves the Cookie line out; the name stays
in the key for http.header_names).
"""
from __future__ import annotations

from operator import itemgetter

# the buffers served from the header list alone (applayer/http.py: their getters read request_headers or
# response_headers and nothing else)
GROUPED = frozenset({"http.user_agent", "http.accept", "http.accept_enc", "http.accept_lang", "http.referer",
                     "http.connection", "http.content_type", "http.content_len", "http.header", "http.header_names",
                     "http.server", "http.location"})
_NAME, _VALUE = itemgetter(0), itemgetter(1)
MEMO_ENTRIES = 512          # header lists remembered per direction, forgotten all at once when full


class HeaderGroup:
    """The grouped buffers of one group and direction: `entries` (kind, name, prefilter, getter) and the memo."""

    __slots__ = ("entries", "kinds", "memo", "port_keys", "skip", "to_server")

    def __init__(self, entries: list[tuple], to_server: bool):
        self.entries = tuple(entries)
        self.kinds = frozenset(e[0] for e in entries)      # the version kinds (engine._version_kind) they fall in
        # a rule entered for some ports is a candidate only for those (BufferPrefilter.rule_tuples): the answer is
        # remembered per pair of the port keys any of the databases names
        self.port_keys = frozenset().union(*(e[2].port_keys for e in entries))
        self.to_server = to_server
        self.skip = b"cookie" if to_server else b"set-cookie"
        self.memo: dict[tuple, dict[int, tuple[int, ...]]] = {}

    def hits(self, tx, dport: int, sport: int, bufcache: dict) -> dict[int, tuple[int, ...]]:
        """Version kind -> the rule indexes whose fast pattern occurs in the grouped buffers of that kind. On a
        header list not seen before the buffers are built, scanned, and left in `bufcache` for the candidate rules
        (inspect's per-packet cache, keyed (id(tx), name, to_server))."""
        to_server = self.to_server
        headers = tx.request_headers if to_server else tx.response_headers
        keys = self.port_keys
        skip = self.skip
        # the names as sent and the values in order (the parser keeps each header as a [name, value] list), the
        # cookie's value left out
        values = headers.values()
        vals = tuple(map(_VALUE, values))
        if skip in headers:
            i = tuple(headers).index(skip)
            vals = vals[:i] + vals[i + 1:]
        key = (dport if dport in keys else None, -1 - sport if -1 - sport in keys else None,
               tuple(map(_NAME, values)), vals)
        try:
            found = self.memo.get(key)
        except TypeError:       # a value that is not bytes: not remembered
            key = found = None
        if found is None:
            per_kind: dict[int, set] = {k: set() for k in self.kinds}
            txid = id(tx)
            for kind, name, pf, get in self.entries:
                buf = get(tx)
                if buf:
                    bufcache[(txid, name, to_server)] = [buf]
                    for tup in pf.scan_memo(buf, dport, sport):
                        per_kind[kind].update(tup)
            found = {k: tuple(v) for k, v in per_kind.items()}
            if key is not None:
                if len(self.memo) >= MEMO_ENTRIES:
                    self.memo.clear()
                self.memo[key] = found
        return found
