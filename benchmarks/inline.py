"""Inline benchmark in the network-namespace lab: iperf3 goodput and forwarded packets/s through the
gateway namespace, in one run, for

    (a) kernel   kernel forwarding only: no rules, nothing in userspace
    (b) nfq      a bare python-netfilterqueue accept loop, one process per queue
    (c) gateway  `gateway run` with the clinic config, bypass off: every packet through a worker and every
                 stage `gateway run` builds (firewall, stream, app-layer; IDS when the signature set has rules)
    (d) bypass   `gateway run` with the clinic config, bypass on: flows past stream depth stay in the kernel

Fairness between (b) and (c): the same netfilter rules, installed by gateway.inline.netfilter (the chain
`gateway run` installs with bypass off: the reject-mark rules, then NFQUEUE over the same queue range,
--queue-balance when more than one queue), the same kernel queue length (gateway.queue_maxlen) and the
same number of userspace processes, one per queue. Fail-open is off for (b), (c) and (d): python-
netfilterqueue cannot set NFQA_CFG_F_FAIL_OPEN, and with it on a saturated gateway would let packets
through uninspected and look faster than it is. So every packet of (b) and (c) is handled in userspace.

Traffic: TCP lan -> wan, `streams` streams in all, `-t seconds`, `-J`. The kernel's --queue-balance
hash covers the two addresses and the protocol, not the ports, so the streams of one host pair all land
on one queue whatever `-P` says. The benchmark therefore adds client addresses to its lab's lan
namespace, probes which queue each hashes to (pick_clients), and runs one iperf3 client per queue from
addresses that hash to different queues (each against its own iperf3 server in {p}-wan), in every case
(a)-(d) alike. Goodput is the receivers' bits/s summed. Packets/s is what the gateway namespace
forwarded: the delta of tx_packets on its gw-lan and gw-wan veths (data one way, ACKs the other) over
the test duration. The packets that went through userspace, per queue, are the delta of id_sequence in
/proc/net/netfilter/nfnetlink_queue (read inside the namespace), with the kernel's queue_dropped.
Userspace CPU % is utime+stime of the accept loops / workers over the run (100 % = one core).

Every iperf3 run is bounded (client -t and a subprocess timeout); all traffic stays inside the lab's
namespaces; the lab is removed on exit even after an error (`with Lab(...)`).

    python -m benchmarks.inline [--seconds 5] [--streams 4] [--queues 1 2] [--repeats 3] [--out benchmarks/results/inline.json]
    python -m benchmarks.inline --profile-worker [--seconds 5]      # py-spy on a live worker under load
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from gateway.config import GatewaySection
from gateway.inline import netfilter
from gateway.lab import Lab, LabError, default_config_dict, missing_tools

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
PREFIX = "bench"
IPERF_PORT = 5201
GW_IFACES = ("gw-lan", "gw-wan")
# Extra lan client addresses (inside the lab's own lan namespace) to spread clients over the queues.
CLIENT_POOL = tuple(f"10.10.0.{i}" for i in range(100, 124))


def skip_reason() -> str | None:
    """Why the inline benchmark cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables, NFQUEUE)"
    missing = missing_tools() + [t for t in ("iperf3",) if not _which(t)]
    if missing:
        return f"missing tools: {', '.join(missing)} (apt-get install iperf3 iproute2 iptables ethtool curl)"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "python-netfilterqueue not installed in this environment (case b)"
    return None


