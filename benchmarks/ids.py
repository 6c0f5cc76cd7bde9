"""IDS benchmark: ET Open load (rules, compile time, memory) and replay throughput with and without rules.

    python -m benchmarks.ids [--rules-dir DIR] [--count 60000] [--repeats 3] [--out benchmarks/results/ids.json]
                                                    # (and the figure beside it: ids.png)
    python -m benchmarks.ids --profile          # pyinstrument call tree of the rules-on run

Load: in a fresh process each (one worker), parse every *.rules file of the ruleset (rules loaded /
rejected), then build the detection engine (Hyperscan databases): first with an empty on-disk cache
("cold": full compile), then again with the cache filled ("warm_cache": a worker restart or an unchanged
reload). Resident memory is that process's VmRSS after the load.

Throughput: a mixed trace crafted with scapy once, outside the timed region, of interleaved
conversations - HTTP (request, 8 KB response in 1.4 KB segments, ACKs, close), DNS over UDP (query and
answer) and TLS 1.3 (ClientHello with SNI; ServerHello, CCS and 2.5 KB of encrypted handshake; the client's CCS,
Finished and request; an 8 KB encrypted response). Two configurations: `rules_off` (firewall, stream,
app-layer) and `rules_on` (the same plus the IDS stage with the whole ruleset), each pass with a fresh
Inspector, run alternately; the ratio is the median of the per-round ratios. Two measures:

- `replay`: what `gateway replay trace.pcap` does - the trace written once to a pcap file, read back by the
  replay driver, EVE events (a `flow` event per flow, alerts) written to a file. The issue's aim (rules-on
  >= 0.6 of rules-off) is stated on this one.
- `throughput` (inspection only): the same datagrams handed to Inspector.process from memory, no pcap
  reading, events discarded - the pipeline's own share, so the IDS weighs more in it.

pps_cpu / mbps_cpu divide by process CPU time (per core); medians over the repeats. Counts and time are
bounded (--count packets per run, --max-seconds per configuration).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import struct
import time
from pathlib import Path

from gateway.config import Config
from gateway.pipeline import Inspector
from gateway.stages import build_stages

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_RULES = REPO.parent / "shared" / "rulesets" / "et-open-2024"


def write_json(path: str | Path, data: dict) -> Path:
    """A results file: indented JSON, its directory made if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ------------------------------------------------------------------------------------------ trace

