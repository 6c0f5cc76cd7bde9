"""Offline driver: `gateway replay PCAP...` runs captures through the same Inspector the inline workers use
and writes EVE JSON lines.

pcap_cnt is the 1-based record number in each file, as Suricata counts it (frames without IP count too).
Flows carry on across the files of one run, which are read in the order given. Without --config the
built-in defaults apply (no zones: the firewall passes everything), because a capture can come from any
network; pass the clinic's config to replay it through the clinic's policy. Exit status: 0, 1 when a
capture was unreadable or truncated (the events of every packet read before the fault are written),
2 when the config or signature set was refused.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from . import config as config_mod
from .events import EveWriter
from .pcapio import PcapError, read_frames
from .pipeline import VERDICT_NAMES, Inspector
from .signatures import SignatureError, SignatureSet
from .stages import build_stages


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal and the file is large."""

    MIN_BYTES = 16 << 20

    def __init__(self, path: str, fp, enabled: bool):
        size = os.fstat(fp.fileno()).st_size
        self.on = enabled and sys.stderr.isatty() and size >= self.MIN_BYTES
        self.fp, self.size, self.name, self.next = fp, size, os.path.basename(path), 0.0

    def update(self, packets: int) -> None:
        now = time.monotonic()
        if not self.on or now < self.next:
            return
        self.next = now + 0.2
        frac = self.fp.tell() / self.size
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.name} [{bar:<30}] {frac:5.1%} {packets} packets")
        sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\r" + " " * 79 + "\r")


def replay_files(inspector: Inspector, paths: list[str], progress: bool = False) -> list[str]:
    """Feed every packet of `paths` to the inspector. Returns the errors (one per unreadable file)."""
    errors = []
    for path in paths:
        try:
            fp = open(path, "rb")  # noqa: SIM115 - `with fp` below; a file that cannot be opened is reported apart
        except OSError as e:
            errors.append(f"{path}: cannot open: {e.strerror}")
            continue
        with fp:
            bar = _Progress(path, fp, progress)
            process = inspector.process
            n = 0
            try:
                for frame in read_frames(path, fp):
                    n += 1
                    if frame.ip is None:
                        inspector.non_ip += 1
                        continue
                    process(frame.ip, frame.ts, pcap_cnt=frame.index, frame=frame.raw, linktype=frame.linktype)
                    if not n & 0x3FF:
                        bar.update(n)
            except PcapError as e:
                errors.append(str(e))
            finally:
                bar.close()
    inspector.finish()
    return errors


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config_mod.load(args.config) if args.config else config_mod.Config(source="<built-in defaults>")
    except config_mod.ConfigError as e:
        print(f"gateway: config refused: {e}", file=sys.stderr)
        return 2
    try:
        sigs = SignatureSet.open(cfg.signatures_dir(args.signatures), args.rules)
        stages = build_stages(cfg, sigs, ips=args.ips)
    except SignatureError as e:
        print(f"gateway: signature set refused: {e}", file=sys.stderr)
        return 2
    try:
        eve = EveWriter(args.eve)
    except OSError as e:
        print(f"gateway: cannot write EVE output {args.eve}: {e.strerror}", file=sys.stderr)
        return 2
    inspector = Inspector(cfg, stages, sink=eve)
    t0 = time.perf_counter()
    try:
        errors = replay_files(inspector, args.pcaps, progress=not args.no_progress)
    finally:
        eve.close()
    elapsed = time.perf_counter() - t0
    for err in errors:
        print(f"gateway: replay: {err}", file=sys.stderr)
    totals: dict[str, int] = {}
    packets = 0
    for (verdict, reason), (pkts, _bytes) in inspector.counts.items():
        key = f"{VERDICT_NAMES[verdict]}" + (f"/{reason}" if reason not in ("inspected", "bypass") else "")
        totals[key] = totals.get(key, 0) + pkts
        packets += pkts
    summary = ", ".join(f"{k}={v}" for k, v in sorted(totals.items()))
    print(f"gateway: replayed {packets} IP packets ({inspector.non_ip} non-IP frames) from "
          f"{len(args.pcaps)} file(s) in {elapsed:.2f}s; {eve.written} events; {summary}", file=sys.stderr)
    return 1 if errors else 0
