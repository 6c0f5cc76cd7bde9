"""One figure from the results JSON: offline packets/s per configuration (left), inline goodput of
(a)-(d) with the (c)/(b) and (d)/(a) ratios annotated (right).

    python -m benchmarks.plot [--offline benchmarks/results/offline.json] [--inline ...] [--out .../bench.png]
    python -m benchmarks.plot --markdown        # the tables benchmarks/README.md quotes
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COLOURS = {"a": "#4c72b0", "b": "#8c8c8c", "c": "#dd8452", "d": "#55a868"}


def plot(offline: dict | None, inline: dict | None, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")          # no display: benchmarks run on servers and in namespaces
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 6.2), gridspec_kw={"width_ratios": [1, 1.25]})
    _offline_panel(ax1, offline)
    _inline_panel(ax2, inline)
    stamp = (offline or inline or {}).get("host", {})
    load = stamp.get("loadavg_before", ["?"])[0]
    fig.suptitle(f"clinic-gateway benchmarks - {stamp.get('cpu', '?')}, {stamp.get('cores', '?')} cores "
                 f"(shared: load average {load} at the start), Python {stamp.get('python', '?')}", fontsize=12)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_ids(ids: dict, out: Path) -> Path:
    """benchmarks/ids.py's figure: packets per CPU-second without and with ET Open on the HTTP/DNS/TLS mix, through
    the replay driver and inspection only (each ratio against the 0.6 aim), and the ruleset's load (parse,
    Hyperscan build cold / warm cache, memory)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    # replay (the pcap through `gateway replay`'s path, the measure the aim is stated on) and inspection only
    # (datagrams from memory); older result files have only the latter
    groups = [(k, label) for k, label in (("replay", "gateway replay (pcap, EVE)"),
                                          ("throughput", "inspection only (from memory)")) if k in ids]
    top = 0
    for g, (key, label) in enumerate(groups):
        thr = ids[key]
        vals = [thr["rules_off"]["pps_cpu"], thr["rules_on"]["pps_cpu"]]
        top = max(top, *vals)
        xs = [g - 0.2, g + 0.2]
        bars = ax1.bar(xs, vals, 0.38, color=[COLOURS["b"], COLOURS["c"]],
                       label=["without rules", "ET Open loaded"] if g == 0 else None)
        for b, n in zip(bars, ("rules_off", "rules_on")):
            ax1.annotate(f"{thr[n]['pps_cpu']:,}\n{thr[n]['mbps_cpu']} Mbit/s", (b.get_x() + b.get_width() / 2,
                         b.get_height()), ha="center", va="bottom", fontsize=8)
        ax1.hlines(0.6 * vals[0], g - 0.4, g + 0.4, color="k", ls="--", lw=1)
    ax1.set_xticks(range(len(groups)), [f"{label}\nratio {ids[key].get('rules_on_vs_rules_off')}"
                                        for key, label in groups])
    ax1.set_title(f"packets per CPU-second, {ids['trace']['mix']} (dashed: the 0.6 aim)", fontsize=10)
    ax1.set_ylabel("packets per CPU-second")
    ax1.set_ylim(0, top * 1.25)
    ax1.legend(loc="upper right", fontsize=8)
    load = ids["load"]
    rows = [("parse", load["cold"]["parse_seconds"], load["warm_cache"]["parse_seconds"]),
            ("Hyperscan build", load["cold"]["hyperscan_build_seconds"], load["warm_cache"]["hyperscan_build_seconds"])]
    x = range(len(rows))
    ax2.bar([i - 0.2 for i in x], [r[1] for r in rows], 0.4, label="empty cache", color=COLOURS["a"])
    ax2.bar([i + 0.2 for i in x], [r[2] for r in rows], 0.4, label="warm cache", color=COLOURS["d"])
    ax2.set_xticks(list(x), [r[0] for r in rows])
    ax2.set_ylabel("seconds")
    ax2.set_title(f"ET Open load: {load['cold']['rules_loaded']:,} rules, {load['rss_mb_per_worker']} MB per worker "
                  f"(aims: < 20 s, < 400 MB)", fontsize=10)
    ax2.legend()
    fig.suptitle(f"IDS benchmark ({ids.get('when', '?')}, Python {ids.get('python', '?')})", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _offline_panel(ax, offline: dict | None) -> None:
    if not offline:
        ax.text(0.5, 0.5, "no offline results", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    res = offline["results"]
    labels = [r["label"] for r in res]
    # Per core = packets per CPU-second of the process: honest on a machine other work shares.
    pps = [(r.get("pps_cpu") or r["pps"]) / 1000 for r in res]
    y = range(len(res))
    bars = ax.barh(list(y), pps, color="#4c72b0")
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel("thousand packets per CPU-second (one core), median of runs")
    tr = offline.get("trace", {})
    ax.set_title(f"Offline hot path: {offline['params']['count']:,} packets/run, "
                 f"mean {tr.get('mean_ip_bytes', '?')} B IP packet", fontsize=10)
    top = max(pps) if pps else 1
    for bar, r in zip(bars, res, strict=True):
        per_core = r.get("pps_cpu") or r["pps"]
        mbps = r.get("mbps_cpu") or r["mbps"]
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2,
                f"{per_core:,}/s  {mbps:.0f} Mbit/s  {1e6 / per_core:.1f} us", va="center", fontsize=8)
    ax.set_xlim(0, top * 1.6)
    ax.grid(axis="x", alpha=0.3)


def _short(c: dict) -> str:
    q = f"{c['queues']}q" if c.get("queues") else ""
    return {"a": "(a) kernel\nforwarding", "b": f"(b) bare NFQ\naccept {q}", "c": f"(c) gateway\nbypass off {q}",
            "d": f"(d) gateway\nbypass on {q}"}[c["case"]]


def _inline_panel(ax, inline: dict | None) -> None:
    if not inline or not inline.get("cases"):
        reason = (inline or {}).get("skipped", "no inline results")
        ax.text(0.5, 0.5, f"inline: {reason}", ha="center", va="center", transform=ax.transAxes, wrap=True)
        ax.set_axis_off()
        return
    cases = [c for c in inline["cases"] if "error" not in c]
    good = [c["goodput_mbps"] for c in cases]
    # Error bars: the spread of the interleaved rounds (the bar is the median round).
    spread = [[r["goodput_mbps"] for r in c.get("runs", [c]) if r.get("goodput_mbps") is not None] or [g]
              for c, g in zip(cases, good, strict=True)]
    lo = [g - min(s) for g, s in zip(good, spread, strict=True)]
    hi = [max(s) - g for g, s in zip(good, spread, strict=True)]
    x = range(len(cases))
    ax.bar(list(x), good, color=[COLOURS[c["case"]] for c in cases], yerr=[lo, hi], capsize=3, ecolor="#333333")
    ax.set_xticks(list(x), [_short(c) for c in cases], fontsize=8)
    ax.set_ylabel("iperf3 goodput, Mbit/s")
    p = inline["params"]
    ax.set_title(f"Inline (netns lab): {p['streams']} TCP streams lan -> wan, {p['seconds']:g} s, fail-open off\n"
                 f"bars: median of {p.get('repeats', 1)} interleaved rounds, whiskers: min-max", fontsize=10)
    top = max(g + h for g, h in zip(good, hi, strict=True)) if good else 1
    for i, c in enumerate(cases):
        ax.text(i, good[i] + hi[i] + top * 0.015, f"{c['goodput_mbps']:.0f}\n{c['forwarded_pps'] / 1000:.0f}k pkt/s",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, top * 1.45)
    lines = []
    for key, r in inline.get("ratios", {}).items():
        which, q = key.rsplit("_", 1)
        name = "(c)/(b)" if which == "c_over_b" else "(d)/(a)"
        ok = "meets" if r["goodput"] >= r["target"] else "BELOW"
        lines.append(f"{name} {q}: goodput {r['goodput']:.2f}, pkt/s {r['pps']:.2f}  "
                     f"(target >= {r['target']}: {ok})")
    if lines:
        ax.text(0.99, 0.98, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=8.5,
                family="monospace", bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9})
    ax.grid(axis="y", alpha=0.3)


