"""config/grafana-dashboard.json and config/prometheus-rules.yml: they parse, their PromQL is valid
(promtool), every gateway_* series and label they use is one gateway/metrics.py exports, and the alerts
fire when they should (promtool test rules on tests/data/prometheus-rules-test.yml)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML missing (pip install pyyaml; the `dev` extra should have it)")

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "config" / "prometheus-rules.yml"
DASHBOARD = REPO / "config" / "grafana-dashboard.json"
RULE_TESTS = REPO / "tests" / "data" / "prometheus-rules-test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (Debian package `prometheus`)")

# Labels every scraped series gets from Prometheus, and the histogram's bucket label.
TARGET_LABELS = {"instance", "job", "le"}
SERIES = re.compile(r"\b(gateway_[a-z_]+)(\{[^}]*\})?")
SERIES_NAME = re.compile(r"\b(gateway_[a-z_]+)")
MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"')


def exported() -> dict[str, set[str]]:
    """Series name -> label names, from the real Metrics object (fresh interpreter: multiprocess mode)."""
    code = """
import json, sys, tempfile
from gateway.metrics import prepare_multiproc_dir, Metrics
prepare_multiproc_dir(tempfile.mkdtemp() + "/prom")
m = Metrics()
out = {}
for metric in vars(m).values():
    if not hasattr(metric, "_labelnames"):
        continue
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}[metric._type]
    for s in suffixes:
        out[metric._name + s] = list(metric._labelnames)
print(json.dumps(out))
"""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
                       env=env, check=True)
    return {name: set(labels) for name, labels in json.loads(r.stdout).items()}


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard_panels() -> list[dict]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard_panels() for t in p["targets"]]


def check_names(where: str, expr: str, metrics: dict[str, set[str]]) -> list[str]:
    """Problems with the gateway_* series an expression selects: unknown names, unknown labels."""
    problems = []
    for m in SERIES.finditer(expr):
        name, selector = m.group(1), m.group(2) or ""
        if name not in metrics:
            problems.append(f"{where}: {name} is not exported by gateway/metrics.py")
            continue
        for label in MATCHER.findall(selector):
            if label not in metrics[name] | TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label!r}")
    return problems


@pytest.fixture(scope="module")
def metrics():
    return exported()


def test_rules_parse_and_say_what_to_do():
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    for want in ("GatewayDown", "GatewayWorkersDown", "GatewayQueueDrops", "GatewayWorkerRestarting",
                 "ThreatBlocked", "HighSeverityThreatAllowed", "MalformedFlood"):
        assert want in names
    for r in rules():
        assert r["labels"]["severity"] in ("critical", "warning", "info"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def test_every_series_the_rules_and_dashboard_use_is_exported(metrics):
    problems = []
    used = set()
    for r in rules():
        problems += check_names(f"rule {r['alert']}", r["expr"], metrics)
        used |= set(SERIES_NAME.findall(r["expr"]))
    for title, expr in dashboard_exprs():
        problems += check_names(f"panel {title!r}", expr, metrics)
        used |= set(SERIES_NAME.findall(expr))
    assert not problems, "\n".join(problems)
    # The threat counters are what the dashboard is for: they must be on it.
    for name in ("gateway_alerts_total", "gateway_firewall_blocks_total", "gateway_queue_dropped_total",
                 "gateway_packet_processing_seconds_bucket", "gateway_workers_up", "gateway_worker_restarts_total"):
        assert name in used


def test_the_name_check_catches_a_typo(metrics):
    assert check_names("x", 'rate(gateway_alert_total{action="blocked"}[5m])', metrics)
    assert check_names("x", 'rate(gateway_alerts_total{signature_id="1"}[5m])', metrics)
    assert not check_names("x", 'rate(gateway_alerts_total{action="blocked",instance=~"a"}[5m])', metrics)


def test_dashboard_is_importable_and_serves_many_clinics():
    d = json.loads(DASHBOARD.read_text())
    assert d["uid"] and d["title"] and 36 <= d["schemaVersion"] <= 41
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["multi"] and variables["instance"]["includeAll"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard_panels():
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
    titles = " ".join(p["title"] for p in dashboard_panels())
    for want in ("Threats blocked", "Firewall blocks by rule", "Packets by verdict", "processing time",
                 "Flows", "Queue drops", "Worker restarts", "Workers up"):
        assert want in titles


@needs_promtool
def test_promtool_checks_the_rules():
    r = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_dashboard_promql_is_valid(tmp_path):
    """promtool has no expression checker: wrap each panel query in a recording rule and check those."""
    recording = []
    for i, (title, expr) in enumerate(dashboard_exprs()):
        expr = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
        recording.append({"record": f"dashboard:panel_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_alerts_fire_when_they_should(tmp_path):
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)       # see the header of prometheus-rules-test.yml
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(doc))
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == ["../../config/prometheus-rules.yml"]
    tests["rule_files"] = ["rules.yml"]
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))
    fired = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert fired == {r["alert"] for r in rules()}         # every rule has a case where it fires
    r = subprocess.run([PROMTOOL, "test", "rules", "tests.yml"], check=False, capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
