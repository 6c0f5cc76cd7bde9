"""`gateway lab up|down|demo` as a user runs them (`make run` runs the demo)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.lab import Lab
from tests.labhelp import needs_lab, unique_prefix

pytestmark = [pytest.mark.netns, needs_lab]
REPO = Path(__file__).resolve().parent.parent


def gateway_cli(prefix: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, GATEWAY_LAB_PREFIX=prefix)
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout, check=False)


def test_lab_up_json_then_down():
    prefix = unique_prefix()
    lab = Lab(prefix)
    try:
        r = gateway_cli(prefix, "lab", "up", "--json", timeout=60)
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["namespaces"]["gw"] == f"{prefix}-gw"
        assert info["hosts"]["lan"]["addresses"][0] == "10.10.0.10"
        assert info["hosts"]["wan"]["addresses"] == ["198.18.0.10"]
        assert set(info["gateway"]["interfaces"]) == {"gw-lan", "gw-med", "gw-guest", "gw-wan"}
        assert lab.exists()
        # The servers `lab up` started outlive the command; offloads are off on the gateway side.
        assert lab.curl("lan", "http://198.18.0.10/", max_time=5).returncode == 0
        feats = lab.exec("gw", ["ethtool", "-k", "gw-wan"]).stdout
        assert "generic-receive-offload: off" in feats and "tcp-segmentation-offload: off" in feats
        r = gateway_cli(prefix, "lab", "down", timeout=60)
        assert r.returncode == 0, r.stderr
        assert not lab.exists()
    finally:
        lab.down()


def test_demo_shows_allowed_and_blocked_traffic_and_cleans_up():
    prefix = unique_prefix()
    try:
        r = gateway_cli(prefix, "lab", "demo", timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert "allowed   HTTP 200" in out, out
        assert "connection refused at once" in out, out        # a reject rule: RST from the gateway
        assert "dropped silently" in out, out                  # a deny rule: nothing comes back
        assert "gateway_packets_total{" in out, out
        # the IPS: the EICAR download is stopped by the default signature set, and the alert is listed
        eicar = next(line for line in out.splitlines() if "downloads a malware test file (EICAR)" in line)
        assert "blocked   by the IPS mid-transfer" in eicar and "0 of 68 file bytes" in eicar, out
        assert re.search(r'alert 198\.18\.0\.10:80 -> 10\.10\.0\.10:\d+ TCP blocked sid 9000001 "CLINIC MALWARE EICAR',
                         out), out
        assert 'reason="ids",verdict="drop"' in out, out
        assert "rules left in" in out and ": NONE" in out, out
    finally:
        Lab(prefix).down()
    assert not Lab(prefix).exists()
