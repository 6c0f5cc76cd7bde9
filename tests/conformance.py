"""suricata-verify conformance runner (replay mode, in-process).

    python -m tests.conformance DIR [DIR ...] [--json] [--only NAME ...] [-v]

Each DIR is a corpus root (folders with input.pcap, test.rules, meta.json) or one test folder. For every
test the capture is replayed through the same stages as `gateway replay input.pcap --rules test.rules
[--ips]` with the built-in default config (midstream pickup as in the test's Suricata run; see
suricata_like_config), and each `alert_checks` entry of meta.json is checked: the
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
            if want is None:       # suricata-verify: a key the event lacks reads as null
                continue
            return False
        if got != want and str(got) != str(want):
            return False
    return True


def suricata_like_config(test_dir: Path):
    """The built-in defaults, except where Suricata's defaults (which the tests assume) differ and the test's
    own run changed them: midstream pickup is off in Suricata unless the test ran with
    `--set stream.midstream=true` (the gateway picks up midstream flows by default, e.g. after a restart);
    flows are never bypassed (Suricata's `stream.bypass: no`: packet rules such as ttl/dsize keep seeing the
    packets after the stream depth, where the gateway lets the kernel forward them)."""
    from gateway.config import from_dict

    meta = json.loads((test_dir / "meta.json").read_text())
    args = " ".join(meta.get("args") or [])
    midstream = "stream.midstream=true" in args
    gateway = {"bypass": False}
    if "decoder.vxlan.enabled=true" in args:
        gateway["vxlan_port"] = 4789     # Suricata's default decoder.vxlan.ports
    if "decoder.geneve.enabled=false" in args:
        gateway["geneve_port"] = 0       # on by default in both (decoder.geneve.ports 6081)
    stream = {"midstream": midstream}
    depth = re.search(r"stream\.reassembly\.depth=(\d+)", args)
    if depth:
        stream["depth"] = int(depth.group(1))
    raw = {"stream": stream, "gateway": gateway}
    raw.update(suricata_yaml_settings(test_dir))
    return from_dict(raw)


def suricata_yaml_settings(test_dir: Path) -> dict:
    """The settings of the test's own suricata.yaml the gateway supports, as config sections: action-order
    ([ids] action_order), the EVE drop log's `flows` ([events] drop_flows) and the alert log's `xff`
    ([events.xff]). Every other setting is ignored (the test then fails if it depended on it)."""
    import yaml

    path = test_dir / "suricata.yaml"
    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    out: dict = {}
    if isinstance(doc.get("action-order"), list):
        out["ids"] = {"action_order": [str(a) for a in doc["action-order"]]}
    events: dict = {}
    for output in doc.get("outputs") or []:
        eve = output.get("eve-log") if isinstance(output, dict) else None
        if not isinstance(eve, dict):
            continue
        if eve.get("ipv6-compress") in (True, "yes"):
            events["ipv6_compress"] = True
        for typ in eve.get("types") or []:
            if not isinstance(typ, dict):
                continue
            drop = typ.get("drop")
            if isinstance(drop, dict) and drop.get("flows") in ("start", "all"):
                events["drop_flows"] = drop["flows"]
            alert = typ.get("alert")
            xff = alert.get("xff") if isinstance(alert, dict) else None
            if isinstance(xff, dict) and xff.get("enabled") in (True, "yes"):
                events["xff"] = {"enabled": True, "mode": str(xff.get("mode", "extra-data")),
                                 "deployment": str(xff.get("deployment", "reverse")),
                                 "header": str(xff.get("header", "X-Forwarded-For"))}
    if events:
        out["events"] = events
    return out


def run_replay(test_dir: Path, ips: bool) -> list[dict]:
    """Replay the test's capture with its rules in this process; return the EVE events."""
    from gateway.pipeline import Inspector
    from gateway.replay import replay_files
    from gateway.signatures import SignatureSet
    from gateway.stages import build_stages

    cfg = suricata_like_config(test_dir)
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


