"""Prometheus metrics in prometheus_client's multiprocess mode.

The supervisor calls `prepare_multiproc_dir(path)` BEFORE anything imports prometheus_client (the value
backend is chosen at import time from PROMETHEUS_MULTIPROC_DIR), then `Metrics()`, then `serve()`.
Workers are forked from the supervisor and write their own mmap files in that directory; the HTTP
endpoint aggregates them with MultiProcessCollector. Multiprocess mode allows no Info/Enum metrics and
no custom collectors, so everything here is a Counter, a Gauge with a multiprocess_mode, or a Histogram.

Nothing here runs per packet: a worker keeps plain ints (Inspector.counts, PacketTimer) and folds them
into these metrics every `FOLD_INTERVAL` seconds.

    gateway_packets_total{worker,verdict,reason}      packets by verdict and reason (reason="malformed", ...)
    gateway_bytes_total{worker,verdict,reason}
    gateway_packet_processing_seconds{worker}         histogram of Inspector.process time per packet
    gateway_flows_active{worker}                      flows in the worker's table
    gateway_bypassed_flows_total{worker}              flows handed to the kernel (conntrack bypass mark)
    gateway_queue_dropped_total{queue,reason}         kernel queue drops: reason="queue_full" | "user"
    gateway_worker_restarts_total{worker}             workers the supervisor had to restart
    gateway_workers_up                                workers currently bound to their queue
    gateway_workers_configured                        workers the supervisor runs (one per queue)
    gateway_eve_events_total{worker}                  EVE events written
    gateway_nfqueue_errors_total{worker}              error replies from nfnetlink_queue
    gateway_alerts_total{worker,action,category,severity}  IDS alerts (action "blocked" | "allowed")
    gateway_firewall_blocks_total{worker,rule,action} firewall `drop` events (drop.reason "firewall";
                                                      action "drop" | "reject")
    gateway_anomalies_total{worker,type}              `anomaly` events logged (type "decode" | "applayer")
    gateway_signatures_loaded{kind}                   signatures the running stages were built from
    gateway_signatures_rejected{kind}                 signatures refused at load (`gateway rules check`)
    gateway_build_info{version}                       1

Threat counters come from the events, not the packets (EventCounter wraps the worker's EVE sink), so
they cost nothing per clean packet and work without an EVE file. Their labels are bounded: category is
the classification.config description (a few dozen), severity 1..4 else "other", firewall rules are
operator config; every label keeps at most MAX_LABEL_VALUES values per worker, then "other". There is
deliberately no signature-id label (unbounded, and multiprocess mode allows no top-N collector):
per-signature detail lives in EVE (alert.signature_id). A firewall rule with `log = false` emits no
event, so its blocks show only in gateway_packets_total{reason="firewall"}. Anomaly events are rate-capped
by their producers; the exact count of malformed packets is gateway_packets_total{reason="malformed"}.
"""
from __future__ import annotations

import os
import shutil
import sys
from bisect import bisect_left
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
FOLD_INTERVAL = 0.5
# Per-packet processing time buckets (seconds): 2 us .. 50 ms.
TIME_BUCKETS = (2e-6, 5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 5e-3, 50e-3)


class MetricsError(RuntimeError):
    pass


def prepare_multiproc_dir(path: str | Path) -> Path:
    """Wipe and create the multiprocess directory and point PROMETHEUS_MULTIPROC_DIR at it.
    Refuses if prometheus_client was already imported without it (its counters would be per-process)."""
    path = Path(path)
    if "prometheus_client.values" in sys.modules and os.environ.get(ENV) != str(path):
        raise MetricsError(f"prometheus_client was imported before {ENV} was set to {path}; "
                           "call prepare_multiproc_dir first")
    if path.exists():
        shutil.rmtree(path)     # old mmap files of dead processes would be summed in forever
    path.mkdir(parents=True, mode=0o750)
    os.environ[ENV] = str(path)
    return path


