"""suricata-verify conformance runner (replay mode, in-process).

    python -m tests.conformance DIR [DIR ...] [--json] [--only NAME ...] [-v]

Each DIR is a corpus root (folders with input.pcap, test.rules, meta.json) or one test folder. For every
test the capture is replayed through the same stages as `gateway replay input.pcap --rules test.rules
[--ips]` with the built-in default config, and each `alert_checks` entry of meta.json is checked: the
number of EVE events carrying every key/value of `match` (dotted paths, `[i]` indexes, `has-key` /
`not-has-key`) must equal `count`. Prints PASS/FAIL per test and the pass percentage; --json prints one
object {"passed", "total", "percent", "tests": {name: {"passed", "failures"}}}.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

_INDEX_RE = re.compile(r"^(.*)\[(\d+)\]$")
_MISSING = object()


def _lookup(event: dict, path: str):
    cur = event
    for part in path.split("."):
        idx = []
        m = _INDEX_RE.match(part)
        while m:
            idx.insert(0, int(m.group(2)))
            part = m.group(1)
            m = _INDEX_RE.match(part)
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
        for i in idx:
            if not isinstance(cur, list) or i >= len(cur):
                return _MISSING
            cur = cur[i]
    return cur


def event_matches(event: dict, match: dict) -> bool:
    for key, want in match.items():
        if key == "has-key":
            for k in (want if isinstance(want, list) else [want]):
                if _lookup(event, k) is _MISSING:
                    return False
            continue
        if key == "not-has-key":
            for k in (want if isinstance(want, list) else [want]):
                if _lookup(event, k) is not _MISSING:
                    return False
            continue
        if key.endswith(".__endswith"):
            got = _lookup(event, key[: -len(".__endswith")])
            if not isinstance(got, str) or not got.endswith(str(want)):
                return False
            continue
        if key.endswith(".__startswith"):
            got = _lookup(event, key[: -len(".__startswith")])
            if not isinstance(got, str) or not got.startswith(str(want)):
                return False
            continue
        if key.endswith(".__len"):
            got = _lookup(event, key[: -len(".__len")])
            if got is _MISSING or not hasattr(got, "__len__") or len(got) != want:
                return False
            continue
        got = _lookup(event, key)
        if got is _MISSING:
            return False
        if got != want and str(got) != str(want):
            return False
    return True


def run_replay(test_dir: Path, ips: bool) -> list[dict]:
    """Replay the test's capture with its rules in this process; return the EVE events."""
    from gateway.config import Config
    from gateway.pipeline import Inspector
    from gateway.replay import replay_files
    from gateway.signatures import SignatureSet
    from gateway.stages import build_stages

    cfg = Config(source="<built-in defaults>")
    rules = test_dir / "test.rules"
    sigs = SignatureSet(root=test_dir, rule_files=(rules,) if rules.is_file() else (), yara_files=(),
                        lists={}, mail_files=())
    stages = build_stages(cfg, sigs, ips=ips)
    events: list[dict] = []
    inspector = Inspector(cfg, stages, sink=events.append)
    replay_files(inspector, [str(test_dir / "input.pcap")])
    return events


def run_test(test_dir: Path) -> tuple[bool, list[str]]:
    meta = json.loads((test_dir / "meta.json").read_text())
    try:
        events = run_replay(test_dir, bool(meta.get("ips")))
    except Exception as e:  # noqa: BLE001 - a crash is a failure of this test, not of the run
        return False, [f"replay raised {type(e).__name__}: {e}"]
    failures = []
    for check in meta.get("alert_checks", []):
        n = sum(1 for ev in events if event_matches(ev, check["match"]))
        if n != check["count"]:
            failures.append(f"expected {check['count']} got {n}: {json.dumps(check['match'], sort_keys=True)}")
    return not failures, failures


def find_tests(roots: list[str]) -> list[Path]:
    out = []
    for r in roots:
        p = Path(r)
        if (p / "meta.json").is_file():
            out.append(p)
        else:
            out.extend(sorted(d for d in p.iterdir() if (d / "meta.json").is_file()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.conformance", description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", nargs="*", help="run only these test names")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the failed checks")
    ap.add_argument("--copy-passing", metavar="DEST",
                    help="copy input.pcap, test.rules and meta.json of every passing test into DEST/<name>/")
    args = ap.parse_args(argv)
    os.environ.setdefault("GATEWAY_HS_CACHE", "off")
    tests = find_tests(args.dirs)
    if args.only:
        tests = [t for t in tests if t.name in set(args.only)]
    results = {}
    t0 = time.perf_counter()
    for t in tests:
        ok, failures = run_test(t)
        results[t.name] = {"passed": ok, "failures": failures}
        if not args.json:
            print(f"{'PASS' if ok else 'FAIL'} {t.name}")
            if failures and args.verbose:
                for f in failures:
                    print(f"     {f}")
    if args.copy_passing:
        dest = Path(args.copy_passing)
        for t in tests:
            if results[t.name]["passed"]:
                (dest / t.name).mkdir(parents=True, exist_ok=True)
                for f in ("input.pcap", "test.rules", "meta.json"):
                    if (t / f).is_file():
                        shutil.copyfile(t / f, dest / t.name / f)
    passed = sum(1 for r in results.values() if r["passed"])
    total = len(results)
    pct = 100.0 * passed / total if total else 0.0
    if args.json:
        print(json.dumps({"passed": passed, "total": total, "percent": round(pct, 2),
                          "seconds": round(time.perf_counter() - t0, 1), "tests": results}, indent=1))
    else:
        print(f"{passed}/{total} passed ({pct:.1f}%) in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
