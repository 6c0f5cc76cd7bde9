"""`gateway rules check FILE... [--json] [--config FILE]`: load rule files, report loaded/rejected and why.

Exit status: 0 when every file was read (rejected rules are reported, not fatal), 2 when a file or the
config cannot be read. The JSON form is one object: loaded, rejected, commented, files, seconds,
reasons (reason -> count, most frequent first) and rejected_rules (file, line, sid, reason, detail).
"""
from __future__ import annotations

import json
import os
import sys
import time

from .classification import ClassificationError
from .rules import RuleFileError, load_rules
from .vars import VarError, Variables


def _variables(config_path: str | None) -> Variables:
    if not config_path:
        return Variables()
    from .. import config as gwconfig

    return Variables.from_config(gwconfig.load(config_path))


def main(args) -> int:
    from .. import config as gwconfig

    try:
        variables = _variables(getattr(args, "config", None))
        variables.validate()
    except gwconfig.ConfigError as e:
        print(f"gateway: config refused: {e}", file=sys.stderr)
        return 2
    except VarError as e:
        print(f"gateway: rule variables refused: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        ruleset = load_rules(args.files, variables)
    except (RuleFileError, ClassificationError) as e:
        print(f"gateway: {e}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    try:
        _report(ruleset, seconds, args.json)
    except BrokenPipeError:               # `gateway rules check ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _report(ruleset, seconds: float, as_json: bool) -> None:
    loaded, rejected = len(ruleset.rules), len(ruleset.rejected)
    total = loaded + rejected
    if as_json:
        print(json.dumps({
            "loaded": loaded,
            "rejected": rejected,
            "commented": ruleset.commented,
            "loaded_percent": round(100.0 * loaded / total, 2) if total else 100.0,
            "files": list(ruleset.files),
            "seconds": round(seconds, 3),
            "reasons": ruleset.reasons(),
            "rejected_rules": [{"file": r.file, "line": r.line, "sid": r.sid, "reason": r.reason,
                                "detail": r.detail} for r in ruleset.rejected],
        }, indent=2))
        return
    for r in ruleset.rejected:
        sid = f"sid {r.sid}" if r.sid is not None else "no sid"
        print(f"{r.file}:{r.line}: {sid}: {r.reason}{' (' + r.detail + ')' if r.detail else ''}")
    pct = f" ({100.0 * loaded / total:.2f}%)" if total else ""
    print(f"loaded {loaded}{pct}, rejected {rejected}, commented-out {ruleset.commented}, "
          f"{len(ruleset.files)} file(s) in {seconds:.2f}s")
    reasons = ruleset.reasons()
    if reasons:
        print("rejections by reason:")
        for reason, count in reasons.items():
            print(f"  {count:6d}  {reason}")