class Metrics:
    """The metric objects. Create once in the supervisor, after prepare_multiproc_dir; forked workers
    inherit them (prometheus_client notices the new pid and opens the worker's own files)."""

    def __init__(self, registry=None):
        from prometheus_client import Counter, Gauge, Histogram

        if not os.environ.get(ENV):
            raise MetricsError(f"{ENV} is not set: call prepare_multiproc_dir first")
        kw = {"registry": registry} if registry is not None else {}
        self.packets = Counter("gateway_packets", "Packets by verdict and reason",
                               ["worker", "verdict", "reason"], **kw)
        self.bytes = Counter("gateway_bytes", "Bytes by verdict and reason", ["worker", "verdict", "reason"], **kw)
        self.packet_seconds = Histogram("gateway_packet_processing_seconds",
                                        "Time spent in Inspector.process per packet", ["worker"],
                                        buckets=TIME_BUCKETS, **kw)
        self.flows_active = Gauge("gateway_flows_active", "Flows in the worker's flow table", ["worker"],
                                  multiprocess_mode="livesum", **kw)
        self.bypassed = Counter("gateway_bypassed_flows", "Flows handed to the kernel with the bypass mark",
                                ["worker"], **kw)
        self.queue_dropped = Counter("gateway_queue_dropped", "Packets the kernel queue dropped",
                                     ["queue", "reason"], **kw)
        self.restarts = Counter("gateway_worker_restarts", "Workers restarted after they died", ["worker"], **kw)
        self.workers_up = Gauge("gateway_workers_up", "Workers bound to their queue",
                                multiprocess_mode="livesum", **kw)
        self.workers_configured = Gauge("gateway_workers_configured", "Workers the supervisor runs, one per queue",
                                        multiprocess_mode="max", **kw)
        self.eve_events = Counter("gateway_eve_events", "EVE JSON events written", ["worker"], **kw)
        self.nfq_errors = Counter("gateway_nfqueue_errors", "Error replies from nfnetlink_queue", ["worker"],
                                  **kw)
        self.alerts = Counter("gateway_alerts", "IDS alerts by action (blocked/allowed), category and severity",
                              ["worker", "action", "category", "severity"], **kw)
        self.firewall_blocks = Counter("gateway_firewall_blocks", "Firewall drop events by rule and action",
                                       ["worker", "rule", "action"], **kw)
        self.anomalies = Counter("gateway_anomalies", "Anomaly events logged, by type", ["worker", "type"], **kw)
        # Set by the supervisor alone; "max" so a forked worker's copy (never set) cannot add to it.
        self.signatures_loaded = Gauge("gateway_signatures_loaded", "Signatures loaded into the running stages",
                                       ["kind"], multiprocess_mode="max", **kw)
        self.signatures_rejected = Gauge("gateway_signatures_rejected", "Signatures refused at load",
                                         ["kind"], multiprocess_mode="max", **kw)
        self.build_info = Gauge("gateway_build_info", "Always 1; the version label says which build runs",
                                ["version"], multiprocess_mode="max", **kw)

    def set_build_info(self) -> None:
        from . import __version__

        self.build_info.labels(__version__).set(1)

    def set_signature_counts(self, stages) -> None:
        """Loaded/rejected counts of the stages the supervisor built (an IDS stage keeps its RuleSet)."""
        for stage in stages:
            ruleset = getattr(stage, "ruleset", None)
            if ruleset is None:
                continue
            kind = f"{getattr(stage, 'name', 'stage')}_rules"
            self.signatures_loaded.labels(kind).set(len(getattr(ruleset, "rules", ())))
            self.signatures_rejected.labels(kind).set(len(getattr(ruleset, "rejected", ())))


