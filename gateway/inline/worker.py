"""One worker process per NFQUEUE queue: read a burst, run each packet through the Inspector, send the
burst's verdicts in one datagram, and every FOLD_INTERVAL fold counters into Prometheus and flush EVE.

Verdicts on the wire:
    ACCEPT  -> covered by the burst's batch accept (one message for the whole burst)
    DROP    -> NF_DROP
    REJECT  -> NF_REPEAT + packet mark | gateway.mark_reject: the chain's REJECT rules answer (RST / ICMP)
    BYPASS  -> NF_REPEAT + packet mark | gateway.mark_bypass: the chain saves the bit in the conntrack mark
               and accepts; later packets of the flow never leave the kernel (see netfilter.py)

EVE: every worker appends to the same file opened with O_APPEND, and each write(2) carries whole lines
only (lines are buffered here and written together), so lines of concurrent workers never interleave.
SIGHUP (forwarded by the supervisor) reopens the file at the next fold: after logrotate renamed it, the
workers move to a new file at the same path (see docs/operations.md). With metrics on, every event also
passes through an EventCounter (alerts, firewall drops, anomalies), whether or not an EVE file is written.

The worker never raises out of its loop on bad input: Inspector.process catches everything; a netlink
error reply is counted. If the supervisor dies, the kernel sends us SIGTERM (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..config import Config
from ..events import EveWriter
from ..metrics import FOLD_INTERVAL, EventCounter, Metrics, WorkerCounters
from .nfqueue import NF_DROP, NF_REPEAT, NfQueue, batch_verdict_message, verdict_message

EVE_FLUSH_BYTES = 64 << 10
PR_SET_PDEATHSIG = 1


class AppendLines:
    """File-like sink for EveWriter: collects lines, writes them with one os.write on an O_APPEND fd."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.path = path
        self.parts: list[str] = []
        self.size = 0

    def write(self, s: str) -> int:
        self.parts.append(s)
        self.size += len(s)
        if self.size >= EVE_FLUSH_BYTES and s.endswith("\n"):
            self.flush()
        return len(s)

    def flush(self) -> None:
        if not self.parts:
            return
        data = "".join(self.parts).encode()
        self.parts, self.size = [], 0
        view = memoryview(data)
        while view:                      # a regular file takes it all at once; loop for safety
            view = view[os.write(self.fd, view):]

    def reopen(self) -> None:
        """Flush to the old file, then continue in a file freshly opened at the path (log rotation).
        If it cannot be opened, keep writing to the old one: losing events is worse than a late rotation."""
        self.flush()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as e:
            print(f"gateway: cannot reopen EVE file {self.path}: {e.strerror or e}; still writing the old one",
                  file=sys.stderr)
            return
        os.close(self.fd)
        self.fd = fd

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Worker:
    def __init__(self, index: int, queue: int, config: Config, stages_factory: Callable[[], list],
                 metrics: Metrics | None, eve_path: str | None, generation: int = 0):
        self.index = index
        self.queue = queue
        self.config = config
        self.stages_factory = stages_factory
        self.metrics = metrics
        self.eve_path = eve_path
        self.generation = generation
        self.stop = False
        self.reopen = False        # SIGHUP: reopen the EVE file at the next fold
        self.close_fds: tuple[int, ...] = ()   # the supervisor's sockets (metrics endpoint) we inherited
        self.bound = None          # multiprocessing Event: set once our queue is bound (supervisor waits on it)

    def _on_term(self, signum, frame) -> None:
        self.stop = True

    def _on_hup(self, signum, frame) -> None:
        self.reopen = True

    def run(self) -> int:
        """Process entry point (after fork). Returns the exit code."""
        from ..pipeline import VERDICT_NAMES, Inspector, Verdict

        parent = os.getppid()
        _die_with_parent()
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C: the supervisor stops us in order
        signal.signal(signal.SIGHUP, self._on_hup)
        for fd in self.close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        gw = self.config.gateway
        sink = AppendLines(self.eve_path) if self.eve_path else None
        eve = EveWriter(sink) if sink is not None else None
        events = EventCounter(self.metrics, str(self.index), eve) if self.metrics is not None else None
        # Flow ids unique across workers and their restarts (EVE consumers join on flow_id).
        id_base = ((self.index & 0xFF) << 48) | ((self.generation & 0xFFF) << 36)
        inspector = Inspector(self.config, self.stages_factory(), sink=events if events is not None else eve, id_base=id_base)
        try:
            nfq = NfQueue(self.queue, maxlen=gw.queue_maxlen, fail_open=gw.fail_open)
        except OSError as e:
            print(f"gateway worker {self.index}: cannot bind queue {self.queue}: {e}", file=sys.stderr)
            return 3
        if self.bound is not None:
            self.bound.set()
        counters = None
        if self.metrics is not None:
            counters = WorkerCounters(self.metrics, str(self.index), VERDICT_NAMES)
            self.metrics.workers_up.set(1)
        timer_add = counters.timer.add if counters is not None else (lambda s: None)

        q = self.queue
        accept, drop, reject, bypass = Verdict.ACCEPT, Verdict.DROP, Verdict.REJECT, Verdict.BYPASS
        mark_reject, mark_bypass, mark_reply = gw.mark_reject, gw.mark_bypass, gw.mark_reply
        process = inspector.process
        perf = time.perf_counter
        wall = time.time
        names: dict[int, str | None] = {0: None}
        poller = select.poll()
        poller.register(nfq.fileno(), select.POLLIN)
        next_fold = time.monotonic() + FOLD_INTERVAL
        eve_written = nfq_errors = 0
        try:
            while not self.stop:
                if poller.poll(250):
                    while True:
                        pkts = nfq.recv_burst()
                        if not pkts:
                            break
                        now = wall()
                        out = []
                        for pid, mark, inidx, outidx, payload in pkts:
                            indev = names.get(inidx, "")
                            if indev == "":
                                indev = names[inidx] = _ifname(inidx)
                            outdev = names.get(outidx, "")
                            if outdev == "":
                                outdev = names[outidx] = _ifname(outidx)
                            t0 = perf()
                            v = process(payload, now, indev, outdev, None, (mark & mark_reply) != 0)
                            timer_add(perf() - t0)
                            if v == accept:
                                continue
                            if v == drop:
                                out.append(verdict_message(q, pid, NF_DROP))
                            elif v == reject:
                                out.append(verdict_message(q, pid, NF_REPEAT, mark | mark_reject))
                            elif v == bypass:
                                out.append(verdict_message(q, pid, NF_REPEAT, mark | mark_bypass))
                        out.append(batch_verdict_message(q, pkts[-1][0]))
                        nfq.send(b"".join(out))
                        if len(pkts) < nfq.burst or time.monotonic() >= next_fold:
                            break
                if time.monotonic() >= next_fold:
                    next_fold = time.monotonic() + FOLD_INTERVAL
                    names = {0: None}            # interfaces come and go (renames, re-created veths)
                    tick = getattr(inspector, "tick", None)
                    if tick is not None:         # idle flows expire (and log) without waiting for a packet
                        tick(wall())
                    if eve is not None:
                        eve.flush()
                        if self.reopen:
                            self.reopen = False
                            sink.reopen()
                    if counters is not None:
                        counters.fold(inspector.take_counts())
                        events.fold()
                        counters.set_flows(len(inspector.flows))
                        if eve is not None:
                            counters.add_eve(eve.written - eve_written)
                            eve_written = eve.written
                        counters.add_nfq_errors(nfq.errors - nfq_errors)
                        nfq_errors = nfq.errors
                    if os.getppid() != parent:
                        break
        finally:
            nfq.close()
            try:
                inspector.finish()          # flow events for what is still open
            except Exception as e:  # noqa: BLE001 - a stage bug must not lose the EVE flush below
                print(f"gateway worker {self.index}: finishing flows: {type(e).__name__}: {e}", file=sys.stderr)
            if counters is not None:
                counters.fold(inspector.take_counts())
                events.fold()
                counters.set_flows(0)
                if eve is not None:
                    counters.add_eve(eve.written - eve_written)
            if eve is not None:
                eve.close()
                sink.close()
            if self.metrics is not None:
                self.metrics.workers_up.set(0)
        return 0


def _ifname(index: int) -> str | None:
    if not index:
        return None
    try:
        return socket.if_indextoname(index)
    except OSError:
        return str(index)


def worker_main(worker: Worker) -> None:
    """multiprocessing target: run and exit with the worker's code."""
    code = 1
    try:
        code = worker.run()
    except Exception as e:  # noqa: BLE001 - a bug here must show in the log, and the supervisor restarts us
        import traceback

        traceback.print_exc()
        print(f"gateway worker {worker.index}: died: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
