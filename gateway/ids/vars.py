"""Rule address and port variables, groups and negation, compiled to fast matchers.

    variables = Variables.from_config(config)          # Suricata's defaults + Config.vars
    group = variables.address("[$HOME_NET,!10.1.0.0/16]")  # -> AddressGroup (cached per text)
    group.contains(pkt.src)                            # packed 4/16-byte address, as gateway/packet.py has it

An AddressGroup is a sorted tuple of disjoint inclusive ranges of packed addresses per family, so a lookup is
one bisect and no per-packet conversion. A PortGroup is an 8 KiB bitmap (one bit per port) plus the
ranges it came from. Group semantics follow Suricata: positive items are unioned, negated items are
subtracted; a group that has only negated items means "anything but those". Variables may refer to other
variables; loops and undefined variables are errors (VarError) naming the variable.
"""
from __future__ import annotations

import bisect
import ipaddress
import re
from dataclasses import dataclass

# Suricata's suricata.yaml defaults, used for any variable the config does not set.
DEFAULT_ADDRESS_VARS: dict[str, str] = {
    "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET",
    "SMTP_SERVERS": "$HOME_NET",
    "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET",
    "TELNET_SERVERS": "$HOME_NET",
    "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET",
    "DNP3_SERVER": "$HOME_NET",
    "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET",
    "MODBUS_SERVER": "$HOME_NET",
    "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
}
DEFAULT_PORT_VARS: dict[str, str] = {
    "HTTP_PORTS": "80",
    "SHELLCODE_PORTS": "!80",
    "ORACLE_PORTS": "1521",
    "SSH_PORTS": "22",
    "DNP3_PORTS": "20000",
    "MODBUS_PORTS": "502",
    "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081",
    "VXLAN_PORTS": "4789",
    "TEREDO_PORTS": "3544",
}

_V4_MAX = (1 << 32) - 1
# AddressGroup.contains: addresses remembered per group, forgotten all at once when full (ET Open has ~1,200
# groups: at most ~12 MB in all)
_SEEN_MAX = 128
_V6_MAX = (1 << 128) - 1
_MAX_DEPTH = 16          # variable nesting bound (also stops reference loops)
_MAX_ITEMS = 4096        # items in one expanded group
_MAX_CACHED = 65536      # parsed groups kept per Variables (identical header texts are very common)


_PORT_SYNTAX = re.compile(r"[\s\d:,\[\]!]+\Z")
_OCTET = r"(0|[1-9]\d{0,2})"
_DOTTED_V4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(\d{{1,2}}))?\Z")