def _which(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


# ---------------------------------------------------------------------------------------------- probes

def iface_counters(lab: Lab) -> dict[str, dict[str, int]]:
    """rx/tx packets and bytes of the gateway's lan and wan veths (inside the gw namespace)."""
    r = lab.exec("gw", ["ip", "-j", "-s", "link", "show"], timeout=10, check=True)
    out = {}
    for link in json.loads(r.stdout):
        if link.get("ifname") in GW_IFACES:
            st = link["stats64"]
            out[link["ifname"]] = {"rx_packets": st["rx"]["packets"], "tx_packets": st["tx"]["packets"],
                                   "rx_bytes": st["rx"]["bytes"], "tx_bytes": st["tx"]["bytes"],
                                   "tx_dropped": st["tx"]["dropped"], "rx_dropped": st["rx"]["dropped"]}
    return out


def queue_stats(lab: Lab) -> dict[int, dict[str, int]]:
    """Per bound queue: packets handed to userspace so far (id_sequence), kernel drops, waiting now."""
    r = lab.exec("gw", ["cat", "/proc/net/netfilter/nfnetlink_queue"], timeout=10)
    out = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) >= 8:
            out[int(f[0])] = {"portid": int(f[1]), "waiting": int(f[2]), "queue_dropped": int(f[5]),
                              "user_dropped": int(f[6]), "id_sequence": int(f[7])}
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of processes (as seen from the host: /proc is shared across network namespaces)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _delta(before: dict, after: dict, key: str) -> int:
    return sum(after[i][key] - before[i][key] for i in after if i in before)


# ---------------------------------------------------------------------------------------------- iperf3

