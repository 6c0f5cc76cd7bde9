"""`gateway run`: the inline driver's main process.

Order of start-up, each step refusing with a clear message before the next one changes anything:
  1. load and validate the config and the signature set, build the stages once (a bad set is refused
     here, before any rule is installed);
  2. wipe and point PROMETHEUS_MULTIPROC_DIR at <state_dir>/prometheus, start the metrics endpoint;
  3. fork one worker per queue and wait until every queue is bound (so no packet meets an empty queue);
  4. remove leftovers of a crashed run and install the netfilter rules (netfilter.py).
Then it watches: a worker that dies is restarted (back-off if it keeps dying), kernel queue drops are
turned into metrics, <state_dir>/supervisor.json names the live pids. SIGTERM/SIGINT: stop the workers,
remove every rule installed, exit 0. SIGHUP: the workers reopen the EVE file (log rotation), as Suricata
does on SIGHUP.

Workers are forked, not spawned: the config and the compiled signature set are built once here and
shared copy-on-write, and a restart takes milliseconds.
"""
from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait as wait_sentinels
from pathlib import Path

from .. import config as config_mod
from ..metrics import Metrics, QueueDropTracker, mark_dead, prepare_multiproc_dir, read_queue_stats, serve
from . import netfilter
from .worker import Worker, worker_main

log = logging.getLogger("gateway")
BIND_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
MAX_BACKOFF = 5.0


class StartError(RuntimeError):
    pass


class WorkerSlot:
    def __init__(self, index: int, queue: int):
        self.index = index
        self.queue = queue
        self.proc: multiprocessing.Process | None = None
        self.generation = 0
        self.started = 0.0
        self.backoff = 0.0
        self.restart_at = 0.0      # when a dead worker may be started again (monotonic)
        self.bound = None          # Event the worker sets once it holds its queue


