"""gateway/metrics.py: multiprocess Prometheus counters folded from Inspector counts, off the hot path.

prometheus_client picks its value backend when it is first imported, from PROMETHEUS_MULTIPROC_DIR, so
each scenario runs in a fresh interpreter (as the supervisor does)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.metrics import PacketTimer, QueueDropTracker, read_queue_stats
from tests.labhelp import metric

REPO = Path(__file__).resolve().parent.parent


def run_py(code: str, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(tmp_path)], capture_output=True,
                       text=True, timeout=60, cwd=REPO, env=env, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_fold_counts_verdicts_reasons_bytes_and_bypassed_flows(tmp_path):
    out = run_py("""
        import sys
        from pathlib import Path
        from gateway.metrics import prepare_multiproc_dir, Metrics, WorkerCounters, scrape_text
        from gateway.pipeline import VERDICT_NAMES, Verdict
        prepare_multiproc_dir(Path(sys.argv[1]) / "prom")
        m = Metrics()
        w = WorkerCounters(m, "0", VERDICT_NAMES)
        w.fold({(Verdict.ACCEPT, "inspected"): [10, 15000], (Verdict.DROP, "malformed"): [3, 120]})
        # first packet of two bypassed flows carries the deciding reason, later ones "bypass"
        w.fold({(Verdict.ACCEPT, "inspected"): [1, 100], (Verdict.BYPASS, "inspected"): [2, 200],
                (Verdict.BYPASS, "bypass"): [7, 700]})
        w.set_flows(5)
        print(scrape_text())
    """, tmp_path)
    assert metric(out, "gateway_packets_total", worker="0", verdict="accept", reason="inspected") == 11
    assert metric(out, "gateway_bytes_total", verdict="accept") == 15100
    assert metric(out, "gateway_packets_total", verdict="drop", reason="malformed") == 3
    assert metric(out, "gateway_bytes_total", verdict="drop", reason="malformed") == 120
    assert metric(out, "gateway_packets_total", verdict="bypass") == 9
    assert metric(out, "gateway_bypassed_flows_total", worker="0") == 2
    assert metric(out, "gateway_flows_active", worker="0") == 5


def test_workers_in_other_processes_are_summed_and_dead_gauges_dropped(tmp_path):
    out = run_py("""
        import os, sys
        from pathlib import Path
        from gateway.metrics import prepare_multiproc_dir, Metrics, WorkerCounters, scrape_text, mark_dead
        from gateway.pipeline import VERDICT_NAMES, Verdict
        prepare_multiproc_dir(Path(sys.argv[1]) / "prom")
        m = Metrics()
        pids = []
        for i in range(2):
            pid = os.fork()
            if pid == 0:
                w = WorkerCounters(m, str(i), VERDICT_NAMES)
                w.fold({(Verdict.ACCEPT, "inspected"): [100 + i, 1000]})
                w.set_flows(3)
                m.workers_up.set(1)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        print(scrape_text())
        print("----")
        mark_dead(pids[0])
        print(scrape_text())
    """, tmp_path)
    before, after = out.split("----")
    assert metric(before, "gateway_packets_total", worker="0") == 100
    assert metric(before, "gateway_packets_total", worker="1") == 101
    assert metric(before, "gateway_workers_up") == 2
    # A dead worker's counters stay (they happened); its live gauges go.
    assert metric(after, "gateway_packets_total") == 201
    assert metric(after, "gateway_workers_up") == 1
    assert metric(after, "gateway_flows_active", worker="0") == 0


def test_packet_timer_folds_into_the_histogram(tmp_path):
    out = run_py("""
        import sys
        from pathlib import Path
        from gateway.metrics import prepare_multiproc_dir, Metrics, WorkerCounters, scrape_text
        from gateway.pipeline import VERDICT_NAMES
        prepare_multiproc_dir(Path(sys.argv[1]) / "prom")
        w = WorkerCounters(Metrics(), "1", VERDICT_NAMES)
        for s in (1e-6, 3e-6, 3e-6, 40e-6, 2.0):
            w.timer.add(s)
        w.fold({})
        w.timer.add(1e-6)
        w.fold({})
        print(scrape_text())
    """, tmp_path)
    name = "gateway_packet_processing_seconds"
    assert metric(out, name + "_count", worker="1") == 6
    assert metric(out, name + "_sum", worker="1") == pytest.approx(2.000048, rel=1e-6)
    assert metric(out, name + "_bucket", worker="1", le="2e-06") == 2
    assert metric(out, name + "_bucket", worker="1", le="5e-06") == 4
    assert metric(out, name + "_bucket", worker="1", le="5e-05") == 5
    assert metric(out, name + "_bucket", worker="1", le="+Inf") == 6


def test_prepare_wipes_old_files_and_refuses_a_late_call(tmp_path):
    stale = tmp_path / "prom"
    stale.mkdir()
    (stale / "counter_999.db").write_bytes(b"old")
    out = run_py("""
        import sys
        from pathlib import Path
        from gateway.metrics import prepare_multiproc_dir, MetricsError
        d = prepare_multiproc_dir(Path(sys.argv[1]) / "prom")
        print(sorted(p.name for p in d.iterdir()))
        import prometheus_client.values
        try:
            prepare_multiproc_dir(Path(sys.argv[1]) / "other")
        except MetricsError as e:
            print("refused:", e)
    """, tmp_path)
    assert "[]" in out
    assert "refused:" in out and "imported before" in out


def test_http_endpoint_serves_the_aggregate(tmp_path):
    out = run_py("""
        import sys, urllib.request
        from pathlib import Path
        from gateway.metrics import prepare_multiproc_dir, Metrics, serve
        prepare_multiproc_dir(Path(sys.argv[1]) / "prom")
        m = Metrics()
        m.restarts.labels("0").inc()
        server, _ = serve("127.0.0.1:0")
        port = server.server_port
        print(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
    """, tmp_path)
    assert metric(out, "gateway_worker_restarts_total", worker="0") == 1


def test_queue_stats_parse_and_drop_deltas(tmp_path):
    f = tmp_path / "nfnetlink_queue"
    f.write_text("    0  12345     0 2 65535     5     1      812  1\n"
                 "    1      0     3 2 65535     0     0       40  1\n"
                 "garbage line\n")
    stats = read_queue_stats(str(f))
    assert stats[0] == {"portid": 12345, "waiting": 0, "dropped": 5, "user_dropped": 1, "id": 812}
    assert stats[1]["waiting"] == 3
    assert read_queue_stats(str(tmp_path / "missing")) == {}

    class Child:
        def __init__(self):
            self.value = 0

        def inc(self, n):
            self.value += n

    class FakeCounter:       # only the labels().inc() surface QueueDropTracker uses
        def __init__(self):
            self.children = {}

        def labels(self, *key):
            return self.children.setdefault(key, Child())

    class M:
        queue_dropped = FakeCounter()

    t = QueueDropTracker(M)
    t.update(stats)
    t.update({0: dict(stats[0], dropped=9)})
    t.update({0: dict(stats[0], dropped=2)})      # queue re-created (worker restarted): counter reset
    assert M.queue_dropped.children[("0", "queue_full")].value == 5 + 4 + 2
    assert M.queue_dropped.children[("0", "user")].value == 1
    assert M.queue_dropped.children[("1", "queue_full")].value == 0


def test_packet_timer_buckets():
    t = PacketTimer((1.0, 2.0))
    for s in (0.5, 1.0, 1.5, 3.0):
        t.add(s)
    assert t.counts == [2, 1, 1]          # le=1 is inclusive, like Prometheus
    assert t.total == 6.0


def test_event_counter_counts_threats_and_passes_every_event_on(tmp_path):
    """Alerts, firewall drops and anomalies become counters with bounded labels; every event still
    reaches the EVE writer; other event types count nothing."""
    out = run_py("""
        import json, sys
        from pathlib import Path
        from gateway.metrics import prepare_multiproc_dir, Metrics, EventCounter, scrape_text
        prepare_multiproc_dir(Path(sys.argv[1]) / "prom")
        seen = []
        c = EventCounter(Metrics(), "2", seen.append)
        trojan = "A Network Trojan was detected"
        for action, sev in (("blocked", 1), ("blocked", 1), ("allowed", 1), ("allowed", 3)):
            c({"event_type": "alert", "alert": {"action": action, "signature_id": 2000001, "signature": "x",
                                                 "category": trojan, "severity": sev}})
        c({"event_type": "alert", "alert": {"action": "allowed", "category": "", "severity": 255}})
        c({"event_type": "drop", "drop": {"reason": "firewall", "action": "drop", "rule": "no-smb-out"}})
        c({"event_type": "drop", "drop": {"reason": "firewall", "action": "reject", "rule": "default:lan"}})
        c({"event_type": "drop", "drop": {"reason": "rules"}, "alert": {"action": "blocked"}})
        c({"event_type": "anomaly", "anomaly": {"type": "decode", "event": "truncated"}})
        c({"event_type": "anomaly", "anomaly": {"type": "applayer", "app_proto": "http"}})
        c({"event_type": "flow", "flow": {}})
        c({"event_type": "alert", "alert": None})              # odd events: counted as allowed, never raise
        c({"event_type": "alert", "alert": {"action": "allowed", "category": ["x"], "severity": {}}})
        print("before-fold", scrape_text().count("gateway_alerts_total{"))
        c.fold()
        c.fold()                                               # nothing pending: adds nothing
        print(scrape_text())
        print("passed-on", len(seen), "errors", c.errors)
    """, tmp_path)
    assert "before-fold 0" in out                  # counted in plain ints until the fold
    assert "passed-on 13 errors 0" in out
    trojan = "A Network Trojan was detected"
    assert metric(out, "gateway_alerts_total", worker="2", action="blocked", category=trojan, severity="1") == 2
    assert metric(out, "gateway_alerts_total", action="allowed", severity="1") == 1
    assert metric(out, "gateway_alerts_total", action="allowed", severity="3") == 1
    assert metric(out, "gateway_alerts_total", category="unclassified", severity="other") == 2
    assert metric(out, "gateway_alerts_total", category="['x']", severity="other") == 1
    assert metric(out, "gateway_alerts_total") == 7
    assert metric(out, "gateway_firewall_blocks_total", worker="2", rule="no-smb-out", action="drop") == 1
    assert metric(out, "gateway_firewall_blocks_total", rule="default:lan", action="reject") == 1
    assert metric(out, "gateway_anomalies_total", type="decode") == 1
    assert metric(out, "gateway_anomalies_total", type="applayer") == 1
    assert 'signature_id' not in out and "2000001" not in out


def test_event_counter_bounds_label_values(tmp_path):
    out = run_py("""
        import sys
        from pathlib import Path
        from gateway.metrics import prepare_multiproc_dir, Metrics, EventCounter, MAX_LABEL_VALUES, scrape_text
        prepare_multiproc_dir(Path(sys.argv[1]) / "prom")
        c = EventCounter(Metrics(), "0")                       # no EVE file: still counts
        for i in range(MAX_LABEL_VALUES + 50):
            c({"event_type": "drop", "drop": {"reason": "firewall", "action": "drop", "rule": f"r{i}"}})
        c({"event_type": "drop", "drop": {"reason": "firewall", "action": "drop", "rule": "x" * 5000}})
        c.fold()
        text = scrape_text()
        print("series", text.count("gateway_firewall_blocks_total{"))
        print(text)
    """, tmp_path)
    from gateway.metrics import MAX_LABEL_VALUES

    assert f"series {MAX_LABEL_VALUES + 1}" in out
    assert metric(out, "gateway_firewall_blocks_total", rule="other") == 51
    assert metric(out, "gateway_firewall_blocks_total") == MAX_LABEL_VALUES + 51


def test_supervisor_gauges_and_build_info_survive_forked_workers(tmp_path):
    """Set once in the supervisor; forked workers writing their own files leave them as they are."""
    out = run_py("""
        import os, sys
        from pathlib import Path
        from gateway.metrics import prepare_multiproc_dir, Metrics, scrape_text
        prepare_multiproc_dir(Path(sys.argv[1]) / "prom")
        m = Metrics()
        m.signatures_loaded.labels("ids_rules").set(7)         # what set_signature_counts does
        m.signatures_rejected.labels("ids_rules").set(2)
        m.set_build_info()
        m.workers_configured.set(2)
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                m.workers_up.set(1)
                os._exit(0)
            os.waitpid(pid, 0)
        print(scrape_text())
    """, tmp_path)
    from gateway import __version__

    assert metric(out, "gateway_signatures_loaded", kind="ids_rules") == 7
    assert metric(out, "gateway_signatures_rejected", kind="ids_rules") == 2
    assert metric(out, "gateway_build_info", version=__version__) == 1
    assert metric(out, "gateway_workers_configured") == 2


def test_real_inspector_events_become_threat_counters(tmp_path):
    """The clinic config's firewall, an IPS rule and a malformed packet through the real Inspector with
    the EventCounter as its sink: the counters read the fields the stages really write."""
    rules = tmp_path / "t.rules"
    rules.write_text('drop udp any any -> any 53 (msg:"bad dns"; content:"evil"; classtype:trojan-activity; '
                     'priority:1; sid:1000001; rev:1;)\n'
                     'alert udp any any -> any 53 (msg:"odd"; content:"odd"; sid:1000002; rev:1;)\n'
                     'alert udp any any -> any 53 (msg:"broken"; nosuchkeyword; sid:1000003; rev:1;)\n')
    out = run_py(f"""
        import json, os, sys
        from pathlib import Path
        from gateway.metrics import prepare_multiproc_dir, Metrics, EventCounter, scrape_text
        prepare_multiproc_dir(Path(sys.argv[1]) / "prom")
        os.environ["GATEWAY_HS_CACHE"] = str(Path(sys.argv[1]) / "hs")
        from gateway import config
        from gateway.pipeline import Inspector
        from gateway.signatures import SignatureSet
        from gateway.stages import build_stages
        from tests.conftest import tcp, udp
        cfg = config.load("config/gateway.toml")
        sigs = SignatureSet(root=Path(sys.argv[1]), rule_files=(Path({str(rules)!r}),), yara_files=(), lists={{}},
                            mail_files=())
        stages = build_stages(cfg, sigs, ips=True)
        m = Metrics()
        m.set_signature_counts(stages)
        events = []
        c = EventCounter(m, "0", events.append)
        insp = Inspector(cfg, stages, sink=c)
        lan, web = "10.10.0.10", "198.18.0.99"
        insp.process(tcp(web, lan, 40000, 22, "S"), 1.0, "gw-wan", "gw-lan")       # inbound: default drop
        insp.process(udp(lan, web, 40001, 53, b"evil.example"), 1.0, "gw-lan", "gw-wan")
        insp.process(udp(lan, web, 40002, 53, b"odd.example"), 1.0, "gw-lan", "gw-wan")
        insp.process(b"\\x45\\x00\\x00", 1.0, "gw-lan", "gw-wan")                 # truncated IPv4
        c.fold()
        print(json.dumps([e for e in events if e["event_type"] == "drop"]))
        print(scrape_text())
    """, tmp_path)
    assert metric(out, "gateway_alerts_total", worker="0", action="blocked", severity="1",
                  category="A Network Trojan was detected") == 1
    assert metric(out, "gateway_alerts_total", action="allowed", category="unclassified") == 1
    # the IDS also writes a Suricata-style `drop` record (reason "rules") for its blocked packet: not a
    # firewall block, its alert already counts
    assert metric(out, "gateway_firewall_blocks_total", rule="default:wan", action="drop") == 1
    assert metric(out, "gateway_firewall_blocks_total") == 1
    assert metric(out, "gateway_anomalies_total", type="decode") == 1
    assert metric(out, "gateway_signatures_loaded", kind="ids_rules") == 2
    assert metric(out, "gateway_signatures_rejected", kind="ids_rules") == 1
