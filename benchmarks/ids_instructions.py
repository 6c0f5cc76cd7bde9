"""The IDS's cost in instructions: callgrind counts one pass of the IDS benchmark's trace with and without rules.

    python -m benchmarks.ids_instructions [--rules-dir DIR] [--conversations 400] [--no-gc]
                                          [--out benchmarks/results/ids_instructions.json]

Time on a shared VM varies by 10-30 % from round to round (benchmarks/ids.py), instruction counts do not, so
changes to the engine are judged on these. Needs valgrind (callgrind, callgrind_control) and setarch.

Under callgrind, with PYTHONHASHSEED=0 and address-space randomisation off, a child process loads the ruleset,
builds the rotating traces of benchmarks/ids.py and runs three warm-up passes of each configuration (memos and
caches as in a running worker), all uninstrumented. Instrumentation is then switched on for one pass of the
trace the warm-ups did not use, rules-on, and one rules-off, each counted in its own dump and each started
on a collected heap. Reported: the
instructions of each pass, the IDS's share (the difference), and rules-off / rules-on: what the throughput
ratio would be if every instruction cost the same time. It does not: the IDS misses the caches more
(benchmarks/README.md), so the measured ratio is lower.

Where the cyclic garbage collector's runs fall inside a pass moves the counts by up to ~2 % when a change alters
how many objects a pass allocates, even one outside the code it changes. `--no-gc` runs the two measured passes
with the collector off: the counts then move only with the code, which is what an A/B of a small change needs
(the collector's own cost, real in a worker, is left out).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .ids import DEFAULT_RULES, REPO, RESULTS, write_json

TOOLS = ("valgrind", "callgrind_control", "setarch")
WAIT_SECONDS = 1800         # the child's load and warm-ups run under valgrind (~20x slower than native)


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the measured process ended early (exit {proc.returncode}):\n"
                               f"{log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"no {path.name} from the measured process within {timeout:.0f} s")
        time.sleep(0.2)


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def dump_total(path: Path) -> int:
    """The instruction total of one callgrind dump (its `summary:` line, or `totals:` when there is none)."""
    totals = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
            if line.startswith("totals:"):
                totals = int(line.split()[1])
    if totals is None:
        raise ValueError(f"{path}: no summary or totals line (not a callgrind dump?)")
    return totals


def measure(rules_dir: Path, conversations: int, no_gc: bool = False) -> dict:
    missing = missing_tools()
    if missing:
        raise SystemExit(f"needs {', '.join(missing)} (Debian: apt-get install valgrind util-linux)")
    with tempfile.TemporaryDirectory(prefix="ids-instr-") as tmp:
        d = Path(tmp)
        log = d / "log"
        cmd = ["setarch", platform.machine(), "-R", "valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={d / 'cg.out'}", sys.executable, "-m", "benchmarks.ids_instructions",
               "--child", str(d), "--rules-dir", str(rules_dir), "--conversations", str(conversations)]
        if no_gc:
            cmd.append("--no-gc")
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=str(REPO), env=dict(os.environ, PYTHONHASHSEED="0"),
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            pid = str(proc.pid)                     # setarch and valgrind exec: one pid throughout
            for name in ("rules_on", "rules_off"):
                # each pass counted alone, from a collected heap (the child collects before saying ready):
                # otherwise a full collection falls in one pass or the other by chance (~12M instructions)
                _wait_for(d / f"ready_{name}", proc, log)
                # instrumentation stays on once on (switching it off between passes lost the counts)
                _control("-i", "on", pid)
                _control("-z", pid)                 # zeroed: the child's collection is not counted
                (d / f"go_{name}").touch()
                _wait_for(d / f"done_{name}", proc, log)
                _control("-d", name, pid)
                (d / f"dumped_{name}").touch()      # the child waits for it: nothing else in the dump
            (d / "end").touch()
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        info = json.loads((d / "info.json").read_text())
        on, off = dump_total(d / "cg.out.1"), dump_total(d / "cg.out.2")
    return {"rules_on_instructions": on, "rules_off_instructions": off, "ids_instructions": on - off,
            "rules_off_over_rules_on": round(off / on, 4), "gc_in_passes": not no_gc, **info,
            "ruleset": rules_dir.name, "python": platform.python_version(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def child(d: Path, rules_dir: Path, conversations: int, no_gc: bool = False) -> None:
    """The measured process: load, warm up, then one pass per configuration when the parent says go."""
    from gateway.config import Config
    from gateway.ids.stage import build_ids_stage
    from gateway.stages import build_stages

    from .ids import Traces, _one_run

    stage = build_ids_stage(Config(), sorted(rules_dir.glob("*.rules")))
    traces = Traces(conversations, 4)
    cfg = Config()

    def off():
        return build_stages(cfg, None)

    def on():
        return off() + [stage]
    n = len(traces.traces[0])
    for i in (0, 2, 3):
        traces.next = {"on": i, "off": i}
        _one_run(on, traces, "on", n, 300)
        _one_run(off, traces, "off", n, 300)
    traces.next = {"on": 1, "off": 1}
    (d / "info.json").write_text(json.dumps({
        "packets": len(traces.traces[1]), "conversations": conversations,
        "rules_loaded": len(stage.engine.rules)}))

    for name, stages, key in (("rules_on", on, "on"), ("rules_off", off, "off")):
        gc.collect()
        (d / f"ready_{name}").touch()
        while not (d / f"go_{name}").exists():
            time.sleep(0.05)
        if no_gc:
            gc.disable()
        _one_run(stages, traces, key, n, 300)
        gc.enable()
        (d / f"done_{name}").touch()
        while not (d / f"dumped_{name}").exists():
            time.sleep(0.05)
    while not (d / "end").exists():
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ids_instructions",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules-dir", default=str(DEFAULT_RULES))
    ap.add_argument("--conversations", type=int, default=400)
    ap.add_argument("--no-gc", action="store_true", help="the measured passes with the cyclic GC off")
    ap.add_argument("--out", default=str(RESULTS / "ids_instructions.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)      # internal: the process callgrind measures
    args = ap.parse_args(argv)
    rules_dir = Path(args.rules_dir)
    if not rules_dir.is_dir():
        raise SystemExit(f"rules directory not found: {rules_dir}")
    if args.child:
        child(Path(args.child), rules_dir, args.conversations, args.no_gc)
        return 0
    res = measure(rules_dir, args.conversations, args.no_gc)
    print(json.dumps(res, indent=1))
    print(f"wrote {write_json(args.out, res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
