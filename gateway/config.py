"""Gateway configuration: TOML -> frozen dataclasses, validated with errors naming file, key and reason.

Every section has defaults, so `Config()` is a valid (empty-firewall) configuration and tests can build
one directly. `load(path)` refuses a bad file with ConfigError before anything is installed.
"""
from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config" / "gateway.toml"
DEFAULT_SIGNATURES = REPO_ROOT / "signatures"

POLICIES = ("drop", "accept")           # what to do with a packet when a bound is hit / it is malformed
LIMIT_POLICIES = ("bypass", "drop")     # what to do with a flow when a reassembly bound is hit
FW_ACTIONS = ("allow", "deny", "reject")
PROTOCOLS = {"any": None, "tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}


class ConfigError(ValueError):
    """A configuration that must be refused. str() names the file, the key and the reason."""

    def __init__(self, where: str, key: str, reason: str):
        self.where, self.key, self.reason = where, key, reason
        super().__init__(f"{where}: {key}: {reason}")


@dataclass(frozen=True)
class GatewaySection:
    queues: int = 2                 # NFQUEUE queues = worker processes
    queue_start: int = 0            # first queue number
    fail_open: bool = True          # traffic flows (uninspected) while no worker is bound / queue is full
    bypass: bool = True             # inspection-depth bypass: conntrack-mark flows with nothing left to inspect
    ips: bool = True                # inline, drop/reject signatures block; false: they only alert (IDS)
    mark_bypass: int = 0x100000     # connmark bit meaning "kernel forwards the rest of this flow"
    mark_reject: int = 0x200000     # packet mark bit meaning "kernel answers with RST / ICMP unreachable"
    mark_reply: int = 0x400000      # packet mark bit the chain sets on conntrack's reply direction, so a
                                    # worker that (re)starts mid-connection still knows who the client is
    malformed_policy: str = "drop"  # drop | accept
    chain: str = "CLINIC_GW"        # iptables chain the gateway owns in the filter table
    interfaces: tuple[str, ...] = ()  # only traffic entering these interfaces is queued (empty: all)
    signatures: str = ""            # signature set directory ("" = the repo's signatures/)
    eve: str = ""                   # EVE JSON path for the inline driver ("" = <state_dir>/eve.json)
    state_dir: str = "/var/lib/clinic-gateway"
    queue_maxlen: int = 4096        # kernel queue length per queue
    flow_events: bool = True        # an EVE `flow` event for every flow when it ends
    vxlan_port: int = 0             # decapsulate VXLAN sent to this UDP port (Suricata's decoder.vxlan); 0 = off
    geneve_port: int = 6081         # decapsulate Geneve from or to this UDP port (Suricata's decoder.geneve, on by
                                    # default: cloud load balancers use it); 0 = off


@dataclass(frozen=True)
class MetricsSection:
    listen: str = "127.0.0.1:9753"


@dataclass(frozen=True)
class FlowSection:
    max_flows: int = 65536
    tcp_new_timeout: float = 30.0
    tcp_established_timeout: float = 3600.0
    tcp_closed_timeout: float = 10.0
    udp_timeout: float = 60.0
    icmp_timeout: float = 30.0
    other_timeout: float = 60.0
    on_full: str = "drop"           # packet of a new flow when the table is full: drop | accept


@dataclass(frozen=True)
class StreamSection:
    depth: int = 1 << 20            # bytes per direction handed to inspection; past it the flow may be bypassed
    max_pending: int = 256 << 10    # out-of-order bytes buffered per direction
    memcap: int = 64 << 20          # out-of-order bytes buffered across all flows of a worker
    on_limit: str = "bypass"        # bypass | drop when max_pending/memcap is hit
    midstream: bool = True          # pick up TCP flows whose handshake was not seen


@dataclass(frozen=True)
class FragmentSection:
    max_datagrams: int = 1024       # datagrams being reassembled at once
    max_datagram_bytes: int = 65535
    timeout: float = 30.0


@dataclass(frozen=True)
class Zone:
    name: str
    interfaces: tuple[str, ...] = ()
    cidrs: tuple[str, ...] = ()
    default: str = "deny"           # allow | deny | reject for traffic from this zone no rule matched


@dataclass(frozen=True)
class FirewallRule:
    name: str
    action: str                     # allow | deny | reject
    src_zones: tuple[str, ...] = ()  # empty = any
    dst_zones: tuple[str, ...] = ()
    src: tuple[str, ...] = ()       # CIDRs, empty = any
    dst: tuple[str, ...] = ()
    proto: str = "any"
    ports: tuple[tuple[int, int], ...] = ()  # destination port ranges, inclusive; empty = any
    log: bool = False               # EVE event per flow decided (default: true for deny/reject rules)


@dataclass(frozen=True)
class FirewallSection:
    zones: tuple[Zone, ...] = ()
    rules: tuple[FirewallRule, ...] = ()
    default: str = "allow"          # for traffic whose source is in no zone


ACTION_NAMES = ("pass", "drop", "reject", "alert")
XFF_MODES = ("extra-data", "overwrite")
XFF_DEPLOYMENTS = ("reverse", "forward")
DROP_LOG_FLOWS = ("start", "all")


@dataclass(frozen=True)
class IdsSection:
    # the order actions are applied in when several rules match a packet (Suricata's action-order)
    action_order: tuple[str, ...] = ACTION_NAMES
    # HTTP bodies (Suricata's libhtp settings of the same names): "auto" inspects them as they arrive when
    # drop rules block (IPS), else, as an IDS, once complete or at these many bytes (or when the flow ends)
    http_body_inline: str = "auto"              # auto | yes | no
    request_body_minimal_inspect_size: int = 32 * 1024
    response_body_minimal_inspect_size: int = 40 * 1024


@dataclass(frozen=True)
class XffSection:
    enabled: bool = False           # read the client address a proxy put in an HTTP request header
    mode: str = "extra-data"        # extra-data: alert.xff holds it | overwrite: it replaces src_ip/dest_ip
    deployment: str = "reverse"     # reverse: the last address of the chain | forward: the first
    header: str = "X-Forwarded-For"


@dataclass(frozen=True)
class EventsSection:
    drop_flows: str = "start"       # EVE `drop` events of a dropped flow: start (first packet each way) | all
    ipv6_compress: bool = False     # IPv6 in EVE as fe80::1 instead of Suricata's default full form
    xff: XffSection = field(default_factory=XffSection)


@dataclass(frozen=True)
class Config:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    flows: FlowSection = field(default_factory=FlowSection)
    stream: StreamSection = field(default_factory=StreamSection)
    fragments: FragmentSection = field(default_factory=FragmentSection)
    firewall: FirewallSection = field(default_factory=FirewallSection)
    vars: tuple[tuple[str, str], ...] = ()  # rule variables: HOME_NET, EXTERNAL_NET, HTTP_PORTS, ...
    source: str = "<defaults>"
    ids: IdsSection = field(default_factory=IdsSection)
    events: EventsSection = field(default_factory=EventsSection)

    def signatures_dir(self, override: str | None = None) -> Path:
        chosen = override or self.gateway.signatures
        return Path(chosen) if chosen else DEFAULT_SIGNATURES

    def var(self, name: str, default: str | None = None) -> str | None:
        return dict(self.vars).get(name, default)


# ---------------------------------------------------------------------------------------------- loading

def load(path: str | Path | None = None) -> Config:
    """Read and validate a TOML config. Raises ConfigError naming file, key and reason."""
    path = Path(path) if path else DEFAULT_CONFIG
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(where, "-", "file not found") from None
    except OSError as e:
        raise ConfigError(where, "-", f"cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(where, "-", f"not valid TOML: {e}") from None
    return from_dict(raw, where)


def from_dict(raw: dict[str, Any], where: str = "<dict>") -> Config:
    known = {"gateway", "metrics", "flows", "stream", "fragments", "zones", "firewall", "vars", "ids", "events"}
    for key in raw:
        if key not in known:
            raise ConfigError(where, key, f"unknown section (known: {', '.join(sorted(known))})")
    gw = _section(GatewaySection, raw.get("gateway", {}), "gateway", where)
    _choice(gw.malformed_policy, POLICIES, "gateway.malformed_policy", where)
    if not 1 <= gw.queues <= 64:
        raise ConfigError(where, "gateway.queues", f"must be 1..64, got {gw.queues}")
    if not 0 <= gw.queue_start <= 65535 - gw.queues:
        raise ConfigError(where, "gateway.queue_start", "queue numbers must fit in 0..65535")
    for key in ("mark_bypass", "mark_reject", "mark_reply"):
        v = getattr(gw, key)
        if v <= 0 or v & (v - 1) or v >= 1 << 32:
            raise ConfigError(where, f"gateway.{key}", f"must be a single bit of a 32-bit mark, got {v:#x}")
    for key in ("vxlan_port", "geneve_port"):
        if not 0 <= getattr(gw, key) <= 65535:
            raise ConfigError(where, f"gateway.{key}", f"must be a UDP port 1..65535 or 0 (off), got {getattr(gw, key)}")
    if len({gw.mark_bypass, gw.mark_reject, gw.mark_reply}) != 3:
        raise ConfigError(where, "gateway.mark_reject", "mark_bypass, mark_reject and mark_reply must be different bits")
    metrics = _section(MetricsSection, raw.get("metrics", {}), "metrics", where)
    _host_port(metrics.listen, "metrics.listen", where)
    flows = _section(FlowSection, raw.get("flows", {}), "flows", where)
    _choice(flows.on_full, POLICIES, "flows.on_full", where)
    _positive(flows, "flows", where)
    stream = _section(StreamSection, raw.get("stream", {}), "stream", where)
    _choice(stream.on_limit, LIMIT_POLICIES, "stream.on_limit", where)
    _positive(stream, "stream", where)
    frags = _section(FragmentSection, raw.get("fragments", {}), "fragments", where)
    _positive(frags, "fragments", where)
    firewall = _firewall(raw.get("zones", {}), raw.get("firewall", {}), where)
    vars_ = raw.get("vars", {})
    if not isinstance(vars_, dict) or not all(isinstance(v, str) for v in vars_.values()):
        raise ConfigError(where, "vars", "must be a table of strings, e.g. HOME_NET = \"[10.0.0.0/8]\"")
    return Config(gw, metrics, flows, stream, frags, firewall, tuple(vars_.items()), where,
                  ids=_ids(raw.get("ids", {}), where), events=_events(raw.get("events", {}), where))


def _ids(raw: Any, where: str) -> IdsSection:
    ids = _section(IdsSection, raw, "ids", where)
    if sorted(ids.action_order) != sorted(ACTION_NAMES):
        raise ConfigError(where, "ids.action_order",
                          f"must name each of {', '.join(ACTION_NAMES)} once, got {list(ids.action_order)}")
    if ids.http_body_inline not in ("auto", "yes", "no"):
        raise ConfigError(where, "ids.http_body_inline", f"must be auto, yes or no, got {ids.http_body_inline!r}")
    for name in ("request_body_minimal_inspect_size", "response_body_minimal_inspect_size"):
        if getattr(ids, name) < 0:
            raise ConfigError(where, f"ids.{name}", f"must be >= 0, got {getattr(ids, name)}")
    return ids


def _events(raw: Any, where: str) -> EventsSection:
    if not isinstance(raw, dict):
        raise ConfigError(where, "events", "must be a table")
    xff_raw = raw.get("xff", {})
    ev = _section(EventsSection, {k: v for k, v in raw.items() if k != "xff"}, "events", where)
    _choice(ev.drop_flows, DROP_LOG_FLOWS, "events.drop_flows", where)
    xff = _section(XffSection, xff_raw, "events.xff", where)
    _choice(xff.mode, XFF_MODES, "events.xff.mode", where)
    _choice(xff.deployment, XFF_DEPLOYMENTS, "events.xff.deployment", where)
    if not xff.header or not all(33 <= ord(c) < 127 and c != ":" for c in xff.header):
        raise ConfigError(where, "events.xff.header", f"must be an HTTP header name, got {xff.header!r}")
    return replace(ev, xff=xff)


def _section(cls, raw: Any, name: str, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(where, name, "must be a table")
    kwargs = {}
    types = {f.name: f for f in fields(cls)}
    for key, value in raw.items():
        if key not in types:
            raise ConfigError(where, f"{name}.{key}", f"unknown key (known: {', '.join(types)})")
        kwargs[key] = _coerce(value, getattr(cls(), key), f"{name}.{key}", where)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, key: str, where: str):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(where, key, f"must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, key, f"must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(where, key, f"must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(where, key, f"must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(where, key, f"must be a list of strings, got {value!r}")
        return tuple(value)
    return value


def _choice(value: str, allowed, key: str, where: str) -> None:
    if value not in allowed:
        raise ConfigError(where, key, f"must be one of {', '.join(allowed)}, got {value!r}")


def _positive(section, name: str, where: str) -> None:
    for f in fields(section):
        v = getattr(section, f.name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
            raise ConfigError(where, f"{name}.{f.name}", f"must be > 0, got {v}")


def _host_port(value: str, key: str, where: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ConfigError(where, key, f"must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def _cidrs(values: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        raise ConfigError(where, key, "must be a CIDR string or a list of them")
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_network(v, strict=False)))
        except (ValueError, TypeError):
            raise ConfigError(where, key, f"not an IP network: {v!r}") from None
    return tuple(out)


def _ports(values: Any, key: str, where: str) -> tuple[tuple[int, int], ...]:
    if isinstance(values, (int, str)):
        values = [values]
    if not isinstance(values, list):
        raise ConfigError(where, key, "must be a port, a 'lo-hi' range, or a list of them")
    out = []
    for v in values:
        lo_s, _, hi_s = str(v).partition("-")
        try:
            lo, hi = int(lo_s), int(hi_s or lo_s)
        except ValueError:
            raise ConfigError(where, key, f"not a port or port range: {v!r}") from None
        if not 0 <= lo <= hi <= 65535:
            raise ConfigError(where, key, f"port range out of order or outside 0..65535: {v!r}")
        out.append((lo, hi))
    return tuple(out)


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(where, key, "must be a zone name or a list of zone names")
    return tuple(value)


def _firewall(zones_raw: Any, fw_raw: Any, where: str) -> FirewallSection:
    if not isinstance(zones_raw, dict):
        raise ConfigError(where, "zones", "must be a table of [zones.NAME] tables")
    zones = []
    for name, z in zones_raw.items():
        key = f"zones.{name}"
        if not isinstance(z, dict):
            raise ConfigError(where, key, "must be a table")
        for k in z:
            if k not in ("interfaces", "cidrs", "default"):
                raise ConfigError(where, f"{key}.{k}", "unknown key (known: interfaces, cidrs, default)")
        ifaces = _names(z.get("interfaces", []), f"{key}.interfaces", where)
        cidrs = _cidrs(z.get("cidrs", []), f"{key}.cidrs", where)
        if not ifaces and not cidrs:
            raise ConfigError(where, key, "a zone needs interfaces and/or cidrs")
        default = z.get("default", "deny")
        _choice(default, FW_ACTIONS, f"{key}.default", where)
        zones.append(Zone(name, ifaces, cidrs, default))
    if not isinstance(fw_raw, dict):
        raise ConfigError(where, "firewall", "must be a table")
    for k in fw_raw:
        if k not in ("rules", "default"):
            raise ConfigError(where, f"firewall.{k}", "unknown key (known: rules, default)")
    default = fw_raw.get("default", "allow")
    _choice(default, FW_ACTIONS, "firewall.default", where)
    zone_names = {z.name for z in zones}
    rules = []
    raw_rules = fw_raw.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(where, "firewall.rules", "must be an array of tables ([[firewall.rules]])")
    allowed = {"name", "action", "from", "to", "src", "dst", "proto", "ports", "log"}
    for i, r in enumerate(raw_rules):
        key = f"firewall.rules[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(where, key, "must be a table")
        for k in r:
            if k not in allowed:
                raise ConfigError(where, f"{key}.{k}", f"unknown key (known: {', '.join(sorted(allowed))})")
        name = r.get("name", f"rule-{i}")
        key = f"firewall.rules[{i}] ({name})"
        if "action" not in r:
            raise ConfigError(where, f"{key}.action", "missing (allow | deny | reject)")
        _choice(r["action"], FW_ACTIONS, f"{key}.action", where)
        src_z = _names(r.get("from", []), f"{key}.from", where)
        dst_z = _names(r.get("to", []), f"{key}.to", where)
        for z in src_z + dst_z:
            if z not in zone_names and z != "any":
                raise ConfigError(where, key, f"names zone {z!r}, which is not defined under [zones]")
        proto = r.get("proto", "any")
        if proto not in PROTOCOLS:
            raise ConfigError(where, f"{key}.proto", f"must be one of {', '.join(PROTOCOLS)}, got {proto!r}")
        ports = _ports(r.get("ports", []), f"{key}.ports", where)
        if ports and proto not in ("tcp", "udp"):
            raise ConfigError(where, f"{key}.ports", "ports need proto = \"tcp\" or \"udp\"")
        log = r.get("log", r["action"] != "allow")   # blocks are logged unless told otherwise
        if not isinstance(log, bool):
            raise ConfigError(where, f"{key}.log", "must be true or false")
        rules.append(FirewallRule(
            name=name, action=r["action"],
            src_zones=tuple(z for z in src_z if z != "any"), dst_zones=tuple(z for z in dst_z if z != "any"),
            src=_cidrs(r.get("src", []), f"{key}.src", where), dst=_cidrs(r.get("dst", []), f"{key}.dst", where),
            proto=proto, ports=ports, log=log))
    return FirewallSection(tuple(zones), tuple(rules), default)


def as_dict(obj: Any) -> Any:
    """Plain-data view of a config (for `gateway config show` and logs)."""
    if is_dataclass(obj):
        return {f.name: as_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [as_dict(v) for v in obj]
    return obj