class VarError(ValueError):
    """An address/port expression or variable that cannot be used; the message says which and why."""


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    ranges.sort()
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _subtract(ranges: list[tuple[int, int]], cut: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for lo, hi in ranges:
        pieces = [(lo, hi)]
        for clo, chi in cut:
            nxt = []
            for plo, phi in pieces:
                if chi < plo or clo > phi:
                    nxt.append((plo, phi))
                    continue
                if plo < clo:
                    nxt.append((plo, clo - 1))
                if chi < phi:
                    nxt.append((chi + 1, phi))
            pieces = nxt
        out.extend(pieces)
    return out


@dataclass(frozen=True)
class AddressGroup:
    """Inclusive ranges of addresses per family; `contains` takes packed bytes (4 = IPv4, 16 = IPv6)."""

    text: str
    v4: tuple[tuple[int, int], ...]
    v6: tuple[tuple[int, int], ...]

    @property
    def is_any(self) -> bool:
        return self.v4 == ((0, _V4_MAX),) and self.v6 == ((0, _V6_MAX),)

    def __post_init__(self) -> None:
        # starts/ends as packed bytes: bytes compare like the big-endian numbers they hold
        object.__setattr__(self, "_v4_lo", [lo.to_bytes(4, "big") for lo, _ in self.v4])
        object.__setattr__(self, "_v4_hi", [hi.to_bytes(4, "big") for _, hi in self.v4])
        object.__setattr__(self, "_v6_lo", [lo.to_bytes(16, "big") for lo, _ in self.v6])
        object.__setattr__(self, "_v6_hi", [hi.to_bytes(16, "big") for _, hi in self.v6])
        # addr -> contained: a flow's addresses are asked about by every candidate rule of its packets
        object.__setattr__(self, "_seen", {})

    def contains(self, addr: bytes) -> bool:
        seen = self._seen
        ok = seen.get(addr)
        if ok is None:
            if len(addr) == 4:
                los, his = self._v4_lo, self._v4_hi
            else:
                los, his = self._v6_lo, self._v6_hi
            i = bisect.bisect_right(los, addr) - 1
            ok = i >= 0 and addr <= his[i]
            if len(seen) >= _SEEN_MAX:
                seen.clear()
            seen[addr] = ok
        return ok

    def contains_ip(self, ip: str) -> bool:
        return self.contains(ipaddress.ip_address(ip).packed)


@dataclass(frozen=True)
class PortGroup:
    """Inclusive port ranges; `contains(port)` is one bit test in a bytes bitmap."""

    text: str
    ranges: tuple[tuple[int, int], ...]
    bitmap: bytes

    @property
    def is_any(self) -> bool:
        return self.ranges == ((0, 65535),)

    def contains(self, port: int) -> bool:
        return (self.bitmap[port >> 3] >> (port & 7)) & 1 == 1


def _split_group(text: str, what: str) -> list[str]:
    """Split "[a,[b,c],!d]" at top-level commas (brackets nest)."""
    if not (text.startswith("[") and text.endswith("]")):
        raise VarError(f"{what} {text!r}: unbalanced brackets")
    body = text[1:-1]
    if "[" not in body and "]" not in body:     # flat list: the common case (and the long IP lists)
        items = [it.strip() for it in body.split(",")]
        if any(not it for it in items):
            raise VarError(f"{what} {text!r}: empty item in group")
        if len(items) > _MAX_ITEMS:
            raise VarError(f"{what} {text!r}: more than {_MAX_ITEMS} items")
        return items
    items, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise VarError(f"{what} {text!r}: unbalanced brackets")
        elif ch == "," and depth == 0:
            items.append(body[start:i].strip())
            start = i + 1
    if depth != 0:
        raise VarError(f"{what} {text!r}: unbalanced brackets")
    items.append(body[start:].strip())
    if any(not it for it in items):
        raise VarError(f"{what} {text!r}: empty item in group")
    if len(items) > _MAX_ITEMS:
        raise VarError(f"{what} {text!r}: more than {_MAX_ITEMS} items")
    return items


class Variables:
    """Address and port variables with Suricata's defaults; parsed groups are cached by their text."""

    def __init__(self, address_vars: dict[str, str] | None = None, port_vars: dict[str, str] | None = None):
        self.address_vars = dict(DEFAULT_ADDRESS_VARS)
        self.port_vars = dict(DEFAULT_PORT_VARS)
        self.configured: set[str] = set()        # names set by the caller (vs Suricata's defaults)
        for name, value in (address_vars or {}).items():
            self.address_vars[name.lstrip("$")] = value
            self.configured.add(name.lstrip("$"))
        for name, value in (port_vars or {}).items():
            self.port_vars[name.lstrip("$")] = value
            self.configured.add(name.lstrip("$"))
        self._addr_cache: dict[str, AddressGroup] = {}
        self._port_cache: dict[str, PortGroup] = {}

    @classmethod
    def from_pairs(cls, pairs) -> Variables:
        """From (name, value) pairs like Config.vars, which (unlike suricata.yaml) does not separate
        address and port groups: a Suricata port variable name, a name ending in _PORT(S), or a value
        made only of port syntax (digits : , [ ] !) is a port variable; "any" is both; the rest are
        address variables."""
        addr, port = {}, {}
        for name, value in pairs:
            name = name.lstrip("$")
            if value.strip() == "any":
                addr[name] = port[name] = value
            elif name in DEFAULT_PORT_VARS or name.endswith(("_PORTS", "_PORT")) or _PORT_SYNTAX.match(value):
                port[name] = value
            else:
                addr[name] = value
        return cls(addr, port)

    @classmethod
    def from_config(cls, config) -> Variables:
        return cls.from_pairs(config.vars)

    def validate(self) -> None:
        """Expand every configured variable once so a bad one is reported before any rule is loaded.
        (A default that no longer expands, e.g. EXTERNAL_NET when HOME_NET is "any", only rejects the rules
        that use it, as in Suricata.)"""
        for names, expand in ((self.address_vars, self.address), (self.port_vars, self.port)):
            for name in names:
                if name not in self.configured:
                    continue
                try:
                    expand("$" + name)
                except VarError as e:
                    raise VarError(f"${name}: {e}") from None

    # -------------------------------------------------------------------------------------- addresses
    def address(self, text: str) -> AddressGroup:
        group = self._addr_cache.get(text)
        if group is None:
            v4, v6 = self._addr_ranges(text, 0)
            if not v4 and not v6:
                raise VarError(f"address group {text!r} matches no address")
            group = AddressGroup(text, tuple(v4), tuple(v6))
            if len(self._addr_cache) >= _MAX_CACHED:
                self._addr_cache.clear()
            self._addr_cache[text] = group
        return group

    def _addr_ranges(self, text: str, depth: int) -> tuple[list, list]:
        if depth > _MAX_DEPTH:
            raise VarError(f"address {text!r}: variables nested too deep (a reference loop?)")
        text = text.strip()
        if not text:
            raise VarError("empty address")
        if text.startswith("!"):
            v4, v6 = self._addr_ranges(text[1:], depth + 1)
            return _subtract([(0, _V4_MAX)], v4), _subtract([(0, _V6_MAX)], v6)
        if text.startswith("["):
            pos4, pos6, neg4, neg6 = [], [], [], []
            have_pos = False
            for item in _split_group(text, "address"):
                if item.startswith("!"):
                    n4, n6 = self._addr_ranges(item[1:], depth + 1)
                    neg4 += n4
                    neg6 += n6
                else:
                    have_pos = True
                    p4, p6 = self._addr_ranges(item, depth + 1)
                    pos4 += p4
                    pos6 += p6
            if not have_pos:
                pos4, pos6 = [(0, _V4_MAX)], [(0, _V6_MAX)]
            return _merge(_subtract(_merge(pos4), _merge(neg4))), _merge(_subtract(_merge(pos6), _merge(neg6)))
        if text.startswith("$"):
            name = text[1:]
            value = self.address_vars.get(name)
            if value is None:
                if name in self.port_vars:
                    raise VarError(f"${name} is a port variable, used as an address")
                raise VarError(f"undefined address variable ${name}")
            return self._addr_ranges(value, depth + 1)
        if text == "any":
            return [(0, _V4_MAX)], [(0, _V6_MAX)]
        return self._addr_literal(text)

    @staticmethod
    def _addr_literal(text: str) -> tuple[list, list]:
        m = _DOTTED_V4.match(text)
        if m:                                     # fast path for a.b.c.d[/n] (the long IP-list rules)
            octets = [int(x) for x in m.group(1, 2, 3, 4)]
            bits = int(m.group(5)) if m.group(5) is not None else 32
            if max(octets) <= 255 and bits <= 32:
                value = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
                mask = ((1 << bits) - 1) << (32 - bits)
                lo = value & mask
                return [(lo, lo | (~mask & _V4_MAX))], []
        if "-" in text and "/" not in text:       # Suricata also takes "1.2.3.4-1.2.3.9"
            lo_s, _, hi_s = text.partition("-")
            try:
                lo, hi = ipaddress.ip_address(lo_s.strip()), ipaddress.ip_address(hi_s.strip())
            except ValueError:
                raise VarError(f"not an IP address range: {text!r}") from None
            if lo.version != hi.version or int(lo) > int(hi):
                raise VarError(f"IP address range out of order or mixed families: {text!r}")
            rng = [(int(lo), int(hi))]
            return (rng, []) if lo.version == 4 else ([], rng)
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise VarError(f"not an IP address or network: {text!r}") from None
        rng = [(int(net.network_address), int(net.broadcast_address))]
        return (rng, []) if net.version == 4 else ([], rng)

    # ------------------------------------------------------------------------------------------ ports
    def port(self, text: str) -> PortGroup:
        group = self._port_cache.get(text)
        if group is None:
            ranges = self._port_ranges(text, 0)
            if not ranges:
                raise VarError(f"port group {text!r} matches no port")
            bits = 0
            for lo, hi in ranges:
                bits |= ((1 << (hi - lo + 1)) - 1) << lo
            group = PortGroup(text, tuple(ranges), bits.to_bytes(8192, "little"))
            if len(self._port_cache) >= _MAX_CACHED:
                self._port_cache.clear()
            self._port_cache[text] = group
        return group

    def _port_ranges(self, text: str, depth: int) -> list[tuple[int, int]]:
        if depth > _MAX_DEPTH:
            raise VarError(f"port {text!r}: variables nested too deep (a reference loop?)")
        text = text.strip()
        if not text:
            raise VarError("empty port")
        if text.startswith("!"):
            return _subtract([(0, 65535)], self._port_ranges(text[1:], depth + 1))
        if text.startswith("["):
            pos, neg, have_pos = [], [], False
            for item in _split_group(text, "port"):
                if item.startswith("!"):
                    neg += self._port_ranges(item[1:], depth + 1)
                else:
                    have_pos = True
                    pos += self._port_ranges(item, depth + 1)
            if not have_pos:
                pos = [(0, 65535)]
            return _merge(_subtract(_merge(pos), _merge(neg)))
        if text.startswith("$"):
            name = text[1:]
            value = self.port_vars.get(name)
            if value is None:
                if name in self.address_vars:
                    raise VarError(f"${name} is an address variable, used as a port")
                raise VarError(f"undefined port variable ${name}")
            return self._port_ranges(value, depth + 1)
        if text == "any":
            return [(0, 65535)]
        lo_s, sep, hi_s = text.partition(":")
        try:
            lo = int(lo_s) if lo_s.strip() else 0
            hi = (int(hi_s) if hi_s.strip() else 65535) if sep else lo
        except ValueError:
            raise VarError(f"not a port or port range: {text!r}") from None
        if not 0 <= lo <= hi <= 65535:
            raise VarError(f"port range out of order or outside 0..65535: {text!r}")
        return [(lo, hi)]
