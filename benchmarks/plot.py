"""One figure from the results JSON: offline packets/s per configuration (left), inline goodput of
(a)-(d) with the (c)/(b) and (d)/(a) ratios annotated (right).

    python -m benchmarks.plot [--offline benchmarks/results/offline.json] [--inline ...] [--out .../bench.png]
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
    fig.suptitle(f"clinic-gateway benchmarks - {stamp.get('cpu', '?')}, {stamp.get('cores', '?')} cores, "
                 f"Python {stamp.get('python', '?')}", fontsize=12)
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


def _inline_panel(ax, inline: dict | None) -> None:
    if not inline or not inline.get("cases"):
        reason = (inline or {}).get("skipped", "no inline results")
        ax.text(0.5, 0.5, f"inline: {reason}", ha="center", va="center", transform=ax.transAxes, wrap=True)
        ax.set_axis_off()
        return
    cases = [c for c in inline["cases"] if "error" not in c]
    names = [c["label"].replace(" forwarding", "\nforwarding").replace(", ", "\n", 1) for c in cases]
    good = [c["goodput_mbps"] for c in cases]
    x = range(len(cases))
    # Error bars: the spread of the interleaved rounds (the bar is the median round).
    lo = [c["goodput_mbps"] - min(r["goodput_mbps"] for r in c.get("runs", [c]) if r.get("goodput_mbps") is not None)
          for c in cases]
    hi = [max(r["goodput_mbps"] for r in c.get("runs", [c]) if r.get("goodput_mbps") is not None) - c["goodput_mbps"]
          for c in cases]
    bars = ax.bar(list(x), good, color=[COLOURS[c["case"]] for c in cases], yerr=[lo, hi], capsize=3,
                  ecolor="#333333")
    ax.set_xticks(list(x), names, fontsize=8)
    ax.set_ylabel("iperf3 goodput, Mbit/s")
    p = inline["params"]
    ax.set_title(f"Inline (netns lab): iperf3 -P {p['streams']} -t {p['seconds']:g}, lan -> wan, fail-open off, "
                 f"median of {p.get('repeats', 1)} rounds", fontsize=10)
    top = max(good) if good else 1
    for bar, c in zip(bars, cases, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + top * 0.03,
                f"{c['goodput_mbps']:.0f}\n{c['forwarded_pps'] / 1000:.0f}k pkt/s", ha="center", va="bottom",
                fontsize=8)
    ax.set_ylim(0, top * 1.35)
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
    args = ap.parse_args(argv)
    off, inl = _load(args.offline), _load(args.inline)
    if off is None and inl is None:
        print(f"benchmarks.plot: neither {args.offline} nor {args.inline} is readable JSON", file=sys.stderr)
        return 1
    print(f"wrote {plot(off, inl, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