class Supervisor:
    def __init__(self, cfg: config_mod.Config, queues: int, stages_factory, metrics: Metrics | None,
                 eve_path: str | None, state_dir: Path):
        self.cfg = cfg
        self.range = netfilter.QueueRange(cfg.gateway.queue_start, queues)
        self.stages_factory = stages_factory
        self.metrics = metrics
        self.eve_path = eve_path
        self.state_dir = state_dir
        self.slots = [WorkerSlot(i, cfg.gateway.queue_start + i) for i in range(queues)]
        self.stopping = False
        self.hup = False          # SIGHUP seen: forward it to the workers (they reopen the EVE file)
        self.ctx = multiprocessing.get_context("fork")
        self.drops = QueueDropTracker(metrics) if metrics is not None else None
        self.restarts = 0
        self.close_fds: tuple[int, ...] = ()
        self.ready = False        # rules installed, every queue bound (supervisor.json says so)

    # ------------------------------------------------------------------ workers
    def _spawn(self, slot: WorkerSlot) -> None:
        w = Worker(slot.index, slot.queue, self.cfg, self.stages_factory, self.metrics, self.eve_path,
                   slot.generation)
        w.close_fds = self.close_fds
        w.bound = slot.bound = self.ctx.Event()
        slot.generation += 1
        proc = self.ctx.Process(target=worker_main, args=(w,), name=f"gateway-worker-{slot.index}", daemon=False)
        proc.start()
        slot.proc = proc
        slot.started = time.monotonic()
        self._write_state()

    def _wait_bound(self, timeout: float = BIND_TIMEOUT) -> None:
        """Every worker says it holds its queue (not just "someone is bound": that could be another
        gateway in this namespace, whose rules we must then leave alone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.bound is not None and s.bound.is_set() for s in self.slots):
                return
            dead = [s for s in self.slots if s.proc is not None and not s.proc.is_alive()]
            if dead:
                raise StartError(f"worker {dead[0].index} (queue {dead[0].queue}) exited with code "
                                 f"{dead[0].proc.exitcode} during start-up; see its message above")
            time.sleep(0.02)
        missing = [s.queue for s in self.slots if not (s.bound is not None and s.bound.is_set())]
        raise StartError(f"queues {missing} not bound after {timeout:.0f}s")

    def _reap(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            proc = slot.proc
            if proc is not None and not proc.is_alive():
                proc.join(0)
                code = proc.exitcode
                if self.metrics is not None:
                    mark_dead(proc.pid)
                # A worker that dies young keeps doubling its wait (up to MAX_BACKOFF): no crash loop.
                lived = now - slot.started
                slot.backoff = 0.0 if lived > 10 else min(MAX_BACKOFF, max(0.1, slot.backoff * 2))
                slot.restart_at = now + slot.backoff
                slot.proc = None
                log.warning("worker %d (queue %d, pid %d) died with %s; restarting in %.1fs", slot.index,
                            slot.queue, proc.pid, _describe_exit(code), slot.backoff)
            if slot.proc is None and not self.stopping and now >= slot.restart_at:
                self.restarts += 1
                if self.metrics is not None:
                    self.metrics.restarts.labels(str(slot.index)).inc()
                self._spawn(slot)

    def _stop_workers(self) -> None:
        procs = [s.proc for s in self.slots if s.proc is not None]
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                log.warning("worker pid %d ignored SIGTERM; killing it", p.pid)
                p.kill()
                p.join(1.0)
            if self.metrics is not None:
                mark_dead(p.pid)
        for s in self.slots:
            s.proc = None

    def _write_state(self) -> None:
        state = {"pid": os.getpid(), "chain": self.cfg.gateway.chain,
                 "queues": [self.range.first, self.range.last],
                 "workers": {str(s.index): (s.proc.pid if s.proc is not None else None) for s in self.slots},
                 "restarts": self.restarts, "ready": self.ready}
        tmp = self.state_dir / "supervisor.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_dir / "supervisor.json")

    # ------------------------------------------------------------------ main loop
    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _on_hup(self, signum, frame) -> None:
        self.hup = True

    def _forward_hup(self) -> None:
        self.hup = False
        for s in self.slots:
            if s.proc is not None and s.proc.is_alive():
                try:
                    os.kill(s.proc.pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass
        log.info("SIGHUP: workers reopen the EVE file %s", self.eve_path)

    def run(self) -> int:
        gw = self.cfg.gateway
        installed = owns_queues = False
        try:
            for s in self.slots:
                self._spawn(s)
            self._wait_bound()
            # From here the queues are ours: another gateway in this namespace would have made the bind
            # fail, and then its rules must stay untouched.
            owns_queues = True
            fams = netfilter.install(gw, self.range)
            installed = True
            self.ready = True
            self._write_state()
            log.info("rules installed: chain %s, queues %d..%d (%s), fail-open %s, bypass %s; IPv%s",
                     gw.chain, self.range.first, self.range.last, f"{len(self.slots)} workers",
                     "on" if gw.fail_open else "off", "on" if gw.bypass else "off",
                     "/".join(str(f) for f in fams))
            print(f"gateway: running, {len(self.slots)} workers, pid {os.getpid()}", file=sys.stderr, flush=True)
            while not self.stopping:
                sentinels = [s.proc.sentinel for s in self.slots if s.proc is not None]
                if sentinels:
                    wait_sentinels(sentinels, timeout=0.5)     # wakes at once when a worker dies
                else:
                    time.sleep(0.1)                            # all waiting out a restart back-off
                if self.stopping:
                    break
                if self.hup:
                    self._forward_hup()
                self._reap()
                if self.drops is not None:
                    self.drops.update(read_queue_stats())
            return 0
        except (StartError, netfilter.NetfilterError) as e:
            print(f"gateway: cannot start: {e}", file=sys.stderr)
            return 1
        finally:
            self.stopping = True
            self._stop_workers()
            if owns_queues:
                # Also when install() failed half-way (it cleans up too; removing is idempotent).
                try:
                    removed = netfilter.remove(gw)
                    if removed or installed:
                        log.info("rules removed: %s", "; ".join(removed) or "none left")
                except netfilter.NetfilterError as e:
                    print(f"gateway: could not remove rules: {e}", file=sys.stderr)
                try:
                    (self.state_dir / "supervisor.json").unlink()
                except OSError:
                    pass


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="gateway: %(message)s", stream=sys.stderr)
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as e:
        print(f"gateway: config refused: {e}", file=sys.stderr)
        return 2
    queues = args.queues if getattr(args, "queues", None) else cfg.gateway.queues
    if not 1 <= queues <= 64 or cfg.gateway.queue_start + queues > 65536:
        print(f"gateway: --queues must be 1..64 (and fit after gateway.queue_start), got {queues}", file=sys.stderr)
        return 2
    from ..signatures import SignatureError, SignatureSet
    from ..stages import build_stages

    try:
        sigs = SignatureSet.open(cfg.signatures_dir(getattr(args, "signatures", None)))
        # Built once, here: a bad set is refused before any rule is installed, and every worker (and
        # every restart) gets a pristine copy-on-write copy of the compiled stages through fork.
        stages = build_stages(cfg, sigs, ips=cfg.gateway.ips)
    except (SignatureError, config_mod.ConfigError) as e:
        print(f"gateway: signature set refused: {e}", file=sys.stderr)
        return 2
    state_dir = Path(cfg.gateway.state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        # One gateway per state directory: a second one must not wipe the first's metrics files.
        lock = open(state_dir / "gateway.lock", "a+")   # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            print(f"gateway: another gateway (pid {lock.read().strip() or '?'}) uses state directory "
                  f"{state_dir}", file=sys.stderr)
            return 2
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        metrics_dir = prepare_multiproc_dir(state_dir / "prometheus")
    except OSError as e:
        print(f"gateway: state directory {state_dir}: {e.strerror or e}", file=sys.stderr)
        return 2
    eve_path = cfg.gateway.eve or str(state_dir / "eve.json")
    metrics = Metrics()
    metrics.set_build_info()
    metrics.set_signature_counts(stages)
    metrics.workers_configured.set(queues)
    try:
        server, _ = serve(cfg.metrics.listen)
    except OSError as e:
        print(f"gateway: metrics.listen {cfg.metrics.listen}: {e.strerror or e}", file=sys.stderr)
        return 2
    log.info("metrics on http://%s/metrics (multiprocess dir %s), EVE to %s", cfg.metrics.listen, metrics_dir,
             eve_path)

    sup = Supervisor(cfg, queues, lambda: stages, metrics, eve_path, state_dir)
    sup.close_fds = (server.socket.fileno(),)
    signal.signal(signal.SIGTERM, sup._on_signal)
    signal.signal(signal.SIGINT, sup._on_signal)
    # SIGHUP reopens the EVE file like Suricata's; a signature reload would take SIGUSR2 (Suricata's too).
    signal.signal(signal.SIGHUP, sup._on_hup)
    return sup.run()
