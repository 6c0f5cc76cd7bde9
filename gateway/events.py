"""EVE JSON events with Suricata's field names, so Elastic, Splunk and EveBox read them unchanged."""
from __future__ import annotations

import base64
import json
import math
import sys
import time
from datetime import UTC, datetime
from typing import IO

from .flow import Flow
from .packet import PROTO_NAMES, Packet
from .tunnel import tunnel_fields


def eve_timestamp(ts: float) -> str:
    """Suricata's format: 2024-04-01T12:00:00.123456+0000 (UTC). Every event carries one or more, so the date
    and time of the last second are kept (strftime is most of the cost) and the microseconds are rounded as
    datetime.fromtimestamp rounds them (half to even)."""
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole += 1.0
        us -= 1_000_000
    elif us < 0:
        whole -= 1.0
        us += 1_000_000
    if whole != _last_second[0]:
        _last_second[0] = whole
        _last_second[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
    return f"{_last_second[1]}{us:06d}+0000"


_last_second: list = [None, ""]     # (whole seconds, their date and time) of the last eve_timestamp


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


# pcap link type -> the name Suricata logs in packet_info.linktype_name
LINKTYPE_NAMES = {0: "NULL", 1: "EN10MB", 9: "PPP", 14: "RAW", 101: "RAW", 104: "C_HDLC", 113: "LINUX_SLL",
                  228: "IPv4", 229: "IPv6", 276: "LINUX_SLL2"}
_VLAN_ETYPES = (b"\x81\x00", b"\x88\xa8", b"\x91\x00")


def add_packet_fields(ev: dict, pkt: Packet) -> None:
    """The captured packet as Suricata's alert logs it: `packet` (base64 of the frame, link layer included),
    `packet_info`, and for Ethernet frames `ether` (MACs) and `vlan` (the ids of its 802.1Q tags). Built only
    when an event is emitted."""
    frame = pkt.frame if pkt.frame is not None else pkt.data
    ev["packet"] = base64.b64encode(frame).decode("ascii")
    ev["packet_info"] = {"linktype": pkt.linktype, "linktype_name": LINKTYPE_NAMES.get(pkt.linktype,
                                                                                         str(pkt.linktype))}
    tun = pkt.tunnel          # (carrier or None when decoded in place, depth, pkt_src, extra VLAN ids)
    if tun is not None and tun[0] is not None:
        ev["pkt_src"] = tun[2]
        ev["tunnel"] = tunnel_fields(tun[0], tun[1])
    if pkt.linktype == 1 and pkt.frame is not None and len(frame) >= 14:
        ev["ether"] = {"src_mac": frame[6:12].hex(":"), "dest_mac": frame[0:6].hex(":")}
        vlans = []
        off = 12
        while frame[off:off + 2] in _VLAN_ETYPES and len(frame) >= off + 6 and len(vlans) < 3:
            vlans.append(int.from_bytes(frame[off + 2:off + 4], "big") & 0x0FFF)
            off += 4
        if tun is not None:
            vlans += tun[3]
        if vlans:
            ev["vlan"] = vlans


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
            # held open for the writer's life, closed by close()
            self.fp, self._own = open(out, "a", buffering=1 << 16), True  # noqa: SIM115
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
