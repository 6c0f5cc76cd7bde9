"""Offline hot-path benchmark: packets/s and Mbit/s of one process (= one core) over a realistic mix.

The traffic is crafted with scapy once, outside every timed region: a few templates per kind of
conversation (TCP with handshake, 1-1.4 KB data segments both ways, pure ACKs and FIN close; DNS over
UDP; ICMP echo; SYNs to TCP 445 that the clinic firewall rejects). Each conversation instance is a
template with its own client address and port patched in (so every flow is distinct), and up to
`--concurrency` conversations are interleaved packet by packet, as on a real link. Checksums are not
fixed up after patching: nothing on the path checks them (the kernel already has, inline).

Configurations, each timed over the same trace with a fresh Inspector:
    decode              packet.decode only
    decode_flow         decode + FlowTable.lookup (+ the once-a-second expiry sweep)
    firewall            Inspector with the firewall stage only, clinic config, bypass off
    firewall_stream     Inspector with the firewall and TCP stream reassembly stages, bypass off
    all_stages          Inspector with every stage `gateway run` builds (build_stages with the default
                        signature set: today firewall, stream, app-layer; IDS once the set has rules)
    all_stages_bypass   the same with bypass on (flows past stream depth skip the stages; offline they
                        still pay decode + flow lookup, inline the kernel forwards them)
    replay              the replay driver end to end: pcap file -> read_frames -> Inspector with all
                        stages -> EVE JSON file

Counts are bounded (`--count` packets per run) and so is time (`--max-seconds` per configuration,
split over the repeats). `pps_cpu` (and `mbps_cpu`) divide by the process's CPU time: packets per
CPU-second, i.e. per core, which stays meaningful when other work shares the cores; `pps` and `mbps`
divide by wall time. Both are medians over the repeats.

    python -m benchmarks.offline [--count 200000] [--repeats 3] [--out benchmarks/results/offline.json]
    python -m benchmarks.offline --profile all_stages   # py-spy shares + pyinstrument call tree of one config
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from gateway import config as config_mod
from gateway.firewall import FirewallStage
from gateway.flow import FlowTable
from gateway.packet import decode
from gateway.pipeline import Inspector
from gateway.signatures import SignatureSet
from gateway.stages import build_stages
from gateway.stream import StreamStage

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 1024                  # packets between two looks at the clock
DEFAULT_COUNT = 200_000
DEFAULT_MAX_SECONDS = 20.0
WIRE_GAP = 20e-6              # packet-time spacing of the trace (50,000 pkt/s on the wire)

# (client zone, its gateway interface, first three octets of the client address)
CLIENT_NETS = (("lan", "gw-lan", (10, 10, 0)), ("guest", "gw-guest", (10, 30, 0)))
SERVERS = ("198.18.0.10", "198.18.1.20", "198.19.2.30", "198.18.7.40")

# Share of conversations by kind (the resulting packet shares are in the JSON: TCP dominates).
MIX = (("tcp", 0.33), ("dns", 0.55), ("icmp", 0.10), ("blocked", 0.02))


# ---------------------------------------------------------------------------------------------- trace

class Template:
    """One conversation as (bytes, sent_by_client) pairs, client 10.x.0.10:40000."""

    def __init__(self, kind: str, packets: list[tuple[bytes, bool]]):
        self.kind = kind
        self.packets = packets


def _tcp_templates(rng: random.Random, n: int) -> list[Template]:
    return [_tcp_conversation(rng, SERVERS[i % len(SERVERS)], (443, 80, 8443, 993)[i % 4]) for i in range(n)]


def _tcp_conversation(rng: random.Random, srv: str, dport: int) -> Template:
    """Handshake, eight rounds of a 1-1.4 KB request and four 1.2-1.4 KB response segments (the client
    ACKs every second one), FIN close."""
    from scapy.layers.inet import IP, TCP

    seq = {True: rng.randrange(1 << 31), False: rng.randrange(1 << 31)}   # by sent_by_client
    pkts: list[tuple[bytes, bool]] = []

    def seg(from_client: bool, flags: str, payload: bytes = b"") -> None:
        mine, theirs = seq[from_client], seq[not from_client]
        if from_client:
            ip, tcp = IP(src="10.10.0.10", dst=srv), TCP(sport=40000, dport=dport)
        else:
            ip, tcp = IP(src=srv, dst="10.10.0.10"), TCP(sport=dport, dport=40000)
        tcp.flags, tcp.seq, tcp.ack = flags, mine, 0 if flags == "S" else theirs
        pkts.append((bytes(ip / tcp / payload), from_client))
        step = len(payload) + (1 if "S" in flags or "F" in flags else 0)
        seq[from_client] = (mine + step) % (1 << 32)

    seg(True, "S")
    seg(False, "SA")
    seg(True, "A")
    for rnd in range(8):
        request, response = _exchange(rng, dport, rnd)
        seg(True, "PA", request)
        for k in range(4):
            seg(False, "A" if k < 3 else "PA", response[k])
            if k % 2:
                seg(True, "A")
    seg(True, "FA")
    seg(False, "FA")
    seg(True, "A")
    return Template("tcp", pkts)


def _exchange(rng: random.Random, dport: int, rnd: int) -> tuple[bytes, list[bytes]]:
    """One request (1000-1400 B) and its response as four 1200-1400 B segments. Port 80 carries real
    HTTP/1.1 keep-alive exchanges (so the app-layer stages parse something real); the other ports carry
    opaque bytes, as TLS application data looks to a middlebox."""
    req_len = rng.randint(1000, 1400)
    sizes = [rng.randint(1200, 1400) for _ in range(4)]
    if dport != 80:
        return rng.randbytes(req_len), [rng.randbytes(n) for n in sizes]
    head = (f"GET /emr/records/{rnd}?session={rng.randrange(1 << 30)} HTTP/1.1\r\nHost: www.example.org\r\n"
            "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)\r\nAccept: */*\r\nCookie: sid=").encode()
    request = head + b"a" * (req_len - len(head) - 4) + b"\r\n\r\n"
    total = sum(sizes)
    header = b""
    for _ in range(3):          # Content-Length's own digits change the header length: settle it
        header = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                  f"Content-Length: {total - len(header)}\r\n\r\n").encode()
    stream = header + rng.randbytes(total - len(header))
    out, off = [], 0
    for n in sizes:
        out.append(stream[off:off + n])
        off += n
    return request, out


def _dns_templates(rng: random.Random, n: int) -> list[Template]:
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP

    names = ("emr.example.jp", "mail.example.com", "update.vendor.example", "www.example.org")
    out = []
    for i in range(n):
        name = names[i % len(names)]
        qid = rng.randrange(1 << 16)
        q = IP(src="10.10.0.10", dst="198.18.0.53") / UDP(sport=40000, dport=53) / DNS(
            id=qid, rd=1, qd=DNSQR(qname=name))
        r = IP(src="198.18.0.53", dst="10.10.0.10") / UDP(sport=53, dport=40000) / DNS(
            id=qid, qr=1, aa=0, rd=1, ra=1, qd=DNSQR(qname=name),
            an=DNSRR(rrname=name, ttl=300, rdata=f"198.18.{i}.{10 + i}"))
        out.append(Template("dns", [(bytes(q), True), (bytes(r), False)]))
    return out


def _icmp_templates(n: int) -> list[Template]:
    from scapy.layers.inet import ICMP, IP

    out = []
    for i in range(n):
        srv = SERVERS[i % len(SERVERS)]
        pkts = []
        for seq in range(2):
            pkts.append((bytes(IP(src="10.10.0.10", dst=srv) / ICMP(type=8, id=7 + i, seq=seq) / (b"p" * 56)), True))
            pkts.append((bytes(IP(src=srv, dst="10.10.0.10") / ICMP(type=0, id=7 + i, seq=seq) / (b"p" * 56)), False))
        out.append(Template("icmp", pkts))
    return out


def _blocked_templates() -> list[Template]:
    """SYN to SMB on the internet, retried twice: the clinic config rejects it (and logs a drop event)."""
    from scapy.layers.inet import IP, TCP

    syn = bytes(IP(src="10.10.0.10", dst=SERVERS[0]) / TCP(sport=40000, dport=445, flags="S", seq=99))
    return [Template("blocked", [(syn, True)] * 3)]


def _patched(data: bytes, from_client: bool, client: bytes, cport: bytes) -> bytes:
    """Put this instance's client address and port into a template packet (IPv4)."""
    b = bytearray(data)
    ihl = (b[0] & 0x0F) * 4
    proto = b[9]
    if from_client:
        b[12:16] = client
        if proto in (6, 17):
            b[ihl:ihl + 2] = cport
    else:
        b[16:20] = client
        if proto in (6, 17):
            b[ihl + 2:ihl + 4] = cport
    return bytes(b)


