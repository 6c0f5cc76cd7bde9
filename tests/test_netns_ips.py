"""End-to-end IPS: the inline gateway with the default signature set (signatures/), real traffic through real
NFQUEUE in network namespaces (root; skipped otherwise).

One lab and one gateway for the module (unique prefix, torn down by a finalizer even on failure): the lan
client fetches the EICAR test file and a clean file of the same size from the wan HTTP server, looks up
names at a DNS server in the wan namespace, and opens TLS connections whose SNI is the IPS test domain.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest

from tests.labhelp import base_config, make_lab, metric, needs_lab, sha256_of

pytestmark = [pytest.mark.netns, needs_lab]
REPO = Path(__file__).resolve().parent.parent
SIGNATURES = REPO / "signatures"
WAN = "198.18.0.10"
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SID_EICAR, SID_DUCKDNS, SID_TLS_TEST = 9000001, 9000301, 9000901

# A TLS client that sends a ClientHello with the given SNI to a plain HTTP server: with nothing in the way the
# server answers "400 Bad Request", which the TLS client reports as a protocol error at once.
TLS_PROBE = """
import socket, ssl, sys
ctx = ssl.create_default_context()
try:
    with socket.create_connection((sys.argv[1], 80), timeout=float(sys.argv[3])) as s:
        ctx.wrap_socket(s, server_hostname=sys.argv[2])
    print("handshake")
except TimeoutError:
    print("timeout")
except (ssl.SSLError, ConnectionError) as e:
    print("answered", type(e).__name__)
"""


@pytest.fixture(scope="module")
def lab(request):
    return make_lab(request)


@pytest.fixture(scope="module")
def gw(lab):
    the_gw = lab.start_gateway(base_config(bypass=True), signatures=str(SIGNATURES))
    the_gw.wait_ready()
    lab.start_dns("wan", WAN)
    yield the_gw
    assert the_gw.stop() == 0, the_gw.log()


def _wait(pred, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def _alerts(gw, sid: int, **match) -> list[dict]:
    return [e for e in gw.eve_events() if e.get("event_type") == "alert"
            and e["alert"]["signature_id"] == sid and all(e.get(k) == v for k, v in match.items())]


def _dns_names(ev: dict) -> list[str]:
    """Query names of an alert's dns object (EVE dns v2 "query" or v3 "queries")."""
    dns = ev.get("dns") or {}
    return [q.get("rrname") for q in dns.get("queries", dns.get("query", []))]


def _ids_drops(gw) -> float:
    return metric(gw.metrics(), "gateway_packets_total", verdict="drop", reason="ids")


def test_eicar_download_is_blocked_and_a_clean_file_of_the_same_size_arrives(lab, gw, tmp_path):
    (lab.www / "eicar.com").write_bytes(EICAR)
    clean = os.urandom(len(EICAR))
    (lab.www / "clean.bin").write_bytes(clean)
    drops_before = _ids_drops(gw)

    out = tmp_path / "eicar.com"
    r = lab.curl("lan", f"http://{WAN}/eicar.com", max_time=3, output=str(out))
    assert r.returncode != 0, (r.stdout, r.stderr)           # curl never finished the transfer ...
    assert not out.exists() or EICAR not in out.read_bytes()  # ... and the file did not arrive
    assert r.stdout.split()[0] == "200", r.stdout             # the headers came through: blocked mid-transfer

    (alert,) = _wait(lambda: _alerts(gw, SID_EICAR, dest_ip=lab.addr("lan")), 5.0)
    assert alert["alert"]["action"] == "blocked", alert
    assert alert["src_ip"] == WAN and alert["app_proto"] == "http" and alert["http"]["url"] == "/eicar.com"
    assert alert["pkt_src"] == "wire/nfq"
    # workers fold counters into the metrics every 0.5 s
    assert _wait(lambda: _ids_drops(gw) > drops_before, 5.0), gw.metrics()

    out = tmp_path / "clean.bin"
    r = lab.curl("lan", f"http://{WAN}/clean.bin", max_time=5, output=str(out))
    assert r.returncode == 0, (r.stderr, gw.log())
    assert sha256_of(out) == hashlib.sha256(clean).hexdigest()


def test_dns_query_for_a_listed_domain_raises_an_alert_and_is_answered(lab, gw):
    lan = lab.addr("lan")
    assert lab.resolve("lan", WAN, "clinic-pc.duckdns.org") == WAN     # alert only: the answer comes back
    (alert,) = _wait(lambda: _alerts(gw, SID_DUCKDNS, src_ip=lan), 5.0)
    assert alert["alert"]["action"] == "allowed" and alert["proto"] == "UDP" and alert["dest_port"] == 53
    assert _dns_names(alert) == ["clinic-pc.duckdns.org"]
    # an unlisted name: answered, and no alert names it (workers flush EVE every 0.5 s)
    assert lab.resolve("lan", WAN, "emr.clinic.example") == WAN
    time.sleep(1.5)
    named = [e for e in gw.eve_events() if e.get("event_type") == "alert" and "emr.clinic.example" in _dns_names(e)]
    assert named == [], named


def test_tls_to_the_ips_test_domain_is_blocked(lab, gw):
    other = lab.exec("lan", [sys.executable, "-c", TLS_PROBE, WAN, "www.clinic-gateway.example", "3"]).stdout
    assert other.startswith("answered"), other                 # the hello reached the server, which answered
    blocked = lab.exec("lan", [sys.executable, "-c", TLS_PROBE, WAN, "www.ips-test.clinic-gateway.example",
                               "2"]).stdout
    assert blocked.strip() == "timeout", blocked                # the hello was dropped: no answer at all
    (alert,) = _wait(lambda: _alerts(gw, SID_TLS_TEST), 5.0)
    assert alert["alert"]["action"] == "blocked" and alert["tls"]["sni"] == "www.ips-test.clinic-gateway.example"


def test_ids_only_mode_alerts_without_blocking(request, tmp_path):
    """gateway.ips = false (trying out a new rule set): the EICAR download arrives, the alert says
    "allowed"."""
    own = make_lab(request)
    gw = own.start_gateway(base_config(ips=False), signatures=str(SIGNATURES))
    gw.wait_ready()
    (own.www / "eicar.com").write_bytes(EICAR)
    out = tmp_path / "eicar.com"
    r = own.curl("lan", f"http://{WAN}/eicar.com", max_time=5, output=str(out))
    assert r.returncode == 0 and out.read_bytes() == EICAR, (r.stderr, gw.log())
    (alert,) = _wait(lambda: _alerts(gw, SID_EICAR), 5.0)
    assert alert["alert"]["action"] == "allowed", alert
    assert gw.stop() == 0