def _client_hello(sni: bytes) -> bytes:
    ciphers = struct.pack("!7H", 0x1301, 0x1302, 0xC02B, 0xC02F, 0xC00A, 0x009C, 0x002F)
    sni_ext = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
    groups = struct.pack("!HHH2H", 10, 6, 4, 0x001D, 0x0017)
    exts = sni_ext + groups
    body = (b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", len(ciphers)) + ciphers + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def build_trace(conversations: int, seed: int = 1) -> list[bytes]:
    """Interleaved HTTP / DNS / TLS conversations as raw IPv4 datagrams (scapy, outside timing)."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, TCP, UDP

    rnd = random.Random(seed)
    convs: list[list[bytes]] = []
    body = bytes(rnd.getrandbits(8) for _ in range(8192))
    for n in range(conversations):
        client = f"10.1.{(n >> 8) & 255}.{n & 255 or 1}"
        server = f"198.18.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
        cport = 20000 + n % 40000
        kind = ("http", "http", "http", "http", "http", "dns", "dns", "dns", "tls", "tls")[n % 10]
        pk: list[bytes] = []
        if kind == "dns":
            name = f"host{n}.example{n % 7}.com"
            q = DNS(id=n & 0xFFFF, rd=1, qd=DNSQR(qname=name))
            pk.append(bytes(IP(src=client, dst=server) / UDP(sport=cport, dport=53) / q))
            a = DNS(id=n & 0xFFFF, qr=1, rd=1, ra=1, qd=DNSQR(qname=name),
                    an=DNSRR(rrname=name, rdata="198.18.1.1"))
            pk.append(bytes(IP(src=server, dst=client) / UDP(sport=53, dport=cport) / a))
            convs.append(pk)
            continue
        sport = 80 if kind == "http" else 443
        def c(flags, seq, ack, data=b"", client=client, server=server, cport=cport, sport=sport):
            return bytes(IP(src=client, dst=server) / TCP(sport=cport, dport=sport, flags=flags, seq=seq,
                                                          ack=ack) / data)

        def s(flags, seq, ack, data=b"", client=client, server=server, cport=cport, sport=sport):
            return bytes(IP(src=server, dst=client) / TCP(sport=sport, dport=cport, flags=flags, seq=seq,
                                                          ack=ack) / data)
        cs, ss = 1000, 5000
        pk += [c("S", cs, 0), s("SA", ss, cs + 1), c("A", cs + 1, ss + 1)]
        cs, ss = cs + 1, ss + 1
        if kind == "http":
            req = (f"GET /app/page{n}.php?id={rnd.randint(1, 99999)}&q=search HTTP/1.1\r\nHost: www.site{n % 50}"
                   f".example\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36\r\n"
                   f"Accept: text/html,application/xhtml+xml\r\nAccept-Language: ja,en;q=0.8\r\n"
                   f"Cookie: session={rnd.getrandbits(64):x}\r\n\r\n").encode()
            first = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n"
                     % len(body))
            exchanges = [(True, req), (False, first + body)]
        else:
            # a TLS 1.3 session as browsers run it: ClientHello; ServerHello, CCS and the encrypted rest of the
            # server's handshake; the client's CCS, Finished and request; then the encrypted response
            def appdata(size):
                return b"\x17\x03\x03" + struct.pack("!H", size) + bytes(rnd.getrandbits(8) for _ in range(size))
            ccs = b"\x14\x03\x03\x00\x01\x01"
            server_hello = (b"\x16\x03\x03\x00\x32\x02\x00\x00\x2e\x03\x03" + bytes(32) +
                            b"\x00\x13\x01\x00\x00\x06\x00\x2b\x00\x02\x03\x04")
            exchanges = [(True, _client_hello(f"www.tls{n % 30}.example".encode())),
                         (False, server_hello + ccs + appdata(2500)),
                         (True, ccs + appdata(53) + appdata(120)),
                         (False, appdata(8000))]
        for to_server, payload in exchanges:
            if to_server:
                pk.append(c("PA", cs, ss, payload))
                cs += len(payload)
                continue
            for i in range(0, len(payload), 1400):
                seg = payload[i:i + 1400]
                pk.append(s("A" if i + 1400 < len(payload) else "PA", ss, cs, seg))
                ss += len(seg)
                if (i // 1400) % 2:
                    pk.append(c("A", cs, ss))
        pk += [c("FA", cs, ss), s("FA", ss, cs + 1), c("A", cs + 1, ss + 1)]
        convs.append(pk)
    # interleave up to 32 conversations at a time, as on a link
    out: list[bytes] = []
    active: list[list[bytes]] = []
    pending = list(reversed(convs))
    while pending or active:
        while pending and len(active) < 32:
            active.append(list(reversed(pending.pop())))
        i = rnd.randrange(len(active))
        out.append(active[i].pop())
        if not active[i]:
            active.pop(i)
    return out


# ------------------------------------------------------------------------------------------ runs

def measure_load(rules_dir: Path) -> dict:
    """One worker's load of the whole ruleset, in this (fresh) process: parse, then build the engine with
    whatever GATEWAY_HS_CACHE says. Returns times and resident memory."""
    import gc

    from gateway.ids.classification import load_classifications
    from gateway.ids.engine import DetectionEngine
    from gateway.ids.rules import load_rules
    from gateway.ids.vars import Variables

    files = sorted(rules_dir.glob("*.rules"))
    rss0 = rss_mb()
    t0 = time.perf_counter()
    ruleset = load_rules(files, Variables(), load_classifications(None))
    t1 = time.perf_counter()
    engine = DetectionEngine(ruleset.rules)
    t2 = time.perf_counter()
    gc.collect()
    gc.freeze()
    rss1 = rss_mb()
    return {
        "rules_loaded": len(ruleset.rules),
        "rules_rejected": len(ruleset.rejected),
        "load_percent": round(100 * len(ruleset.rules) / max(1, len(ruleset.rules) + len(ruleset.rejected)), 2),
        "parse_seconds": round(t1 - t0, 2),
        "hyperscan_build_seconds": round(t2 - t1, 2),
        "compile_seconds": round(t2 - t0, 2),
        "prefilter_databases": sum(len(g.prefilters) + len(g.port_prefilters) +
                                   sum(len(v) for v in g.tx_prefilters.values()) for g in engine.groups.values()),
        "hyperscan_from_cache": engine.compiled_from_cache,
        "rss_mb_before": round(rss0, 1),
        "rss_mb_after_load": round(rss1, 1),
    }


def _load_in_subprocess(rules_dir: Path, cache: str) -> dict:
    import subprocess
    import sys
    env = dict(os.environ, GATEWAY_HS_CACHE=cache)
    out = subprocess.run([sys.executable, "-m", "benchmarks.ids", "--load-only", "--rules-dir", str(rules_dir)],
                         env=env, cwd=str(REPO), capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout)


class Traces:
    """Differently seeded traces (new URIs, cookies, query ids, keys; the same hosts, user agents and server
    names) taken in turn, one per pass: a pass never meets the exact requests of the last few passes, which
    the per-database memos of the IDS (prefilter.py) would otherwise all remember. Each configuration takes
    them in the same order."""

    def __init__(self, conversations: int, seeds: int, pcap_dir: Path | None = None):
        self.traces = [build_trace(conversations, seed=1 + i) for i in range(seeds)]
        self.pcaps: list[Path] = []
        if pcap_dir is not None:
            for i, trace in enumerate(self.traces):
                self.pcaps.append(pcap_dir / f"trace{i}.pcap")
                write_pcap(trace, self.pcaps[-1])
        self.next: dict[str, int] = {}

    def take(self, name: str) -> int:
        i = self.next.get(name, 0)
        self.next[name] = (i + 1) % len(self.traces)
        return i


def _one_run(stages, traces: Traces, name: str, count: int, budget: float, replay: bool = False) -> dict:
    """Passes of `stages` over the traces until `count` packets or `budget` seconds: from memory into
    Inspector.process (events discarded), or with `replay` through the replay driver (pcap reader, EVE
    writer to a file), as `gateway replay` runs."""
    from gateway.events import EveWriter
    from gateway.replay import replay_files

    done = sent = 0
    cpu = wall = 0.0
    while done < count and wall < budget:
        i = traces.take(name)
        trace = traces.traces[i]
        # a fresh Inspector per pass: every pass meets new flows
        if replay:
            eve_path = traces.pcaps[i].with_suffix(".eve.json")
            eve = EveWriter(str(eve_path))
            insp = Inspector(Config(), stages(), sink=eve)
            c0, w0 = time.process_time(), time.perf_counter()
            errors = replay_files(insp, [str(traces.pcaps[i])])
            eve.close()
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            eve_path.unlink()
            if errors:
                raise RuntimeError(f"replay of {traces.pcaps[i]} failed: {errors}")
        else:
            insp = Inspector(Config(), stages(), sink=lambda e: None)
            process = insp.process
            ts = 1_700_000_000.0
            c0, w0 = time.process_time(), time.perf_counter()
            for p in trace:
                process(p, ts)
                ts += 20e-6
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            insp.finish()
        done += len(trace)
        sent += sum(len(p) for p in trace)
    return {"packets": done, "cpu": cpu, "wall": wall, "bytes": sent}


def write_pcap(trace: list[bytes], path: Path, ts0: float = 1_700_000_000.0, step: float = 20e-6) -> None:
    """The trace as a classic pcap of raw IP datagrams (link type 101), packets `step` seconds apart."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for i, p in enumerate(trace):
            us = round((ts0 + i * step) * 1e6)
            f.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(p), len(p)) + p)