def start_iperf_servers(lab: Lab, count: int) -> None:
    """One iperf3 server per client (an iperf3 server runs one test at a time), ports 5201...; returns
    once all listen."""
    wan = lab.addr("wan")
    procs = [lab.popen("wan", ["iperf3", "-s", "-B", wan, "-p", str(IPERF_PORT + i)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, start_new_session=True) for i in range(count)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ss = lab.exec("wan", ["ss", "-ltnH"], timeout=5).stdout
        if all(f":{IPERF_PORT + i} " in ss for i in range(count)):
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    raise LabError("iperf3 servers did not start in the wan namespace")


def add_client_addresses(lab: Lab) -> None:
    """Extra client addresses in the lan namespace, so that clients can be spread over the queues."""
    for a in CLIENT_POOL:
        lab.exec("lan", ["ip", "addr", "add", f"{a}/24", "dev", "eth0"], timeout=5, check=True)


def pick_clients(lab: Lab, queues: int) -> list[str]:
    """Client addresses, one per queue, that --queue-balance sends to different queues.

    The kernel's queue-balance hash (nfqueue_hash: jhash of the two addresses and the protocol, with a
    per-boot random seed) ignores ports, so all streams between one pair of hosts land on ONE queue
    whatever `-P` is. We therefore probe: with the benchmark's rules over `queues` queues and bare accept
    loops bound, one HTTP fetch from each candidate address shows which queue it hashes to."""
    if queues <= 1:
        return CLIENT_POOL[:1]
    gw = bench_gateway_section(queues, bypass=False)
    chosen: dict[int, str] = {}
    with _accept_loops(lab, gw, queues):
        netfilter.install(gw, netfilter.QueueRange(gw.queue_start, queues), netns=lab.ns("gw"))
        try:
            for addr in CLIENT_POOL:
                before = queue_stats(lab)
                r = lab.exec("lan", ["curl", "-sS", "--noproxy", "*", "--max-time", "3", "--interface", addr,
                                     "-o", "/dev/null", f"http://{lab.addr('wan')}/"], timeout=10)
                if r.returncode != 0:
                    raise LabError(f"probe fetch from {addr} failed: {r.stderr.strip()}")
                after = queue_stats(lab)
                hit = [q for q in after if after[q]["id_sequence"] != before.get(q, after[q])["id_sequence"]]
                if len(hit) == 1 and hit[0] not in chosen:
                    chosen[hit[0]] = addr
                if len(chosen) == queues:
                    break
        finally:
            netfilter.remove(gw, netns=lab.ns("gw"))
    if len(chosen) < queues:
        raise LabError(f"no client addresses found for every queue: {chosen}")
    return [chosen[q] for q in sorted(chosen)]


def measure(lab: Lab, seconds: float, streams: int, clients: list[str],
            userspace_pids: list[int] | None = None) -> dict:
    """One bounded run lan -> wan: one iperf3 client per address in `clients` at once, `streams` TCP
    streams in all; goodput, forwarded packets/s, queue and CPU figures."""
    pids = userspace_pids or []
    load = round(os.getloadavg()[0], 2)
    c0, q0, cpu0 = iface_counters(lab), queue_stats(lab), cpu_seconds(pids)
    w0 = time.monotonic()
    per_client = max(1, streams // len(clients))
    procs = [lab.popen("lan", ["iperf3", "-c", lab.addr("wan"), "-p", str(IPERF_PORT + i), "-B", addr,
                               "-t", str(seconds), "-P", str(per_client), "-J", "--connect-timeout", "3000"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
             for i, addr in enumerate(clients)]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, seconds + 20 - (time.monotonic() - w0)))
            outs.append((p.returncode, out, err))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            return {"error": f"iperf3 did not finish within {seconds + 20:.0f}s"}
    wall = time.monotonic() - w0
    c1, q1, cpu1 = iface_counters(lab), queue_stats(lab), cpu_seconds(pids)
    goodput = sent_bps = 0.0
    retrans = 0
    duration = 0.0
    for rc, out, err in outs:
        try:
            rep = json.loads(out)
        except ValueError:
            return {"error": f"iperf3 exit {rc}: {err.decode(errors='replace').strip()[:300]}"}
        if "error" in rep:
            return {"error": f"iperf3: {rep['error']}"}
        recv, sent = rep["end"]["sum_received"], rep["end"]["sum_sent"]
        goodput += recv["bits_per_second"]
        sent_bps += sent["bits_per_second"]
        retrans += sent.get("retransmits") or 0
        duration = max(duration, recv["seconds"])
    duration = duration or wall
    fwd = _delta(c0, c1, "tx_packets")
    fwd_bytes = _delta(c0, c1, "tx_bytes")
    res = {
        "goodput_mbps": round(goodput / 1e6, 1),
        "sent_mbps": round(sent_bps / 1e6, 1),
        "retransmits": retrans,
        "seconds": round(duration, 3),
        "wall_s": round(wall, 3),
        "clients": clients,
        "forwarded_packets": fwd,
        "forwarded_pps": round(fwd / duration),
        "forwarded_mean_bytes": round(fwd_bytes / fwd, 1) if fwd else None,
        "rx_packets": _delta(c0, c1, "rx_packets"),
        "loadavg_1m": load,             # machine load when the run started (other work shares the cores)
    }
    if q1:
        per_queue = {q: q1[q]["id_sequence"] - q0.get(q, {"id_sequence": 0})["id_sequence"] for q in sorted(q1)}
        res["queued_packets"] = sum(per_queue.values())
        res["queued_per_queue"] = per_queue
        res["queued_pps"] = round(res["queued_packets"] / duration)
        res["queue_dropped"] = sum(q1[q]["queue_dropped"] - q0.get(q, q1[q])["queue_dropped"] for q in q1)
        res["user_dropped"] = sum(q1[q]["user_dropped"] - q0.get(q, q1[q])["user_dropped"] for q in q1)
    if pids:
        res["userspace_cpu_percent"] = round(100 * (cpu1 - cpu0) / wall, 1)
    return res


# ---------------------------------------------------------------------------------------------- cases

def bench_gateway_section(queues: int, bypass: bool) -> GatewaySection:
    """The [gateway] section both (b) and (c) use for their rules (chain, marks, queue range)."""
    return GatewaySection(queues=queues, bypass=bypass, fail_open=False)


def run_nfq(lab: Lab, queues: int, seconds: float, streams: int, clients: list[str]) -> dict:
    """(b): the gateway's rules (bypass off, fail-open off), then one bare accept loop per queue."""
    gw = bench_gateway_section(queues, bypass=False)
    with _accept_loops(lab, gw, queues) as procs:
        netfilter.install(gw, netfilter.QueueRange(gw.queue_start, queues), netns=lab.ns("gw"))
        try:
            return measure(lab, seconds, streams, clients, [p.pid for p in procs])
        finally:
            netfilter.remove(gw, netns=lab.ns("gw"))


@contextlib.contextmanager
def _accept_loops(lab: Lab, gw: GatewaySection, queues: int):
    """One bare accept loop per queue, bound before the rules go in; stopped on exit."""
    procs = []
    try:
        for q in range(gw.queue_start, gw.queue_start + queues):
            p = lab.popen("gw", [sys.executable, "-m", "benchmarks.inline", "accept-loop", str(q),
                                 str(gw.queue_maxlen)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO), start_new_session=True)
            procs.append(p)
            line = _readline(p, 10)
            if not line.startswith(b"bound"):
                raise LabError(f"accept loop on queue {q} did not bind: {line!r} "
                               f"{p.stderr.read().decode(errors='replace') if p.poll() is not None else ''}")
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def _readline(p: subprocess.Popen, timeout: float) -> bytes:
    import select

    ready, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline() if ready else b""


def gateway_config(queues: int, bypass: bool) -> dict:
    """The clinic config (config/gateway.toml) with the benchmark's overrides."""
    raw = default_config_dict()
    raw["gateway"].update({"queues": queues, "bypass": bypass, "fail_open": False})
    raw["gateway"].pop("state_dir", None)          # the lab picks one inside its own state directory
    raw["gateway"]["flow_events"] = True
    return raw


def run_gateway(lab: Lab, queues: int, bypass: bool, seconds: float, streams: int, clients: list[str],
                profile_out: Path | None = None) -> dict:
    """(c) / (d): `gateway run` inline in the lab, measured while it runs, then stopped (rules removed)."""
    gw = lab.start_gateway(gateway_config(queues, bypass), queues=queues)
    try:
        gw.wait_ready(timeout=30)
        pids = [p for p in gw.worker_pids().values() if p]
        spy = None
        if profile_out is not None:
            spy = _start_py_spy(pids[0], seconds, profile_out)
        res = measure(lab, seconds, streams, clients, pids)
        if spy is not None:
            try:
                spy.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
        time.sleep(0.7)                       # workers fold counters into metrics every 0.5 s
        res["gateway_packets"] = _packets_by_verdict(gw.metrics())
        return res
    finally:
        rc = gw.stop()
        if rc not in (0, None):
            print(f"inline: gateway exited {rc}; log:\n{gw.log()[-2000:]}", file=sys.stderr)


def _packets_by_verdict(text: str) -> dict[str, int]:
    import re

    out: Counter[str] = Counter()
    for line in text.splitlines():
        m = re.match(r'^gateway_packets_total\{(.*)\}\s+(\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out[labels.get("verdict", "?")] += int(float(m.group(2)))
    return dict(out)


# ---------------------------------------------------------------------------------------------- live profile

def _py_spy() -> str | None:
    import shutil

    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _start_py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    exe = _py_spy()
    if exe is None:
        print("inline: py-spy not installed, no live profile", file=sys.stderr)
        return None
    # raw = collapsed stacks ("a;b;c count"), summarised by summarise_collapsed().
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
                             "--format", "raw", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame_name(frame: str) -> str:
    """'func (path/to/dir/file.py:12)' -> 'func (dir/file.py)' (two path parts: scapy and gateway both
    have a packet.py)."""
    func, sep, where = frame.partition(" (")
    if not sep:
        return frame
    path = where.rsplit(":", 1)[0].rstrip(")")
    return f"{func} ({'/'.join(path.split('/')[-2:])})"


def summarise_collapsed(path: Path, top: int = 25, within: str | None = None,
                        title: str = "py-spy record on a live gateway worker") -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks ("a;b;c count").
    `within`: keep only samples whose stack has a frame of that function (e.g. the timed loop)."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or not stack:
            continue
        frames = [_frame_name(f) for f in stack.split(";")]
        if within is not None and not any(f.startswith(within + " (") for f in frames):
            continue
        count = int(n)
        total += count
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    total = total or 1
    lines = [f"# {title}: {total} samples" + (f" inside {within}()" if within else ""),
             "", "self%   function (file)"]
    lines += [f"{100 * c / total:5.1f}   {f}" for f, c in self_c.most_common(top)]
    lines += ["", "incl%   function (file)"]
    lines += [f"{100 * c / total:5.1f}   {f}" for f, c in incl.most_common(top)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- main

def run(seconds: float = 5.0, streams: int = 4, queue_counts: tuple[int, ...] = (1, 2), repeats: int = 3,
        prefix: str = PREFIX, log=print) -> dict:
    """Rounds of (a), then (b), (c), (d) per queue count; `repeats` rounds interleaved so that a burst of
    other load on the machine hits every case alike. Each case reports its median run (by goodput)."""
    reason = skip_reason()
    if reason:
        raise LabError(f"inline benchmark cannot run: {reason}")
    plan = [("a", "(a) kernel forwarding", None)]
    for q in queue_counts:
        plan += [("b", f"(b) NetfilterQueue accept, {q}q", q), ("c", f"(c) gateway, bypass off, {q}q", q),
                 ("d", f"(d) gateway, bypass on, {q}q", q)]
    runs: dict[tuple[str, int | None], list[dict]] = {(c, q): [] for c, _, q in plan}
    with Lab(prefix) as lab:
        add_client_addresses(lab)
        clients = pick_clients(lab, max(queue_counts))
        log(f"  clients {', '.join(clients)} (one per queue of the {max(queue_counts)}-queue balance), "
            f"{max(1, streams // len(clients))} streams each")
        start_iperf_servers(lab, len(clients))
        measure(lab, 1, len(clients), clients)                   # warm-up (ARP, caches), not recorded
        for rnd in range(repeats):
            log(f"  round {rnd + 1}/{repeats}")
            for case, label, q in plan:
                if case == "a":
                    res = measure(lab, seconds, streams, clients)
                elif case == "b":
                    res = run_nfq(lab, q, seconds, streams, clients)
                else:
                    res = run_gateway(lab, q, case == "d", seconds, streams, clients)
                runs[(case, q)].append(res)
                _log_case(log, label, res)
    cases = [{"case": c, "label": label, "queues": q, **median_run(runs[(c, q)])} for c, label, q in plan]
    ratios = compute_ratios(cases)
    log("  medians:")
    for c in cases:
        _log_case(log, c["label"], c)
    for k, v in ratios.items():
        log(f"  {k}: {v}")
    from benchmarks.offline import host_info

    return {
        "benchmark": "inline",
        "schema": 1,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": host_info(),
        "params": {"seconds": seconds, "streams": streams, "queues": list(queue_counts), "repeats": repeats,
                   "direction": "lan -> wan (iperf3 client in lan, server in wan)", "fail_open": False,
                   "offloads": "GRO/GSO/TSO off on every lab veth (gateway.lab)",
                   "config": "config/gateway.toml with gateway.queues/bypass/fail_open overridden",
                   "gateway_stages": _gateway_stages()},
        "cases": cases,
        "ratios": ratios,
    }


def _log_case(log, label: str, res: dict) -> None:
    if "error" in res:
        log(f"    {label:34s} ERROR {res['error']}")
        return
    log(f"    {label:34s} {res['goodput_mbps']:>9.1f} Mbit/s  {res['forwarded_pps']:>9,} pkt/s"
        + (f"  queued {res.get('queued_pps', 0):,}/s drops {res.get('queue_dropped', 0)}" if "queued_pps" in res
           else "")
        + (f"  cpu {res['userspace_cpu_percent']}%" if "userspace_cpu_percent" in res else "")
        + f"  load {res.get('loadavg_1m', '?')}")


def median_run(results: list[dict]) -> dict:
    """The run with the median goodput (lower middle for an even count), with every run's key figures."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return {"error": "; ".join(r["error"] for r in results) or "no run"}
    ok.sort(key=lambda r: r["goodput_mbps"])
    med = dict(ok[(len(ok) - 1) // 2])
    med["runs"] = [{k: r.get(k) for k in ("goodput_mbps", "forwarded_pps", "queued_pps", "userspace_cpu_percent",
                                          "retransmits", "loadavg_1m", "error") if k in r} for r in results]
    return med


def _gateway_stages() -> list[str]:
    """The stages `gateway run` builds with the clinic config and the default signature set."""
    from benchmarks.offline import _stages, clinic_config

    return [st.name for st in _stages("all", clinic_config(False))]


def compute_ratios(cases: list[dict]) -> dict:
    """(c)/(b) per queue count and (d)/(a), on goodput and on forwarded packets/s."""
    def get(case: str, q: int | None) -> dict | None:
        for c in cases:
            if c["case"] == case and (q is None or c["queues"] == q) and "error" not in c:
                return c
        return None

    out = {}
    a = get("a", None)
    for q in sorted({c["queues"] for c in cases if c["queues"]}):
        b, c, d = get("b", q), get("c", q), get("d", q)
        if b and c:
            out[f"c_over_b_{q}q"] = {"goodput": round(c["goodput_mbps"] / b["goodput_mbps"], 3),
                                     "pps": round(c["forwarded_pps"] / b["forwarded_pps"], 3), "target": 0.6}
        if a and d:
            out[f"d_over_a_{q}q"] = {"goodput": round(d["goodput_mbps"] / a["goodput_mbps"], 3),
                                     "pps": round(d["forwarded_pps"] / a["forwarded_pps"], 3), "target": 0.5}
    return out


def profile_worker(seconds: float, streams: int, out_dir: Path, prefix: str = PREFIX) -> str:
    """py-spy on the worker of a one-queue gateway (bypass off) under iperf3 load."""
    raw = out_dir / "profile_worker.collapsed"
    with Lab(prefix) as lab:
        add_client_addresses(lab)
        clients = list(CLIENT_POOL[:2])
        start_iperf_servers(lab, len(clients))
        res = run_gateway(lab, 1, False, seconds, streams, clients, profile_out=raw)
    if not raw.exists():
        return f"no profile written (py-spy missing or failed); run: {json.dumps(res)}\n"
    text = summarise_collapsed(raw, 30, title="py-spy record --rate 250 on a live gateway worker")
    raw.unlink()
    head = (f"# load: iperf3 -P {streams} -t {seconds} lan -> wan, gateway 1 queue, bypass off: "
            f"{res.get('goodput_mbps')} Mbit/s, {res.get('forwarded_pps')} pkt/s "
            f"(py-spy sampling slows the worker a little)\n")
    return head + text


def accept_loop(queue: int, maxlen: int) -> int:
    """(b)'s userspace: the smallest python-netfilterqueue program that accepts every packet."""
    from netfilterqueue import NetfilterQueue

    nfq = NetfilterQueue()
    nfq.bind(queue, lambda pkt: pkt.accept(), max_len=maxlen)
    stop = []

    def on_term(*_):
        stop.append(1)
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    print("bound", flush=True)
    try:
        nfq.run()
    except KeyboardInterrupt:
        pass
    finally:
        nfq.unbind()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["accept-loop"]:
        return accept_loop(int(argv[1]), int(argv[2]))
    ap = argparse.ArgumentParser(prog="python -m benchmarks.inline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="iperf3 -t per case (default %(default)s)")
    ap.add_argument("--streams", type=int, default=4, help="iperf3 -P (default %(default)s)")
    ap.add_argument("--queues", type=int, nargs="+", default=[1, 2], help="queue counts for (b)-(d)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians reported")
    ap.add_argument("--prefix", default=PREFIX, help="lab prefix (default %(default)s)")
    ap.add_argument("--out", type=Path, default=RESULTS / "inline.json")
    ap.add_argument("--profile-worker", action="store_true", help="py-spy a live worker instead")
    args = ap.parse_args(argv)
    if (not 1 <= args.seconds <= 60 or not 1 <= args.streams <= 16 or not all(1 <= q <= 8 for q in args.queues)
            or not 1 <= args.repeats <= 10):
        ap.error("--seconds 1..60, --streams 1..16, --queues 1..8, --repeats 1..10")
    try:
        if args.profile_worker:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            text = profile_worker(args.seconds, args.streams, args.out.parent, args.prefix)
            (args.out.parent / "profile_worker.txt").write_text(text)
            print(text)
            return 0
        res = run(args.seconds, args.streams, tuple(args.queues), args.repeats, args.prefix)
    except LabError as e:
        print(f"benchmarks.inline: {e}", file=sys.stderr)
        return 1
    res["command"] = "python -m benchmarks.inline " + " ".join(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