def markdown(offline: dict | None, inline: dict | None) -> str:
    """The README's tables of the last run."""
    out = []
    if offline:
        h = offline["host"]
        out += [(f"Offline, `{offline.get('command', '')}` ({offline['timestamp']}, {h['cpu']}, {h['cores']} cores, "
                 f"load average {h['loadavg_before'][0]} at the start):"), "",
                "| configuration | pkt/s per core (CPU time) | Mbit/s per core | us/packet | pkt/s wall |",
                "|---|---:|---:|---:|---:|"]
        for r in offline["results"]:
            per_core = r.get("pps_cpu") or r["pps"]
            out.append(f"| {r['label']} | {per_core:,} | {r.get('mbps_cpu') or r['mbps']:,.0f} | "
                       f"{1e6 / per_core:.1f} | {r['pps']:,} |")
        out.append("")
    if inline and inline.get("cases"):
        p = inline["params"]
        out += [(f"Inline, `{inline.get('command', '')}` ({inline['timestamp']}; {p['streams']} TCP streams, "
                 f"{p['seconds']:g} s per run, median of {p.get('repeats', 1)} interleaved rounds):"), "",
                ("| case | queues | goodput Mbit/s (min-max) | forwarded pkt/s | via userspace pkt/s | "
                 "userspace CPU % | retransmits |"), "|---|---:|---:|---:|---:|---:|---:|"]
        for c in inline["cases"]:
            if "error" in c:
                out.append(f"| {c['label']} | {c.get('queues') or '-'} | error: {c['error']} | | | | |")
                continue
            g = [r["goodput_mbps"] for r in c.get("runs", [c]) if r.get("goodput_mbps") is not None]
            out.append(f"| {c['label']} | {c.get('queues') or '-'} | {c['goodput_mbps']:,.0f} "
                       f"({min(g):,.0f}-{max(g):,.0f}) | {c['forwarded_pps']:,} | "
                       f"{c.get('queued_pps', 0):,} | {c.get('userspace_cpu_percent', '-')} | {c.get('retransmits')} |")
        out += ["", "| ratio | goodput | forwarded pkt/s | target |", "|---|---:|---:|---:|"]
        for key, r in inline.get("ratios", {}).items():
            which, q = key.rsplit("_", 1)
            name = "(c)/(b)" if which == "c_over_b" else "(d)/(a)"
            out.append(f"| {name}, {q} | {r['goodput']:.2f} | {r['pps']:.2f} | >= {r['target']} |")
        out.append("")
    return "\n".join(out)


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.plot")
    ap.add_argument("--offline", type=Path, default=RESULTS / "offline.json")
    ap.add_argument("--inline", type=Path, default=RESULTS / "inline.json")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench.png")
    ap.add_argument("--markdown", action="store_true", help="print the README tables instead of plotting")
    args = ap.parse_args(argv)
    off, inl = _load(args.offline), _load(args.inline)
    if args.markdown:
        print(markdown(off, inl))
        return 0
    if off is None and inl is None:
        print(f"benchmarks.plot: neither {args.offline} nor {args.inline} is readable JSON", file=sys.stderr)
        return 1
    print(f"wrote {plot(off, inl, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