def _summary(runs: list[dict]) -> dict:
    med = statistics.median
    return {
        "packets": runs[0]["packets"],
        "pps_cpu": round(med([r["packets"] / r["cpu"] for r in runs])),
        "mbps_cpu": round(med([r["bytes"] * 8 / r["cpu"] / 1e6 for r in runs]), 1),
        "pps_cpu_best": round(max(r["packets"] / r["cpu"] for r in runs)),
        "pps": round(med([r["packets"] / r["wall"] for r in runs])),
        "mbps": round(med([r["bytes"] * 8 / r["wall"] / 1e6 for r in runs]), 1),
    }


def time_configs(configs: dict, traces: Traces, count: int, repeats: int, max_seconds: float,
                 replay: bool = False) -> dict:
    """Run the configurations alternately (off, on, off, on, ...) so load from other processes on a shared
    machine hits them alike; each gets `repeats` runs."""
    runs: dict[str, list] = {name: [] for name in configs}
    budget = max_seconds / repeats
    for _ in range(repeats):
        for name, stages in configs.items():
            runs[name].append(_one_run(stages, traces, name, count, budget, replay))
    out = {name: _summary(r) for name, r in runs.items()}
    names = list(configs)
    if len(names) == 2:
        a, b = names
        ratios = [(rb["packets"] / rb["cpu"]) / (ra["packets"] / ra["cpu"]) for ra, rb in zip(runs[a], runs[b])]
        out[f"{b}_vs_{a}"] = round(statistics.median(ratios), 3)
        if len(ratios) >= 4:
            # how much the rounds disagree on a shared machine: the ratio's first and third quartiles
            out[f"{b}_vs_{a}_quartiles"] = [round(q, 3) for q in statistics.quantiles(ratios, n=4)[::2]]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ids", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules-dir", default=str(DEFAULT_RULES))
    ap.add_argument("--count", type=int, default=10_080, help="packets per timed run (two passes of the trace)")
    ap.add_argument("--conversations", type=int, default=400)
    ap.add_argument("--traces", type=int, default=4, help="differently seeded traces taken in turn (class Traces)")
    ap.add_argument("--repeats", type=int, default=25, help="alternating rounds per measure")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="per configuration")
    ap.add_argument("--out", default=str(RESULTS / "ids.json"))
    ap.add_argument("--profile", action="store_true", help="print a pyinstrument tree of the rules-on run")
    ap.add_argument("--load-only", action="store_true", help=argparse.SUPPRESS)   # internal: one worker's load
    args = ap.parse_args(argv)
    rules_dir = Path(args.rules_dir)
    if not rules_dir.is_dir():
        raise SystemExit(f"rules directory not found: {rules_dir}")

    if args.load_only:
        print(json.dumps(measure_load(rules_dir)))
        return 0
    import tempfile
    with tempfile.TemporaryDirectory() as cache:
        cold = _load_in_subprocess(rules_dir, cache)       # empty cache: parse + full Hyperscan compile
        warm = _load_in_subprocess(rules_dir, cache)       # what a worker restart or unchanged reload costs
        load = {"ruleset": rules_dir.name, "cold": cold, "warm_cache": warm,
                "rss_mb_per_worker": cold["rss_mb_after_load"]}
        print(json.dumps(load, indent=1))
        from gateway.ids.stage import build_ids_stage
        os.environ["GATEWAY_HS_CACHE"] = cache
        stage = build_ids_stage(Config(), sorted(rules_dir.glob("*.rules")))
    engine = stage.engine

    cfg = Config()
    def off():
        return build_stages(cfg, None)

    def on():
        return build_stages(cfg, None) + [stage]
    with tempfile.TemporaryDirectory() as tmp:
        traces = Traces(args.conversations, args.traces, Path(tmp))
        trace = traces.traces[0]
        if args.profile:
            from pyinstrument import Profiler
            prof = Profiler()
            prof.start()
            _one_run(on, traces, "rules_on", min(args.count, 20000), 30)
            prof.stop()
            print(prof.output_text(unicode=False, color=False, show_all=False))
            return 0
        configs = {"rules_off": off, "rules_on": on}
        replay = time_configs(configs, traces, args.count, args.repeats, 2 * args.max_seconds, replay=True)
        engine.evaluated = 0
        results = time_configs(configs, traces, args.count, args.repeats, 2 * args.max_seconds)
    results["rules_on"]["rule_evaluations_per_packet"] = round(
        engine.evaluated / max(1, results["rules_on"]["packets"] * args.repeats), 3)
    out = {"load": load, "trace": {"packets": len(trace), "bytes": sum(len(p) for p in trace),
                                   "conversations": args.conversations, "mix": "50% HTTP, 30% DNS, 20% TLS",
                                   "seeds": args.traces},
           "replay": replay, "throughput": results, "python": platform.python_version(),
           "machine": platform.machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps({"replay": out["replay"], "inspection_only": out["throughput"]}, indent=1))
    from .plot import plot_ids
    print(f"wrote {write_json(args.out, out)}, {plot_ids(out, Path(args.out).with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
