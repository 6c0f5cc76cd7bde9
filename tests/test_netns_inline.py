"""End-to-end: real traffic through real NFQUEUE in network namespaces (root; skipped otherwise).

Each test builds its own lab (unique prefix) and removes it in a finalizer, even on failure.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from gateway.config import GatewaySection
from gateway.inline import netfilter
from tests.labhelp import (
    base_config,
    conntrack_available,
    make_lab,
    metric,
    needs_lab,
    random_file,
    sha256_of,
)

pytestmark = [pytest.mark.netns, needs_lab]
WAN = "198.18.0.10"
PROBE_RST = "import socket; socket.create_connection(('198.18.0.10', 445), 3)"


@pytest.fixture
def lab(request):
    return make_lab(request)


def _wait(pred, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def _scrape(gw, name: str, timeout: float = 3.0, **labels) -> tuple[float, str]:
    """Wait for workers to fold their counters (every 0.5 s) until `name` is non-zero."""
    text = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = gw.metrics()
        value = metric(text, name, **labels)
        if value:
            return value, text
        time.sleep(0.2)
    return metric(text, name, **labels), text


def test_allowed_http_passes_byte_for_byte(lab, tmp_path):
    digest = random_file(lab, "blob.bin", 3 << 20)
    gw = lab.start_gateway(base_config(bypass=False))    # every packet through userspace
    gw.wait_ready()
    out = tmp_path / "blob.bin"
    r = lab.curl("lan", f"http://{WAN}/blob.bin", max_time=20, output=str(out))
    assert r.returncode == 0, (r.stderr, gw.log())
    assert sha256_of(out) == digest
    # ... and it really went through the workers, not around them.
    accepted, text = _scrape(gw, "gateway_packets_total", verdict="accept")
    assert accepted > 2000, text
    assert gw.stop() == 0


def test_reject_answers_with_rst_and_deny_drops(lab):
    # Without the gateway the kernel forwards both: the blocks below are the gateway's doing.
    assert lab.curl("lan", f"http://{WAN}:445/", max_time=5).returncode == 0
    assert lab.curl("med", f"http://{WAN}/", max_time=5).returncode == 0
    gw = lab.start_gateway(base_config())
    gw.wait_ready()

    t0 = time.monotonic()
    r = lab.curl("lan", f"http://{WAN}:445/", max_time=5)
    took = time.monotonic() - t0
    assert r.returncode == 7, (r.returncode, r.stderr)              # could not connect ...
    assert took < 2.0                                               # ... at once
    probe = lab.exec("lan", [sys.executable, "-c", PROBE_RST])
    assert "ConnectionRefusedError" in probe.stderr, probe.stderr    # ... because a TCP RST came back

    r = lab.curl("med", f"http://{WAN}/", max_time=1.5)
    assert r.returncode == 28, (r.returncode, r.stderr)             # silently dropped: timed out

    r = lab.curl("med", f"http://{WAN}:8080/", max_time=5)           # the allowed exception still works
    assert r.returncode == 0, r.stderr

    drops, text = _scrape(gw, "gateway_packets_total", verdict="drop")
    assert drops >= 1, text
    assert metric(text, "gateway_packets_total", verdict="reject") >= 1, text
    assert gw.stop() == 0


# Sends one UDP datagram or ICMP echo and reports the first ICMP unreachable that comes back, and who
# sent it: the gateway's REJECT answers from its own address, a host from the host's.
ICMP_PROBE = """
import select, socket, struct, sys, time
dst, kind = sys.argv[1], sys.argv[2]
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
if kind == "udp":
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"probe", (dst, 5353))
else:
    body = struct.pack("!BBHHH", 8, 0, 0, 77, 1) + b"probe!"
    s = sum(struct.unpack("!%dH" % (len(body) // 2), body))
    s = (s >> 16) + (s & 0xFFFF)
    s = ~(s + (s >> 16)) & 0xFFFF
    icmp.sendto(body[:2] + struct.pack("!H", s) + body[4:], (dst, 0))
deadline = time.monotonic() + 2
while time.monotonic() < deadline:
    if not select.select([icmp], [], [], 0.1)[0]:
        continue
    data, (src, _) = icmp.recvfrom(2048)
    ihl = (data[0] & 15) * 4
    if data[ihl] == 3:
        print("unreachable", data[ihl + 1], "from", src)
        break
else:
    print("nothing")
"""


def test_reject_answers_udp_and_icmp_with_icmp_unreachable_from_the_gateway(lab):
    emr = "10.10.0.20"
    before = lab.exec("guest", [sys.executable, "-c", ICMP_PROBE, emr, "udp"]).stdout.strip()
    assert before == f"unreachable 3 from {emr}", before      # no gateway: the host itself says "port closed"
    gw = lab.start_gateway(base_config())                       # guest's default is reject
    gw.wait_ready()
    udp = lab.exec("guest", [sys.executable, "-c", ICMP_PROBE, emr, "udp"]).stdout.strip()
    assert udp == "unreachable 3 from 10.30.0.1", udp           # port unreachable, from the gateway
    echo = lab.exec("guest", [sys.executable, "-c", ICMP_PROBE, emr, "icmp"]).stdout.strip()
    assert echo == "unreachable 13 from 10.30.0.1", echo        # communication administratively prohibited
    assert gw.stop() == 0


def test_killed_worker_is_restarted_and_traffic_resumes(lab):
    # fail_open off: traffic can only flow again because a worker is bound again.
    gw = lab.start_gateway(base_config(queues=1, fail_open=False))
    st = gw.wait_ready()
    assert lab.curl("lan", f"http://{WAN}/", max_time=5).returncode == 0
    old = st["workers"]["0"]
    os.kill(old, signal.SIGKILL)

    def restarted():
        pid = gw.state().get("workers", {}).get("0")
        return pid if pid and pid != old else None

    new = _wait(restarted, 10)
    assert new, gw.log()
    assert re.search(r"worker 0 .* died with signal SIGKILL", gw.log()), gw.log()

    def fetch_ok():
        return lab.curl("lan", f"http://{WAN}/", max_time=2).returncode == 0

    assert _wait(fetch_ok, 10, step=0.2), gw.log()
    restarts, text = _scrape(gw, "gateway_worker_restarts_total", worker="0")
    assert restarts >= 1, text
    assert gw.stop() == 0


def test_connection_survives_a_worker_restart(lab, tmp_path):
    """A download in progress when its worker dies: the new worker meets the flow mid-connection, maybe
    with a server packet first. Conntrack's reply-direction mark tells it who the client is, so the
    firewall judges lan -> wan (allowed), not wan -> lan (denied), and the transfer completes intact."""
    digest = random_file(lab, "slow.bin", 1 << 20)
    gw = lab.start_gateway(base_config(queues=1, fail_open=False, bypass=False))
    st = gw.wait_ready()
    lab.start_tcp_sender("wan", WAN, 9001, lab.www / "slow.bin")
    out = tmp_path / "slow.bin"
    fetch = lab.popen("lan", [sys.executable, "-m", "gateway.lab", "fetch", WAN, "9001", str(out), "30",
                              str(256 << 10)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)                                  # about a quarter of the file is through
    os.kill(st["workers"]["0"], signal.SIGKILL)
    stdout, stderr = fetch.communicate(timeout=40)
    assert fetch.returncode == 0, (stderr, gw.log())
    assert int(stdout.strip()) == 1 << 20 and sha256_of(out) == digest
    assert gw.stop() == 0


def test_fail_open_passes_traffic_while_no_worker_is_bound(lab):
    """The rules alone, nobody bound to the queue: --queue-bypass decides."""
    gw_open = GatewaySection(queues=1, fail_open=True, bypass=False)
    netfilter.install(gw_open, netfilter.QueueRange(0, 1), netns=lab.ns("gw"))
    try:
        assert lab.curl("lan", f"http://{WAN}/", max_time=5).returncode == 0
    finally:
        netfilter.remove(gw_open, netns=lab.ns("gw"))
    gw_closed = GatewaySection(queues=1, fail_open=False, bypass=False)
    netfilter.install(gw_closed, netfilter.QueueRange(0, 1), netns=lab.ns("gw"))
    try:
        assert lab.curl("lan", f"http://{WAN}/", max_time=1.5).returncode == 28
    finally:
        netfilter.remove(gw_closed, netns=lab.ns("gw"))
    assert not netfilter.installed("CLINIC_GW", netns=lab.ns("gw"))


def test_fail_open_passes_traffic_while_the_worker_is_stuck(lab):
    """A bound but stopped worker: the queue fills (queue_maxlen 4) and NFQA_CFG_F_FAIL_OPEN lets the
    kernel accept what does not fit, instead of dropping it."""
    gw = lab.start_gateway(base_config(queues=1, fail_open=True, queue_maxlen=4))
    st = gw.wait_ready()
    assert lab.ping("lan", WAN, count=1, timeout=2) == 1
    worker = st["workers"]["0"]
    os.kill(worker, signal.SIGSTOP)
    try:
        replies = lab.ping("lan", WAN, count=10, timeout=0.5)
    finally:
        os.kill(worker, signal.SIGCONT)
    assert replies >= 5, (replies, gw.log())      # at most 4 sit in the full queue
    assert gw.stop() == 0

    # Control: without the flag the kernel drops what does not fit, so nothing gets through.
    gw = lab.start_gateway(base_config(queues=1, fail_open=False, queue_maxlen=4))
    worker = gw.wait_ready()["workers"]["0"]
    os.kill(worker, signal.SIGSTOP)
    try:
        replies = lab.ping("lan", WAN, count=6, timeout=0.3)
    finally:
        os.kill(worker, signal.SIGCONT)
    assert replies == 0, replies
    # ... and the kernel's count of those drops reaches the metrics.
    # (the supervisor reads the kernel's counter periodically: wait until both drops have been read)
    assert _wait(lambda: metric(gw.metrics(), "gateway_queue_dropped_total", queue="0",
                                reason="queue_full") >= 2, 5, step=0.2), gw.metrics()
    assert gw.stop() == 0


# An IPv4 packet claiming TCP with a 3-byte TCP header: the kernel forwards it (conntrack only marks it
# invalid), our decoder refuses it.
SEND_MALFORMED = """
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
payload = b"\x01\x02\x03"
for i in range(3):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 4242 + i, 0, 64, 6, 0,
                      socket.inet_aton("10.10.0.10"), socket.inet_aton(sys.argv[1]))
    s.sendto(hdr + payload, (sys.argv[1], 0))
"""


def test_malformed_packets_are_counted_and_dropped(lab):
    gw = lab.start_gateway(base_config())
    gw.wait_ready()
    r = lab.exec("lan", [sys.executable, "-c", SEND_MALFORMED, WAN])
    assert r.returncode == 0, r.stderr
    dropped, text = _scrape(gw, "gateway_packets_total", verdict="drop", reason="malformed")
    assert dropped == 3, text
    assert gw.stop() == 0


def test_rules_removed_on_stop_and_after_a_crash(lab):
    def rules_present() -> bool:
        return "CLINIC_GW" in lab.exec("gw", ["iptables-save"], check=True).stdout

    gw = lab.start_gateway(base_config())
    gw.wait_ready()
    assert rules_present()
    assert gw.stop() == 0
    assert not rules_present()
    assert "CLINIC_GW" not in lab.exec("gw", ["ip6tables-save"]).stdout

    # A crash (SIGKILL: no cleanup) leaves the rules; the next start removes them before installing.
    gw = lab.start_gateway(base_config())
    st = gw.wait_ready()
    os.kill(st["pid"], signal.SIGKILL)
    gw.proc.wait(5)
    assert rules_present()
    assert _wait(lambda: not any(_alive(p) for p in st["workers"].values()), 5), "workers outlived the supervisor"
    gw = lab.start_gateway(base_config())
    gw.wait_ready()
    assert lab.exec("gw", ["iptables-save"]).stdout.count("-j CLINIC_GW") == 1   # the old jump is gone
    assert lab.curl("lan", f"http://{WAN}/", max_time=5).returncode == 0
    assert gw.stop() == 0
    assert not rules_present()


def test_a_second_gateway_is_refused_and_leaves_the_first_alone(lab, tmp_path):
    first = lab.start_gateway(base_config())
    first.wait_ready()
    second_cfg = base_config()
    second_cfg["gateway"]["state_dir"] = str(tmp_path / "second")
    second_cfg["metrics"]["listen"] = "127.0.0.1:9754"        # past the port check, on to the queues
    second = lab.start_gateway(second_cfg)
    assert second.proc.wait(30) == 1
    assert "another process bound to this queue" in second.log(), second.log()
    assert "CLINIC_GW" in lab.exec("gw", ["iptables-save"]).stdout
    assert lab.curl("lan", f"http://{WAN}:445/", max_time=5).returncode == 7   # first still rejects
    # Same state directory: refused before anything of the first (its metrics files) is touched.
    third = lab.start_gateway(base_config())
    assert third.proc.wait(30) == 2
    assert "uses state directory" in third.log(), third.log()
    assert metric(first.metrics(), "gateway_workers_up") == 2
    assert first.stop() == 0


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_metrics_endpoint_reports_traffic(lab):
    gw = lab.start_gateway(base_config())
    gw.wait_ready()
    assert lab.curl("lan", f"http://{WAN}/", max_time=5).returncode == 0
    lab.curl("med", f"http://{WAN}/", max_time=1)
    accepted, text = _scrape(gw, "gateway_packets_total", verdict="accept")
    assert accepted >= 5, text
    assert metric(text, "gateway_bytes_total", verdict="accept") > accepted * 40, text
    assert metric(text, "gateway_packets_total", verdict="drop", reason="firewall") >= 1, text
    assert metric(text, "gateway_workers_up") == 2, text
    assert metric(text, "gateway_packet_processing_seconds_count") >= accepted, text
    assert "gateway_flows_active{" in text, text
    assert 'gateway_queue_dropped_total{queue="0",reason="queue_full"} 0.0' in text, text
    assert gw.stop() == 0


@pytest.mark.skipif(not conntrack_available(), reason="conntrack tool missing (apt-get install conntrack)")
def test_long_download_is_bypassed_and_arrives_intact(lab, tmp_path):
    """A bulk transfer with no application protocol: once the stream stage has seen `depth` bytes and the
    app layer gave up, every stage is done, the worker marks the flow and the kernel forwards the rest.
    (An empty signature set keeps the IDS stage, which waits for both directions, out of it.)"""
    digest = random_file(lab, "long.bin", 8 << 20)
    no_rules = tmp_path / "signatures"
    (no_rules / "rules").mkdir(parents=True)
    cfg = base_config(bypass=True)
    cfg["stream"] = {"depth": 4096}     # inspect the first 4 KB per direction, then hand the flow to the kernel
    gw = lab.start_gateway(cfg, signatures=str(no_rules))
    gw.wait_ready()
    lab.start_tcp_sender("wan", WAN, 9000, lab.www / "long.bin")
    out = tmp_path / "long.bin"
    assert lab.tcp_fetch("lan", WAN, 9000, out, timeout=30) == 8 << 20
    assert sha256_of(out) == digest

    bypassed, text = _scrape(gw, "gateway_bypassed_flows_total")
    assert bypassed >= 1, text
    # The kernel forwarded the bulk: 8 MB is ~5,700 full segments plus ACKs; the workers saw a small part
    # (the packets before the decision, and those already queued when the conntrack mark was set).
    seen = metric(text, "gateway_packets_total")
    assert 0 < seen < 2500, text
    ct = lab.exec("gw", ["conntrack", "-L", "-p", "tcp", "--dport", "9000"], check=True).stdout
    marks = [int(m) for m in re.findall(r"mark=(\d+)", ct)]
    assert any(m & 0x100000 for m in marks), ct
    assert gw.stop() == 0


THREAT_RULES = """\
drop tcp any any -> any 80 (msg:"test blocked"; flow:to_server,established; content:"GET /blocked-path"; \
classtype:trojan-activity; sid:9100001; rev:1;)
alert tcp any any -> any 80 (msg:"test watched"; flow:to_server,established; content:"GET /watched-path"; \
priority:1; sid:9100002; rev:1;)
"""


def test_threat_metrics_and_eve_reopen_on_sighup(lab, tmp_path):
    """Blocked/allowed alerts and firewall blocks show as metrics; after logrotate's rename, SIGHUP makes
    every worker continue in a new eve.json and no line is lost or torn."""
    sigs = tmp_path / "signatures"
    (sigs / "rules").mkdir(parents=True)
    (sigs / "rules" / "test.rules").write_text(THREAT_RULES)
    gw = lab.start_gateway(base_config(), signatures=str(sigs))
    st = gw.wait_ready()
    assert lab.curl("lan", f"http://{WAN}/blocked-path", max_time=2).returncode != 0     # IPS drops it
    assert lab.curl("lan", f"http://{WAN}/watched-path", max_time=5).returncode == 0     # 404, but through
    lab.curl("med", f"http://{WAN}/", max_time=1)                                          # zone default: deny
    blocked, text = _scrape(gw, "gateway_alerts_total", action="blocked")
    assert blocked >= 1, text
    assert metric(text, "gateway_alerts_total", action="blocked", category="A Network Trojan was detected") >= 1
    assert _wait(lambda: metric(gw.metrics(), "gateway_alerts_total", action="allowed", severity="1") >= 1, 3)
    text = gw.metrics()
    assert metric(text, "gateway_firewall_blocks_total", rule="default:medical", action="drop") >= 1, text
    assert metric(text, "gateway_signatures_loaded", kind="ids_rules") == 2, text
    assert metric(text, "gateway_workers_configured") == 2, text

    assert _wait(lambda: any(e.get("event_type") == "alert" for e in gw.eve_events()), 3)
    rotated = gw.eve_path.with_name("eve.json.1")
    gw.eve_path.rename(rotated)                       # what logrotate does (without copytruncate)
    os.kill(st["pid"], signal.SIGHUP)
    assert _wait(lambda: "workers reopen the EVE file" in gw.log(), 3), gw.log()
    time.sleep(1.2)                                   # both workers pass a fold (every 0.5 s)
    assert lab.curl("lan", f"http://{WAN}/watched-path?after", max_time=5).returncode == 0
    assert _wait(lambda: any(e.get("event_type") == "alert" for e in gw.eve_events()), 3), gw.log()
    new = [json.loads(line) for line in gw.eve_path.read_text().splitlines()]   # whole lines only
    old = [json.loads(line) for line in rotated.read_text().splitlines()]
    assert {e["alert"]["signature_id"] for e in old if e.get("event_type") == "alert"} >= {9100001, 9100002}
    assert [e["alert"]["signature_id"] for e in new if e.get("event_type") == "alert"] == [9100002]
    assert gw.stop() == 0
    assert gw.proc.returncode == 0 and "cannot reopen" not in gw.log()
