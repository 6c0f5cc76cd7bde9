"""Shared helpers for the network-namespace end-to-end tests (tests/test_netns_*.py).

Every test builds its own lab with a unique prefix (pid + counter), so parallel runs and other people's
labs never collide, and tears it down in a finalizer even when the test fails.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
from pathlib import Path

import pytest

from gateway.lab import Lab, LabError, missing_tools

_counter = itertools.count()


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables, NFQUEUE)"
    missing = missing_tools()
    if missing:
        return f"missing tools: {', '.join(missing)} (make setup installs them)"
    if not Path("/proc/net/netfilter").exists() and not Path("/proc/sys/net/netfilter").exists():
        return "kernel without netfilter"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "pyroute2 not installed"
    return None


needs_lab = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def unique_prefix() -> str:
    return f"t{os.getpid() % 0xFFFFF:x}{next(_counter)}"


def make_lab(request) -> Lab:
    """For a test module's `lab` fixture: a fresh lab, torn down by a finalizer even on failure."""
    the_lab = Lab(unique_prefix())
    request.addfinalizer(the_lab.down)
    try:
        the_lab.up()
    except LabError as e:
        pytest.fail(f"lab did not come up: {e}")
    return the_lab


def gateway_with_rules(lab: Lab, tmp_path_factory, name: str, rules: str):
    """A module's `gw` fixture body: the inline gateway with base_config() and a signature set holding only
    `rules` (as rules/<name>.rules); yields it ready and checks that it stops cleanly."""
    sigs = tmp_path_factory.mktemp("signatures")
    (sigs / "rules").mkdir()
    (sigs / "rules" / f"{name}.rules").write_text(rules)
    gw = lab.start_gateway(base_config(), signatures=str(sigs))
    gw.wait_ready()
    yield gw
    assert gw.stop() == 0, gw.log()


def base_config(**gateway) -> dict:
    """A small config of our own (independent of config/gateway.toml's evolution):
    lan -> wan allowed except TCP 445 (reject); medical may reach only wan :8080; the rest denied."""
    gw = {"queues": 2, "fail_open": False, "bypass": False}
    gw.update(gateway)
    return {
        "gateway": gw,
        "metrics": {"listen": "127.0.0.1:9753"},    # loopback of the lab's own gw namespace
        "zones": {
            "lan": {"interfaces": ["gw-lan"], "cidrs": ["10.10.0.0/24"], "default": "deny"},
            "medical": {"interfaces": ["gw-med"], "cidrs": ["10.20.0.0/24"], "default": "deny"},
            "guest": {"interfaces": ["gw-guest"], "cidrs": ["10.30.0.0/24"], "default": "reject"},
            "wan": {"interfaces": ["gw-wan"], "cidrs": ["0.0.0.0/0"], "default": "deny"},
        },
        "firewall": {
            "default": "deny",
            "rules": [
                {"name": "no-smb-out", "from": ["lan"], "to": ["wan"], "proto": "tcp", "ports": [445],
                 "action": "reject"},
                {"name": "lan-out", "from": ["lan"], "to": ["wan"], "action": "allow"},
                {"name": "med-vendor", "from": ["medical"], "to": ["wan"], "proto": "tcp", "ports": [8080],
                 "action": "allow"},
            ],
        },
    }


def random_file(lab: Lab, name: str, size: int) -> str:
    """Write `size` random bytes into the lab's www; returns the sha256 hex digest."""
    data = os.urandom(size)
    (lab.www / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metric(text: str, name: str, **labels) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total += float(m.group(4))
    return total


def conntrack_available() -> bool:
    return shutil.which("conntrack") is not None
