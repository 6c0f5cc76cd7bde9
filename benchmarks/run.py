"""`make bench`: the offline hot-path benchmark, the inline lab benchmark, and the plot.

Writes benchmarks/results/offline.json, inline.json and bench.png. The inline part needs root, iperf3
and the lab's tools; without them inline.json records why it was skipped and the plot says so.

    python -m benchmarks.run [--quick] [--no-inline] [--profile]

--quick     20,000 packets per offline run, 2-second iperf3 runs, one round (a smoke run, not for numbers)
--profile   also write results/profile_offline.txt (py-spy + pyinstrument, all stages) and
            results/profile_worker.txt (py-spy on a live worker under iperf3 load, if py-spy is installed)
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks import inline, offline, plot

RESULTS = offline.RESULTS


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description="run every benchmark, plot")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-inline", action="store_true")
    ap.add_argument("--no-ids", action="store_true", help="skip the ET Open IDS benchmark (benchmarks/ids.py)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--seconds", type=float, help="iperf3 -t per inline case (default 5, --quick 2)")
    ap.add_argument("--count", type=int, help="offline packets per run (default 200000, --quick 20000)")
    args = ap.parse_args(argv)
    count = args.count or (20_000 if args.quick else offline.DEFAULT_COUNT)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    command = "python -m benchmarks.run " + " ".join(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    print("== offline (one process) ==", flush=True)
    off = offline.run(count=count, repeats=3)
    off["command"] = command
    (RESULTS / "offline.json").write_text(json.dumps(off, indent=2) + "\n")

    status = 0
    inl = None
    if not args.no_inline:
        print("== inline (network-namespace lab) ==", flush=True)
        reason = inline.skip_reason()
        if reason:
            print(f"  skipped: {reason}")
            inl = {"benchmark": "inline", "skipped": reason, "command": command}
        else:
            try:
                inl = inline.run(seconds=seconds, streams=4, queue_counts=(1, 2), repeats=1 if args.quick else 3)
            except Exception as e:  # noqa: BLE001 - record why, still write the offline plot
                print(f"  inline failed: {type(e).__name__}: {e}", file=sys.stderr)
                inl = {"benchmark": "inline", "skipped": f"failed: {type(e).__name__}: {e}", "command": command}
                status = 1
            inl["command"] = command
        (RESULTS / "inline.json").write_text(json.dumps(inl, indent=2) + "\n")

    if args.profile:
        print("== profiles ==", flush=True)
        offline.profile("all_stages", min(count, 100_000), 15.0, RESULTS / "profile_offline.txt")
        print(f"  wrote {RESULTS / 'profile_offline.txt'}")
        if not args.no_inline and inline.skip_reason() is None:
            text = inline.profile_worker(seconds, 4, RESULTS)
            (RESULTS / "profile_worker.txt").write_text(text)
            print(f"  wrote {RESULTS / 'profile_worker.txt'}")

    if not args.no_ids:
        print("== IDS with ET Open (benchmarks/ids.py) ==", flush=True)
        from . import ids
        if not ids.DEFAULT_RULES.is_dir():
            print(f"  skipped: no ruleset at {ids.DEFAULT_RULES}")
        else:
            ids.main(["--count", "5040", "--repeats", "8"] if args.quick else [])

    # --no-inline plots the offline panel only: an older inline.json is not this run's.
    out = plot.plot(off, None if args.no_inline else inl, RESULTS / "bench.png")
    written = [RESULTS / "offline.json"] + ([] if args.no_inline else [RESULTS / "inline.json"]) + [out]
    print(f"wrote {', '.join(map(str, written))} in {time.monotonic() - t0:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
