"""EVE JSON events with Suricata's field names, so Elastic, Splunk and EveBox read them unchanged."""
from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import IO

from .flow import Flow
from .packet import PROTO_NAMES, Packet


def eve_timestamp(ts: float) -> str:
    """Suricata's format: 2024-04-01T12:00:00.123456+0000."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def packet_event(event_type: str, pkt: Packet, flow: Flow | None) -> dict:
    """The 5-tuple header every packet-triggered event carries, in the packet's own direction."""
    ev = {
        "timestamp": eve_timestamp(pkt.ts),
        "flow_id": flow.flow_id if flow is not None else 0,
        "event_type": event_type,
        "src_ip": pkt.src_ip,
        "src_port": pkt.sport,
        "dest_ip": pkt.dst_ip,
        "dest_port": pkt.dport,
        "proto": PROTO_NAMES.get(pkt.proto, str(pkt.proto)),
    }
    if pkt.pcap_cnt is not None:
        ev["pcap_cnt"] = pkt.pcap_cnt
    if pkt.proto in (1, 58):
        ev["icmp_type"], ev["icmp_code"] = pkt.icmp_type, pkt.icmp_code
        del ev["src_port"], ev["dest_port"]
    if flow is not None and flow.app_proto:
        ev["app_proto"] = flow.app_proto
    return ev


def flow_event(flow: Flow) -> dict:
    """The `flow` event at the end of a flow, oriented client -> server like Suricata's."""
    ev = {
        "timestamp": eve_timestamp(flow.last_ts),
        "flow_id": flow.flow_id,
        "event_type": "flow",
        "src_ip": flow.client_ip,
        "src_port": flow.cport,
        "dest_ip": flow.server_ip,
        "dest_port": flow.sport,
        "proto": PROTO_NAMES.get(flow.proto, str(flow.proto)),
    }
    if flow.proto in (1, 58):
        del ev["src_port"], ev["dest_port"]
    if flow.app_proto:
        ev["app_proto"] = flow.app_proto
    if flow.verdict is None or flow.bypassed:
        action = "pass"
    else:
        action = "drop"
    ev["flow"] = {
        "pkts_toserver": flow.pkts_toserver,
        "pkts_toclient": flow.pkts_toclient,
        "bytes_toserver": flow.bytes_toserver,
        "bytes_toclient": flow.bytes_toclient,
        "start": eve_timestamp(flow.start_ts),
        "end": eve_timestamp(flow.last_ts),
        "age": int(flow.last_ts - flow.start_ts),
        "state": flow.tcp_state_name if flow.proto == 6 else ("closed" if flow.end_reason != "timeout"
                                                               else "new"),
        "reason": flow.end_reason,
        "alerted": flow.alerted,
        "action": action,
        "bypassed": flow.bypassed,
    }
    if flow.fw_rule is not None:
        ev["flow"]["firewall"] = {"rule": flow.fw_rule, "src_zone": flow.src_zone, "dest_zone": flow.dst_zone}
    return ev


class EveWriter:
    """Writes one JSON object per line. Buffered; `flush()` on shutdown or timer."""

    def __init__(self, out: IO[str] | str | None = None):
        if out is None or out == "-":
            self.fp, self._own = sys.stdout, False
        elif isinstance(out, str):
            self.fp, self._own = open(out, "a", buffering=1 << 16), True
        else:
            self.fp, self._own = out, False
        self.written = 0
        self._dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def __call__(self, event: dict) -> None:
        self.fp.write(self._dumps(event) + "\n")
        self.written += 1

    def flush(self) -> None:
        self.fp.flush()

    def close(self) -> None:
        self.fp.flush()
        if self._own:
            self.fp.close()


def now() -> float:
    return time.time()
