"""Where the per-packet cost is: iperf3 through the lab with different things bound to the queue.

    python -m gateway.inline.measure [--seconds 4] [--prefix msr] [--modes kernel,nfq,raw,trivial,gateway]

    kernel    no rules: the kernel forwards alone (the ceiling)
    nfq       python-netfilterqueue, a bare accept-every-packet callback (one verdict per packet)
    raw       our binding (nfqueue.py), bare: bursts + one batch verdict, no Inspector
    trivial   our worker with an Inspector that has no stages (decode + flow table only)
    gateway   `gateway run` with the firewall and stream stages, inspection-depth bypass off, 1 queue

Each mode gets one TCP stream for --seconds (lan -> wan) and prints a JSON line with Mbit/s. One queue
and one stream, so the numbers compare the per-packet path, not the core count. Not a test: numbers
depend on the machine; benchmarks/ builds on this. Needs root (it builds its own lab and removes it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from ..config import Config, GatewaySection
from . import netfilter

QUEUE = 0


def _listen_nfq() -> None:
    from netfilterqueue import NetfilterQueue

    q = NetfilterQueue()
    q.bind(QUEUE, lambda pkt: pkt.accept(), max_len=4096)
    print("bound", flush=True)
    q.run()


def _listen_raw() -> None:
    import select

    from .nfqueue import NfQueue, batch_verdict_message

    nfq = NfQueue(QUEUE, maxlen=4096)
    print("bound", flush=True)
    poller = select.poll()
    poller.register(nfq.fileno(), select.POLLIN)
    while True:
        poller.poll(1000)
        while pkts := nfq.recv_burst():
            nfq.send(batch_verdict_message(QUEUE, pkts[-1][0]))


def _listen_trivial() -> None:
    from .worker import Worker

    cfg = Config(gateway=GatewaySection(queues=1, bypass=False, fail_open=False))
    w = Worker(0, QUEUE, cfg, list, None, None)
    print("bound", flush=True)
    sys.exit(w.run())


LISTENERS = {"nfq": _listen_nfq, "raw": _listen_raw, "trivial": _listen_trivial}
# lan may reach the internet; every packet goes through the firewall and stream stages.
GATEWAY_CONFIG = {
    "gateway": {"queues": 1, "bypass": False, "fail_open": False},
    "metrics": {"listen": "127.0.0.1:9753"},
    "zones": {"lan": {"interfaces": ["gw-lan"], "cidrs": ["10.10.0.0/24"]},
              "wan": {"interfaces": ["gw-wan"], "cidrs": ["0.0.0.0/0"]}},
    "firewall": {"default": "deny", "rules": [{"name": "lan-out", "from": ["lan"], "to": ["wan"], "action": "allow"}]},
}


def _iperf(lab, seconds: float) -> float:
    r = lab.exec("lan", ["iperf3", "-c", lab.addr("wan"), "-t", str(seconds), "-J"], timeout=seconds + 30)
    data = json.loads(r.stdout or "{}")
    if "error" in data or "end" not in data:
        raise RuntimeError(f"iperf3: {data.get('error') or r.stderr.strip()}")
    return data["end"]["sum_received"]["bits_per_second"] / 1e6


def _cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of the processes. System time includes the kernel forwarding the
    packets our verdicts release (it runs in the verdict syscall), user time is the Python."""
    user = system = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
        except (OSError, IndexError, ValueError):
            pass
    return user, system


def _queued_packets(lab) -> int:
    """Packets the NFQUEUE rule sent to userspace (both directions: data and ACKs)."""
    r = lab.exec("gw", ["iptables", "-w", "-t", "filter", "-L", "CLINIC_GW", "-v", "-x", "-n"], timeout=10)
    for line in r.stdout.splitlines():
        if "NFQUEUE" in line:
            return int(line.split()[0])
    return 0


def run(modes: list[str], seconds: float, prefix: str) -> list[dict]:
    from ..lab import Lab

    results = []
    with Lab(prefix) as lab:
        server = lab.popen("wan", ["iperf3", "-s", "-B", lab.addr("wan")], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        gw = GatewaySection(queues=1, bypass=False, fail_open=False)
        for mode in modes:
            proc = inline = None
            try:
                if mode in LISTENERS:
                    proc = lab.popen("gw", [sys.executable, "-m", "gateway.inline.measure", "--listen", mode],
                                     stdout=subprocess.PIPE)
                    if proc.stdout.readline().strip() != b"bound":
                        raise RuntimeError(f"{mode}: listener did not bind")
                    netfilter.install(gw, netfilter.QueueRange(QUEUE, 1), netns=lab.ns("gw"))
                elif mode == "gateway":
                    inline = lab.start_gateway(GATEWAY_CONFIG, queues=1)
                    inline.wait_ready()
                elif mode != "kernel":
                    raise SystemExit(f"unknown mode {mode!r}")
                if proc is not None:
                    pids = [proc.pid]
                elif inline is not None:
                    pids = [p for p in inline.state().get("workers", {}).values() if p]
                else:
                    pids = []
                user0, sys0 = _cpu_seconds(pids)
                mbit = _iperf(lab, seconds)
                user1, sys1 = _cpu_seconds(pids)
                user, system = user1 - user0, sys1 - sys0
                queued = _queued_packets(lab) if mode != "kernel" else 0
                results.append({
                    "mode": mode, "mbit_s": round(mbit, 1), "seconds": seconds,
                    "queued_pkt_s": round(queued / seconds) if queued else None,
                    # CPU the listener spent per queued packet: robust against a busy machine, unlike Mbit/s.
                    "user_us_per_pkt": round(user / queued * 1e6, 2) if queued else None,
                    "sys_us_per_pkt": round(system / queued * 1e6, 2) if queued else None,
                    "listener_cpu_pct": round((user + system) / seconds * 100) if pids else None,
                })
                print(json.dumps(results[-1]), flush=True)
            finally:
                netfilter.remove(gw, netns=lab.ns("gw"))
                if proc is not None:
                    proc.kill()
                    proc.wait(5)
                if inline is not None:
                    inline.stop()
        server.terminate()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.inline.measure", description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--prefix", default="msr")
    ap.add_argument("--modes", default="kernel,nfq,raw,trivial,gateway")
    ap.add_argument("--listen", choices=sorted(LISTENERS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.listen:
        LISTENERS[args.listen]()
        return 0
    run(args.modes.split(","), args.seconds, args.prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
