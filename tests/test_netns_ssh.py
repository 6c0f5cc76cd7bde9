"""SSH through the inline gateway: the real OpenSSH client in the lan namespace against small SSH servers in the
wan namespace, through real NFQUEUE (root and the ssh client; skipped otherwise).

The servers speak only the clear-text start of SSH (their banner and a KEXINIT), which is all the gateway
parses; they log what each client sent, so the test can tell whether the client's own KEXINIT got through.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.labhelp import gateway_with_rules, make_lab, needs_lab

pytestmark = [pytest.mark.netns, needs_lab,
              pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client (openssh-client)")]
WAN = "198.18.0.10"
SID_CLIENT, SID_BLOCKED = 9100001, 9100002
RULES = f"""\
alert ssh any any -> any any (msg:"LAB ssh client software"; flow:established,to_server; ssh.software; \
content:"OpenSSH_"; startswith; sid:{SID_CLIENT}; rev:1;)
drop ssh any any -> any any (msg:"LAB blocked ssh server software"; flow:established,to_client; ssh.software; \
content:"dropbear_2016.74"; sid:{SID_BLOCKED}; rev:1;)
"""

# banner + KEXINIT to every client, then log (one JSON line per connection) what the client sent within a second
# of silence; bounded: at most 64 KiB per client, 20 s without a client ends the server
SSH_SERVER = r"""
import json, socket, struct, sys
addr, port, banner, log = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4]
def packet(code, payload):
    body = bytes([code]) + payload
    return struct.pack(">IB", 1 + len(body) + 4, 4) + body + bytes(4)
algs = [b"curve25519-sha256", b"ssh-ed25519", b"aes128-ctr", b"aes128-ctr", b"hmac-sha2-256", b"hmac-sha2-256",
        b"none", b"none", b"", b""]
kex = packet(20, b"S" * 16 + b"".join(struct.pack(">I", len(a)) + a for a in algs) + bytes(5))
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(4)
srv.settimeout(20)
print("ready", flush=True)
while True:
    try:
        c, _ = srv.accept()
    except OSError:
        break
    c.settimeout(1.0)
    got = b""
    try:
        c.sendall(banner + b"\r\n" + kex)
        while len(got) < 65536:
            d = c.recv(4096)
            if not d:
                break
            got += d
    except OSError:
        pass
    c.close()
    line, _, rest = got.partition(b"\n")
    with open(log, "a") as f:
        f.write(json.dumps({"banner": line.strip().decode("latin-1"), "kexinit": rest[5:6] == b"\x14"}) + "\n")
"""


@pytest.fixture(scope="module")
def lab(request):
    return make_lab(request)


@pytest.fixture(scope="module")
def gw(lab, tmp_path_factory):
    yield from gateway_with_rules(lab, tmp_path_factory, "ssh-lab", RULES)


def _server(lab, port: int, banner: str, log) -> None:
    p = lab.popen("wan", [sys.executable, "-c", SSH_SERVER, WAN, str(port), banner, str(log)],
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    assert p.stdout.readline().strip() == b"ready"


def _ssh(lab, port: int) -> subprocess.CompletedProcess:
    # the key exchange never completes (the servers stop after KEXINIT): ssh gives up; bounded twice over
    return lab.exec("lan", ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3", "-p", str(port),
                            f"probe@{WAN}", "true"], timeout=15)


def _wait_alerts(gw, sid: int, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        got = [e for e in gw.eve_events() if e.get("event_type") == "alert" and e["alert"]["signature_id"] == sid]
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def _logged(log, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def test_client_banner_is_parsed_and_alerted(lab, gw, tmp_path):
    log = tmp_path / "s22.jsonl"
    _server(lab, 22, "SSH-2.0-OpenSSH_9.2p1 Debian-2", log)
    _ssh(lab, 22)
    (conn,) = _logged(log)
    assert conn["banner"].startswith("SSH-2.0-OpenSSH_") and conn["kexinit"], conn   # nothing in the way
    (alert,) = _wait_alerts(gw, SID_CLIENT)
    assert alert["app_proto"] == "ssh" and alert["alert"]["action"] == "allowed"
    client = alert["ssh"]["client"]
    assert client["proto_version"] == "2.0" and client["software_version"] == conn["banner"].split()[0][8:]
    # (the server's side is in the alert only when its banner crossed first: both send theirs at once)


def test_server_banner_rule_blocks_the_session(lab, gw, tmp_path):
    log = tmp_path / "s2222.jsonl"
    _server(lab, 2222, "SSH-2.0-dropbear_2016.74", log)
    r = _ssh(lab, 2222)
    assert r.returncode != 0
    (alert,) = _wait_alerts(gw, SID_BLOCKED)
    assert alert["alert"]["action"] == "blocked" and alert["ssh"]["server"]["software_version"] == "dropbear_2016.74"
    # the server's banner never reached the client, so the client never sent its KEXINIT
    assert all(not c["kexinit"] for c in _logged(log, timeout=3.0))