class PacketTimer:
    """Per-packet timing kept as plain ints on the hot path, folded into the histogram off it."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = TIME_BUCKETS):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)   # last slot: above the largest bound (+Inf)
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def fold_into(self, child) -> None:
        """Add the accumulated observations to a Histogram child and reset. Uses the child's bucket
        values directly (prometheus_client keeps non-cumulative per-bucket values and cumulates at
        collection); falls back to one observe() per observation if that layout ever changes."""
        counts, total = self.counts, self.total
        if not any(counts):
            return
        buckets = getattr(child, "_buckets", None)
        sum_value = getattr(child, "_sum", None)
        if buckets is not None and sum_value is not None and len(buckets) == len(counts):
            for value, n in zip(buckets, counts):
                if n:
                    value.inc(n)
            sum_value.inc(total)
        else:  # pragma: no cover - only on an incompatible prometheus_client
            mean = total / sum(counts)
            for i, n in enumerate(counts):
                for _ in range(min(n, 10000)):
                    child.observe(self.bounds[i] if i < len(self.bounds) else mean)
        self.counts = [0] * len(counts)
        self.total = 0.0


class WorkerCounters:
    """A worker's metric children with its label fixed; `fold()` adds a take_counts() result."""

    def __init__(self, metrics: Metrics, worker: str, verdict_names: tuple[str, ...]):
        self.metrics = metrics
        self.worker = worker
        self.names = verdict_names
        self.timer = PacketTimer()
        self._hist = metrics.packet_seconds.labels(worker)
        self._flows = metrics.flows_active.labels(worker)
        self._bypassed = metrics.bypassed.labels(worker)
        self._eve = metrics.eve_events.labels(worker)
        self._nfq_errors = metrics.nfq_errors.labels(worker)
        self._children: dict[tuple[int, str], tuple] = {}

    def fold(self, counts: dict[tuple[int, str], list[int]], bypass_verdict: int = 3) -> int:
        """Add per-(verdict, reason) [packets, bytes] to the counters. Returns the number of flows
        newly bypassed: the Inspector's first BYPASS of a flow carries the deciding stage's reason,
        later packets of that flow carry reason "bypass"."""
        new_bypassed = 0
        for key, (npkts, nbytes) in counts.items():
            children = self._children.get(key)
            if children is None:
                verdict, reason = key
                name = self.names[verdict] if 0 <= verdict < len(self.names) else str(verdict)
                children = (self.metrics.packets.labels(self.worker, name, reason),
                            self.metrics.bytes.labels(self.worker, name, reason))
                self._children[key] = children
            children[0].inc(npkts)
            children[1].inc(nbytes)
            if key[0] == bypass_verdict and key[1] != "bypass":
                new_bypassed += npkts
        if new_bypassed:
            self._bypassed.inc(new_bypassed)
        self.timer.fold_into(self._hist)
        return new_bypassed

    def set_flows(self, n: int) -> None:
        self._flows.set(n)

    def add_eve(self, n: int) -> None:
        if n:
            self._eve.inc(n)

    def add_nfq_errors(self, n: int) -> None:
        if n:
            self._nfq_errors.inc(n)


MAX_LABEL_VALUES = 64          # distinct values one label may take per worker before "other"
MAX_LABEL_CHARS = 120
SEVERITIES = ("1", "2", "3", "4")
_COUNTED = frozenset(("alert", "drop", "anomaly"))
_MISSING = object()


