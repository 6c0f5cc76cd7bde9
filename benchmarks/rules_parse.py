"""Rule-set load time: parse + validate + fast-pattern choice for a whole Suricata rule set.

    python -m benchmarks.rules_parse [PATH ...] [--repeats N] [--out FILE]

PATH is a rule file or a directory of *.rules (default: the ET Open set in ../shared/rulesets when it is
there, else the ET sample in tests/data/rules). Each repeat starts with an empty pcre cache, so it measures
what a fresh worker/supervisor pays. Writes JSON (default benchmarks/results/rules_parse.json): wall and
CPU seconds per run, rules per second, loaded/rejected counts and the rejection reasons.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from gateway.ids import keywords
from gateway.ids.rules import load_rules

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
ET_FULL = REPO.parent / "shared" / "rulesets" / "et-open-2024"
ET_SAMPLE = REPO / "tests" / "data" / "rules" / "et-open-sample"


def _rule_files(paths: list[str]) -> list[Path]:
    if not paths:
        paths = [str(ET_FULL if ET_FULL.is_dir() else ET_SAMPLE)]
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.rules")) if p.is_dir() else [p])
    return files


def _shown(p: Path) -> str:
    """A path for the results file: relative to the repository's parent, never this machine's layout."""
    try:
        # normpath, not resolve: ../shared may be a symlink, and the path should read as given
        return str(Path(os.path.normpath(p.absolute())).relative_to(REPO.parent))
    except ValueError:
        return p.name


def run(files: list[Path], repeats: int = 3) -> dict:
    runs = []
    ruleset = None
    for _ in range(repeats):
        keywords._PCRE_CACHE.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        ruleset = load_rules(files)
        runs.append({"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)})
    loaded, rejected = len(ruleset.rules), len(ruleset.rejected)
    best = min(r["wall_s"] for r in runs)
    return {
        "benchmark": "rules_parse",
        "files": [_shown(f) for f in files],
        "python": platform.python_version(),
        "loaded": loaded,
        "rejected": rejected,
        "commented": ruleset.commented,
        "loaded_percent": round(100.0 * loaded / max(1, loaded + rejected), 2),
        "best_wall_s": best,
        "best_cpu_s": min(r["cpu_s"] for r in runs),
        "rules_per_s": round((loaded + rejected) / best) if best else None,
        "runs": runs,
        "reasons": ruleset.reasons(),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rules_parse", description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", metavar="PATH")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "rules_parse.json"))
    args = ap.parse_args(argv)
    res = run(_rule_files(args.paths), max(1, args.repeats))
    res["command"] = "python -m benchmarks.rules_parse " + " ".join(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"{res['loaded'] + res['rejected']} rules from {len(res['files'])} files: loaded {res['loaded']} "
          f"({res['loaded_percent']}%), rejected {res['rejected']}; best {res['best_wall_s']} s wall, "
          f"{res['best_cpu_s']} s CPU ({res['rules_per_s']} rules/s); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
