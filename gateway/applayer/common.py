"""Pieces shared by the app-layer parsers: the event record and the anomaly helper.

Every parser is sans-I/O: it takes bytes that TCP reassembly (or a UDP datagram) made contiguous and
returns a list of events. It never raises on bad input; problems become "anomaly" events.
"""
from __future__ import annotations


class AppEvent:
    """One thing a parser noticed.

    kind      what happened; each parser documents its kinds (e.g. "request_headers", "anomaly")
    tx        the transaction/message object the event belongs to (or None)
    to_server direction of the bytes that produced it
    data      payload bytes for data events (body chunks, extracted files), else b""
    info      short machine-readable detail (anomaly code, file name, ...)
    """

    __slots__ = ("data", "info", "kind", "to_server", "tx")

    def __init__(self, kind: str, tx=None, to_server: bool = True, data: bytes = b"", info: str = ""):
        self.kind = kind
        self.tx = tx
        self.to_server = to_server
        self.data = data
        self.info = info

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        extra = f" data={len(self.data)}B" if self.data else ""
        return f"AppEvent({self.kind!r}, to_server={self.to_server}, info={self.info!r}{extra})"


MAX_TX_ANOMALIES = 64       # anomaly names a transaction keeps for app-layer-event rules (the rest only counted)


def anomaly_event(tx, code: str, to_server: bool) -> AppEvent:
    """Record Suricata's event name `code` on the transaction (its `anomalies` list, bounded) and return the
    "anomaly" event that reports it."""
    if len(tx.anomalies) < MAX_TX_ANOMALIES:
        tx.anomalies.append(code)
    return AppEvent("anomaly", tx, to_server, b"", code)
