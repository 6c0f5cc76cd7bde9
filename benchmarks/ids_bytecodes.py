"""The IDS's cost in bytecodes: how many Python bytecode instructions the IDS stage executes per pass of the IDS
benchmark's trace, by function, by source line and by kind of packet.

    python -m benchmarks.ids_bytecodes [--rules-dir DIR] [--conversations 400] [--top 40]
                                       [--out benchmarks/results/ids_bytecodes.json]

Counts are exact and repeatable (sys.settrace's opcode events inside IdsStage.on_packet, one pass of the trace
after a warm-up pass of another seed), and they take seconds, so an engine change can be judged line by line
before the slower callgrind count (benchmarks/ids_instructions.py), which they track: the interpreter is most of
the IDS's instructions. They do not see the C side (Hyperscan, dict and bytes work, allocation).
"""
from __future__ import annotations

import argparse
import collections
import linecache
import sys
import time
from pathlib import Path

from .ids import DEFAULT_RULES, REPO, RESULTS, build_trace, write_json


def packet_kind(ctx) -> str:
    """The benchmark trace's packet kinds: dns-q/-a; http/tls x c-data (client bytes), s-data0/1/N (the server's
    first, second, later segments), empty (no payload)."""
    p = ctx.pkt
    if p.proto == 17:
        return "dns-q" if ctx.to_server else "dns-a"
    app = "http" if (p.dport if ctx.to_server else p.sport) == 80 else "tls"
    if not p.payload:
        return f"{app}-empty"
    if ctx.to_server:
        return f"{app}-c-data"
    n = ctx.flow.state.get("_bench_segments", 0)
    ctx.flow.state["_bench_segments"] = n + 1
    return f"{app}-s-data{n if n < 2 else 'N'}"


def count(stage, trace: list[bytes]) -> dict:
    """Run one pass of trace through firewall, stream, app layer and `stage`, counting the bytecodes executed
    inside stage.on_packet."""
    from gateway.config import Config
    from gateway.pipeline import Inspector
    from gateway.stages import build_stages

    by_func: collections.Counter = collections.Counter()
    by_line: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    packets: collections.Counter = collections.Counter()
    root = str(REPO) + "/"

    def local(frame, event, _arg):
        if event == "opcode":
            code = frame.f_code
            name = code.co_filename.replace(root, "")
            by_func[(name, code.co_name)] += 1
            by_line[(name, frame.f_lineno)] += 1
        return local

    def tracer(frame, _event, _arg):
        frame.f_trace_opcodes = True
        return local

    inner = stage.on_packet

    def on_packet(ctx):
        kind = packet_kind(ctx)
        before = sum(by_func.values())
        sys.settrace(tracer)
        try:
            return inner(ctx)
        finally:
            sys.settrace(None)
            by_kind[kind] += sum(by_func.values()) - before
            packets[kind] += 1

    stage.on_packet = on_packet
    try:
        cfg = Config()
        insp = Inspector(cfg, build_stages(cfg, None) + [stage], sink=lambda e: None)
        ts = 1.7e9
        for p in trace:
            insp.process(p, ts)
            ts += 20e-6
        insp.finish()
    finally:
        del stage.on_packet         # the class's method again
    return {"by_func": by_func, "by_line": by_line, "by_kind": by_kind, "packets": packets}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ids_bytecodes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules-dir", default=str(DEFAULT_RULES))
    ap.add_argument("--conversations", type=int, default=400)
    ap.add_argument("--top", type=int, default=40, help="functions and lines listed")
    ap.add_argument("--out", default=str(RESULTS / "ids_bytecodes.json"))
    args = ap.parse_args(argv)
    rules_dir = Path(args.rules_dir)
    if not rules_dir.is_dir():
        raise SystemExit(f"rules directory not found: {rules_dir}")
    from gateway.config import Config
    from gateway.ids.stage import build_ids_stage

    stage = build_ids_stage(Config(), sorted(rules_dir.glob("*.rules")))
    warm, trace = build_trace(args.conversations, seed=1), build_trace(args.conversations, seed=2)
    count(stage, warm)                 # memos and caches as in a running worker
    c = count(stage, trace)
    total = sum(c["by_func"].values())
    kinds = {k: {"packets": c["packets"][k], "bytecodes": v, "per_packet": round(v / c["packets"][k])}
             for k, v in c["by_kind"].most_common()}
    result = {
        "bytecodes": total, "packets": len(trace), "per_packet": round(total / len(trace), 1),
        "by_kind": kinds,
        "by_function": [{"function": f"{f}:{n}", "bytecodes": v} for (f, n), v in c["by_func"].most_common(args.top)],
        "by_line": [{"line": f"{f}:{ln}", "bytecodes": v,
                     "source": linecache.getline(str(REPO / f), ln or 0).strip()[:100]}
                    for (f, ln), v in c["by_line"].most_common(args.top)],
        "rules_loaded": len(stage.engine.rules), "ruleset": rules_dir.name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(args.out, result)
    print(f"IDS bytecodes per pass: {total:,} ({result['per_packet']} per packet of {len(trace)})")
    for k, v in kinds.items():
        print(f"  {k:14} {v['packets']:5} packets  {v['bytecodes']:9,}  {v['per_packet']:6} per packet")
    for row in result["by_function"][:15]:
        print(f"  {row['bytecodes']:9,}  {row['function']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