class EventCounter:
    """The sink the worker gives the Inspector: passes each event on (to EveWriter, or nowhere) and counts
    alerts, firewall drops and anomalies in plain dicts; `fold()` adds them to the counters off the packet
    path. Never raises on an odd event: a counter must not cost an event or a packet."""

    def __init__(self, metrics: Metrics, worker: str, sink=None):
        self.metrics = metrics
        self.worker = worker
        self.sink = sink
        self.errors = 0
        self._pending: dict[tuple, int] = {}
        self._children: dict[tuple, object] = {}
        self._seen: dict[str, set[str]] = {"category": set(), "rule": set(), "type": set()}
        self._keys: dict[tuple, tuple | None] = {}

    def __call__(self, event: dict) -> None:
        if self.sink is not None:
            self.sink(event)
        kind = event.get("event_type")
        if kind not in _COUNTED:
            return
        try:
            body = event.get(kind) or {}
            # The raw fields that decide the labels; most events repeat a few combinations.
            raw = (kind, body.get("action"), body.get("category"), body.get("severity"), body.get("rule"),
                   body.get("reason"), body.get("type"))
            try:
                key = self._keys.get(raw, _MISSING)
            except TypeError:            # an unhashable field value: label it without the memo
                key = self._key(kind, event)
            if key is _MISSING:
                key = self._key(kind, event)
                if len(self._keys) >= 4096:
                    self._keys.clear()
                self._keys[raw] = key
        except Exception:  # noqa: BLE001 - see the class docstring
            self.errors += 1
            return
        if key is not None:
            self._pending[key] = self._pending.get(key, 0) + 1

    def _bounded(self, label: str, value) -> str:
        value = str(value)[:MAX_LABEL_CHARS] if value not in (None, "") else "none"
        seen = self._seen[label]
        if value not in seen:
            if len(seen) >= MAX_LABEL_VALUES:
                return "other"
            seen.add(value)
        return value

    def _key(self, kind: str, event: dict) -> tuple:
        if kind == "alert":
            a = event.get("alert") or {}
            action = "blocked" if a.get("action") == "blocked" else "allowed"
            severity = str(a.get("severity"))
            return ("alert", action, self._bounded("category", a.get("category") or "unclassified"),
                    severity if severity in SEVERITIES else "other")
        if kind == "drop":
            d = event.get("drop") or {}
            if d.get("reason") != "firewall":
                return None     # the IDS's Suricata-style drop record (reason "rules"): its alert counts
            action = "reject" if d.get("action") == "reject" else "drop"
            return ("drop", self._bounded("rule", d.get("rule")), action)
        a = event.get("anomaly") or {}
        return ("anomaly", self._bounded("type", a.get("type")))

    def fold(self) -> None:
        pending, self._pending = self._pending, {}
        for key, n in pending.items():
            child = self._children.get(key)
            if child is None:
                m = self.metrics
                metric = m.alerts if key[0] == "alert" else m.firewall_blocks if key[0] == "drop" else m.anomalies
                child = self._children[key] = metric.labels(self.worker, *key[1:])
            child.inc(n)


def registry_for_scrape():
    """A registry that aggregates every process's files (what the HTTP endpoint serves)."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def serve(listen: str):
    """Start the HTTP endpoint on host:port in a daemon thread; returns (server, thread)."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    return start_http_server(int(port), addr=host.strip("[]"), registry=registry_for_scrape())


def scrape_text() -> str:
    """The exposition text the endpoint would serve (tests, `lab demo`)."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for_scrape()).decode()


def mark_dead(pid: int) -> None:
    """Forget a dead process's live gauges (its counters stay summed in, as they should)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def read_queue_stats(path: str = "/proc/net/netfilter/nfnetlink_queue") -> dict[int, dict[str, int]]:
    """Per-queue kernel counters of the current network namespace:
    queue -> {portid, waiting, dropped (queue full), user_dropped (netlink send failed), id}."""
    out = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        w = line.split()
        if len(w) < 8:
            continue
        try:
            q, portid, waiting, _, _, dropped, user_dropped, seq = (int(x) for x in w[:8])
        except ValueError:
            continue
        out[q] = {"portid": portid, "waiting": waiting, "dropped": dropped, "user_dropped": user_dropped,
                  "id": seq}
    return out


class QueueDropTracker:
    """Turns the kernel's cumulative per-queue drop counters into Counter increments. A queue instance
    is destroyed when its worker dies, which resets the kernel counters: a smaller value is new drops."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.last: dict[tuple[int, str], int] = {}

    def update(self, stats: dict[int, dict[str, int]]) -> None:
        for q, s in stats.items():
            for field, reason in (("dropped", "queue_full"), ("user_dropped", "user")):
                now = s[field]
                before = self.last.get((q, field), 0)
                delta = now - before if now >= before else now
                child = self.metrics.queue_dropped.labels(str(q), reason)   # exported at 0 from the start
                if delta:
                    child.inc(delta)
                self.last[(q, field)] = now