# Why a test fails, when it is known; matched against the test name (first prefix that matches wins).
KNOWN_CAUSES = {
    "util-action-tests__util-action-0": "scapy packets all at seq 0 (SYN, SYN, then data at the SYN's seq): our "
                                        "stream hands the third packet's payload minus its first byte to detection",
    "bug-5464-verdict-06": "alert counts of an IDS-mode http rule: Suricata inspects request data when the server "
                           "ACKs it (alerts on later packets)",
    "bug-7199": "flow:established on the final ACK after both FINs, and detect.guess-applayer-tx (http object "
                "on a packet rule's alert)",
    "issue-4220-01-ids": "content spans TCP segments: raw-stream inspection window not implemented",
    "tcp-async-01": "content spans TCP segments on a one-sided flow: raw-stream window not implemented",
    "like-ip-only": "IP-only rule semantics",
    "vxlan-decoder": "VXLAN decapsulation is not decoded (packet.py)",
    "decode-": "link layer / tunnel decoding not supported by pcapio/packet",
    "bug-4571": "IP-in-IP / IPv6-in-IPv4 tunnel decoding not supported",
    "defrag__bug-69": "EVE `packet` field / tunnel decoding",
    "eve-overlap-payload": "EVE `payload`/`packet` fields and stream-timeout pseudo packets not produced",
    "eve-payload": "EVE `payload`/`packet` fields and stream-timeout pseudo packets not produced",
    "tcp-rst-unacked-stream": "stream-event keyword / flow-timeout pseudo packets",
    "test-dsize-values": "dsize:!N on payload-less packets differs from Suricata's prefilter",
    "exception-policy": "exception policies (midstream drop) not modelled",
    "bug-8336": "rules use the transactional direction `=>` (rejected by the parser)",
    "bug-78-": "Suricata (IDS mode) inspects request data when the server ACKs it, so its alert is on the "
               "response packet and carries response fields; we inspect data as it arrives (inline timing)",
    "bug-814": "Suricata (IDS mode) inspects request data when ACKed (alert on a later packet); also VLAN field",
    "compress_ipv6": "EVE prints IPv6 addresses compressed; Suricata's default prints them expanded",
    "detect-bytetest-03": "a one-packet DNS query with a trailing byte is not detected as DNS (applayer/detect.py)",
    "bug-7552": "HTTP response without a request on a midstream flow is not parsed as HTTP",
}
_UNPRODUCED_KEYS = ("packet", "payload", "vlan", "tunnel", "ether", "packet_info", "files", "verdict", "drop.",
                    "flow.", "http.", "email", "smtp", "stream", "dns.queries", "alert.xff")


def explain_failure(test_dir: Path, failures: list[str]) -> str:
    from gateway.ids.rules import load_rules

    for prefix, cause in KNOWN_CAUSES.items():
        if test_dir.name.startswith(prefix):
            return cause
    try:
        rs = load_rules([test_dir / "test.rules"])
        if rs.rejected:
            reasons = sorted({r.reason for r in rs.rejected})
            return "rule(s) rejected by the parser: " + "; ".join(reasons)
    except Exception as e:  # noqa: BLE001
        return f"rules unreadable: {e}"
    meta = json.loads((test_dir / "meta.json").read_text())
    for check in meta.get("alert_checks", []):
        keys = [k for k in check["match"] if k.startswith(_UNPRODUCED_KEYS)]
        if check["match"].get("event_type") == "drop":
            return "expects EVE `drop` events (not produced)"
        if keys:
            return "expects EVE fields not produced: " + ", ".join(sorted(set(keys))[:4])
    return "behaviour differs: " + (failures[0] if failures else "?")


def write_expected_failures(path: Path, tests: list[Path], results: dict) -> None:
    """The table of failing tests. A test that failed before keeps the reason the file already gives (reasons are
    often written by hand after a look at the test); a new one gets explain_failure's. The summary after the
    table (`## By cause`) is kept as it was, for whoever edits it, when the file has one."""
    old_reasons: dict[str, str] = {}
    summary = ""
    if path.is_file():
        text = path.read_text()
        for line in text.splitlines():
            m = re.match(r"\| (\S+) \| (.*) \|$", line)
            if m and m.group(1) not in ("test", "---"):
                old_reasons[m.group(1)] = m.group(2)
        if "\n## By cause" in text:
            summary = text[text.index("\n## By cause"):].strip("\n")
    failed = [t for t in tests if not results[t.name]["passed"]]
    passed = len(tests) - len(failed)
    lines = ["# suricata-verify tests the replay engine does not pass yet", "",
             (f"{passed}/{len(tests)} tests pass ({100.0 * passed / max(1, len(tests)):.1f}%); the passing ones are "
              "copied here and run by tests/test_conformance.py."),
             ("Regenerate with `python -m tests.conformance CORPUS --copy-passing tests/data/suricata-verify "
              "--expected-failures tests/data/suricata-verify/EXPECTED_FAILURES.md`."), "",
             "| test | why |", "|---|---|"]
    by_cause: dict[str, int] = {}
    for t in failed:
        why = old_reasons.get(t.name) or explain_failure(t, results[t.name]["failures"]).replace("|", "\\|")
        group = why.split(":")[0]
        by_cause[group] = by_cause.get(group, 0) + 1
        lines.append(f"| {t.name} | {why} |")
    if summary:
        lines += ["", summary]
    else:
        lines += ["", "## By cause", ""] + [f"- {n} x {c}" for c, n in sorted(by_cause.items(), key=lambda kv: -kv[1])]
    path.write_text("\n".join(lines) + "\n")


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
    ap.add_argument("--expected-failures", metavar="FILE", help="write the failing tests and why (markdown)")
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
                for f in ("input.pcap", "test.rules", "meta.json", "suricata.yaml"):
                    if (t / f).is_file():
                        shutil.copyfile(t / f, dest / t.name / f)
    if args.expected_failures:
        write_expected_failures(Path(args.expected_failures), tests, results)
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