def build_trace(count: int, concurrency: int = 256, seed: int = 1) -> tuple[list[tuple], dict]:
    """-> ([(ip_bytes, ts, indev, outdev), ...] of length `count`, description for the JSON)."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    templates = {
        "tcp": _tcp_templates(rng, 6),
        "dns": _dns_templates(rng, 4),
        "icmp": _icmp_templates(2),
        "blocked": _blocked_templates(),
    }
    craft_s = time.perf_counter() - t0
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    instance = 0

    def new_conversation():
        nonlocal instance
        kind = rng.choices(kinds, weights)[0]
        tpl = rng.choice(templates[kind])
        _zone, iface, net = CLIENT_NETS[0] if kind == "blocked" or instance % 5 else CLIENT_NETS[1]
        host = 10 + (instance // 64000) % 240
        client = bytes((*net, host))
        cport = struct.pack("!H", 1024 + instance % 64000)
        instance += 1
        return [(_patched(d, fc, client, cport), iface if fc else "gw-wan", "gw-wan" if fc else iface)
                for d, fc in tpl.packets]

    active = [new_conversation() for _ in range(concurrency)]
    pos = [0] * concurrency
    trace = []
    ts = 1_700_000_000.0
    per_kind = dict.fromkeys(kinds, 0)
    total_bytes = 0
    while len(trace) < count:
        j = rng.randrange(concurrency)       # interleave conversations like a busy link
        conv = active[j]
        data, indev, outdev = conv[pos[j]]
        trace.append((data, ts, indev, outdev))
        total_bytes += len(data)
        ts += WIRE_GAP
        pos[j] += 1
        if pos[j] == len(conv):
            active[j], pos[j] = new_conversation(), 0
    for data, _ts, _i, _o in trace:
        per_kind_key = {6: "tcp", 17: "udp", 1: "icmp"}.get(data[9], "other")
        per_kind[per_kind_key] = per_kind.get(per_kind_key, 0) + 1
    desc = {
        "packets": len(trace),
        "conversations": instance,
        "concurrency": concurrency,
        "mean_ip_bytes": round(total_bytes / max(1, len(trace)), 1),
        "packets_by_proto": {k: v for k, v in per_kind.items() if v and k in ("tcp", "udp", "icmp", "other")},
        "conversation_mix": dict(MIX),
        "templates_crafted_s": round(craft_s, 3),
        "packet_time_gap_us": WIRE_GAP * 1e6,
    }
    return trace, desc


# ---------------------------------------------------------------------------------------------- configs

def clinic_config(bypass: bool) -> config_mod.Config:
    cfg = config_mod.load(config_mod.DEFAULT_CONFIG)
    return replace(cfg, gateway=replace(cfg.gateway, bypass=bypass))


def _run_loop(trace: list[tuple], count: int, deadline: float, fn: Callable) -> int:
    """Feed up to `count` packets to fn(data, ts, indev, outdev), stopping at `deadline`. -> packets."""
    n = 0
    limit = min(count, len(trace))
    perf = time.perf_counter
    while n < limit and perf() < deadline:
        for data, ts, indev, outdev in trace[n:min(n + CHUNK, limit)]:
            fn(data, ts, indev, outdev)
        n = min(n + CHUNK, limit)
    return n


def _decode_only() -> tuple[Callable, Callable]:
    def fn(data, ts, indev, outdev):
        decode(data, ts)
    return fn, lambda: None


def _decode_flow() -> tuple[Callable, Callable]:
    flows = FlowTable(clinic_config(False).flows)

    def fn(data, ts, indev, outdev):
        p = decode(data, ts)
        p.indev, p.outdev = indev, outdev
        flows.lookup(p)
        if ts >= flows.next_sweep:
            flows.expire(ts)
            flows.ended.clear()
    return fn, flows.drain


def _stages(which: str, cfg: config_mod.Config) -> list:
    if which == "firewall":
        return [FirewallStage(cfg)]
    if which == "firewall_stream":
        return [FirewallStage(cfg), StreamStage(cfg.stream)]
    # What `gateway run` builds with the default signature set today (grows as stages land).
    return build_stages(cfg, SignatureSet.open(cfg.signatures_dir()))


def _inspector(which: str, bypass: bool) -> Callable[[], tuple[Callable, Callable]]:
    def make():
        cfg = clinic_config(bypass)
        insp = Inspector(cfg, _stages(which, cfg))
        process = insp.process

        def fn(data, ts, indev, outdev):
            process(data, ts, indev, outdev)
        return fn, insp.finish
    return make


CONFIGS: dict[str, tuple[str, Callable]] = {
    "decode": ("decode only", _decode_only),
    "decode_flow": ("decode + flow", _decode_flow),
    "firewall": ("Inspector: firewall", _inspector("firewall", False)),
    "firewall_stream": ("Inspector: firewall + stream", _inspector("firewall_stream", False)),
    "all_stages": ("Inspector: all stages", _inspector("all", False)),
    "all_stages_bypass": ("Inspector: all stages, bypass on", _inspector("all", True)),
}


def time_config(name: str, trace: list[tuple], count: int, max_seconds: float, repeats: int) -> dict:
    label, make = CONFIGS[name]
    runs = []
    nbytes_prefix = None
    for _ in range(repeats):
        fn, finish = make()
        w0, c0 = time.perf_counter(), time.process_time()
        n = _run_loop(trace, count, w0 + max_seconds / repeats, fn)
        w1, c1 = time.perf_counter(), time.process_time()
        finish()                       # flow-end work is not per packet: outside the timed region
        if nbytes_prefix is None:
            nbytes_prefix = sum(len(t[0]) for t in trace[:n])
        nbytes = nbytes_prefix if n == min(count, len(trace)) else sum(len(t[0]) for t in trace[:n])
        runs.append({"packets": n, "bytes": nbytes, "wall_s": w1 - w0, "cpu_s": c1 - c0})
    return _summary(name, label, runs)


def _summary(name: str, label: str, runs: list[dict]) -> dict:
    pps = [r["packets"] / r["wall_s"] for r in runs]
    pps_cpu = [r["packets"] / r["cpu_s"] for r in runs if r["cpu_s"] > 0]
    mbps = [r["bytes"] * 8 / r["wall_s"] / 1e6 for r in runs]
    mbps_cpu = [r["bytes"] * 8 / r["cpu_s"] / 1e6 for r in runs if r["cpu_s"] > 0]
    for r, p, m in zip(runs, pps, mbps, strict=True):
        r["pps"], r["mbps"] = round(p), round(m, 1)
        r["wall_s"], r["cpu_s"] = round(r["wall_s"], 4), round(r["cpu_s"], 4)
    return {
        "name": name,
        "label": label,
        "pps": round(statistics.median(pps)),
        "pps_best": round(max(pps)),
        "pps_cpu": round(statistics.median(pps_cpu)) if pps_cpu else None,
        "mbps": round(statistics.median(mbps), 1),
        "mbps_cpu": round(statistics.median(mbps_cpu), 1) if mbps_cpu else None,
        "us_per_packet": round(1e6 / statistics.median(pps), 3),
        "runs": runs,
    }


# ---------------------------------------------------------------------------------------------- replay

def write_pcap(path: Path, trace: list[tuple]) -> None:
    """Ethernet pcap of the trace (what a capture on the LAN side would look like)."""
    eth = bytes(6) + bytes((2, 0, 0, 0, 0, 1)) + b"\x08\x00"
    rec = struct.Struct("<IIII")
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for data, ts, _i, _o in trace:
            sec = int(ts)
            frame = eth + data
            f.write(rec.pack(sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            f.write(frame)


def time_replay(trace: list[tuple], count: int, max_seconds: float, repeats: int) -> dict:
    """`gateway replay` end to end (read_frames, Inspector with every stage, EVE JSON to a file), in
    process. Bounded by the pcap size (count packets); the time cap is checked between files."""
    from gateway.events import EveWriter
    from gateway.replay import replay_files

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        pcap = Path(tmp) / "mix.pcap"
        sub = trace[:count]
        write_pcap(pcap, sub)
        nbytes = sum(len(t[0]) for t in sub)
        deadline = time.perf_counter() + max_seconds
        for i in range(repeats):
            if i and time.perf_counter() > deadline:
                break
            eve = EveWriter(str(Path(tmp) / f"eve{i}.json"))
            cfg = clinic_config(False)
            insp = Inspector(cfg, _stages("all", cfg), sink=eve)
            w0, c0 = time.perf_counter(), time.process_time()
            errors = replay_files(insp, [str(pcap)])      # includes finish(): flow events at the end
            eve.close()
            w1, c1 = time.perf_counter(), time.process_time()
            if errors:
                raise RuntimeError(f"replay failed: {errors}")
            n = sum(c[0] for c in insp.counts.values())
            runs.append({"packets": n, "bytes": nbytes, "wall_s": w1 - w0, "cpu_s": c1 - c0,
                         "events": eve.written})
    return _summary("replay", "replay driver (pcap -> EVE)", runs)


# ---------------------------------------------------------------------------------------------- main

def host_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]}


def run(count: int = DEFAULT_COUNT, max_seconds: float = DEFAULT_MAX_SECONDS, repeats: int = 3,
        configs: list[str] | None = None, replay: bool = True, log=print) -> dict:
    trace, desc = build_trace(count)
    log(f"offline: trace of {desc['packets']} packets ({desc['conversations']} conversations, "
        f"mean {desc['mean_ip_bytes']} B) built; templates crafted with scapy in {desc['templates_crafted_s']} s")
    results = []
    for name in configs or list(CONFIGS):
        r = time_config(name, trace, count, max_seconds, repeats)
        results.append(r)
        log(f"  {r['label']:36s} {r['pps']:>10,} pkt/s  {r['mbps']:>8.1f} Mbit/s  "
            f"({r['us_per_packet']:.2f} us/pkt, cpu-time {r['pps_cpu']:,} pkt/s)")
    if replay:
        r = time_replay(trace, count, max_seconds, repeats)
        results.append(r)
        log(f"  {r['label']:36s} {r['pps']:>10,} pkt/s  {r['mbps']:>8.1f} Mbit/s  (cpu-time {r['pps_cpu']:,} pkt/s)")
    return {
        "benchmark": "offline",
        "schema": 1,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": host_info(),
        "params": {"count": count, "max_seconds": max_seconds, "repeats": repeats,
                   "config": "config/gateway.toml (gateway.bypass overridden per configuration)"},
        "trace": desc,
        "stages_all": [st.name for st in _stages("all", clinic_config(False))],
        "results": results,
    }


def profile(name: str, count: int, max_seconds: float, out: Path | None) -> str:
    """Where the time of one configuration goes: py-spy's sampled self/inclusive shares of the timed
    loop (no per-call overhead, so the shares are honest), then pyinstrument's call tree (it hooks every
    call, which inflates call-heavy code: read it for structure, not for shares)."""
    from pyinstrument import Profiler

    parts = []
    spy = Path(sys.executable).parent / "py-spy"
    if spy.exists():
        import subprocess

        from benchmarks.inline import summarise_collapsed

        with tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp:
            raw = Path(tmp) / "offline.collapsed"
            cmd = [str(spy), "record", "--rate", "500", "--format", "raw", "--output", str(raw), "--",
                   sys.executable, "-m", "benchmarks.offline", "--config", name, "--no-replay", "--repeats", "1",
                   "--count", str(count), "--max-seconds", str(max_seconds), "--out", str(Path(tmp) / "o.json")]
            subprocess.run(cmd, capture_output=True, timeout=max_seconds + 120, check=False,
                           cwd=str(Path(__file__).resolve().parent.parent))
            if raw.exists():
                parts.append(summarise_collapsed(raw, 30, within="_run_loop",
                                                 title=f"py-spy record --rate 500, offline config {name}"))
    trace, _ = build_trace(count)
    _label, make = CONFIGS[name]
    fn, finish = make()
    prof = Profiler(interval=0.0005)
    prof.start()
    n = _run_loop(trace, count, time.perf_counter() + max_seconds, fn)
    prof.stop()
    finish()
    parts.append(f"# pyinstrument call tree, offline config {name}, {n} packets (call overhead inflates it)\n"
                 + prof.output_text(unicode=False, color=False))
    # No paths of the machine that ran it in a committed profile: make them repo-relative.
    text = "\n".join(parts).replace(str(Path(__file__).resolve().parent.parent) + "/", "")
    if out:
        out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.offline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=DEFAULT_COUNT, help="packets per run (default %(default)s)")
    ap.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                    help="time cap per configuration, split over the repeats (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--config", action="append", choices=list(CONFIGS), help="only these (repeatable)")
    ap.add_argument("--no-replay", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "offline.json")
    ap.add_argument("--profile", choices=list(CONFIGS), help="print a pyinstrument profile of one config instead")
    ap.add_argument("--profile-out", type=Path)
    args = ap.parse_args(argv)
    if args.count <= 0 or args.repeats <= 0 or args.max_seconds <= 0:
        ap.error("--count, --repeats and --max-seconds must be > 0")
    if args.profile:
        print(profile(args.profile, args.count, args.max_seconds, args.profile_out))
        return 0
    res = run(args.count, args.max_seconds, args.repeats, args.config, not args.no_replay)
    res["command"] = "python -m benchmarks.offline " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
