"""Network-namespace lab: clients, the gateway and an internet server joined by veth pairs (pyroute2).

    {p}-lan    10.10.0.10, EMR server 10.10.0.20 (HTTP :443)  -- gw-lan   10.10.0.1  --+
    {p}-med    10.20.0.10                                     -- gw-med   10.20.0.1  --+-- {p}-gw (forwarding,
    {p}-guest  10.30.0.10                                     -- gw-guest 10.30.0.1  --+    NFQUEUE rules)
    {p}-wan    198.18.0.10 (HTTP :80, :8080, :445)            -- gw-wan   198.18.0.1 --+

Interface names in the gateway namespace match config/gateway.toml's zones. Every veth has GRO, GSO and
TSO off (`ethtool -K`), so NFQUEUE sees MTU-sized packets as on a NIC without offloads. Nothing touches
the host's own network namespace: rules and the gateway run inside {p}-gw. Use a prefix of your own
(tests use unique ones) so parallel labs do not collide.

Python API (tests, benchmarks, `gateway lab demo`):

    from gateway.lab import Lab
    with Lab("tin") as lab:                     # up() on enter; down() on exit, even after an error
        lab.ns("gw")                            # -> "tin-gw"
        lab.addr("wan")                         # -> "198.18.0.10"
        lab.exec("lan", ["curl", "-sS", "http://198.18.0.10/"], timeout=5)   # CompletedProcess
        lab.popen("wan", ["iperf3", "-s"])     # Popen, killed by down()
        lab.ping("lan", "198.18.0.10", count=2) # replies received (ICMP from Python, no iputils needed)
        lab.start_tcp_sender("wan", "198.18.0.10", 9000, path)   # raw TCP bulk sender (no app protocol)
        lab.tcp_fetch("lan", "198.18.0.10", 9000, out_path)      # -> bytes received
        lab.start_dns("wan", "198.18.0.10")     # tiny UDP DNS server: every A query -> 198.18.0.10
        lab.resolve("lan", "198.18.0.10", "x.example")           # -> "198.18.0.10", or None (no answer)
        lab.www                                 # directory the HTTP servers serve (write test files here)
        gw = lab.start_gateway(config_dict)     # `gateway run` inside {p}-gw; see InlineGateway
        gw.wait_ready(); gw.metrics(); gw.stop()
        lab.info()                              # what `gateway lab up --json` prints

`gateway lab up|down|demo` use the prefix from $GATEWAY_LAB_PREFIX (default "lab").
`Lab.down()` kills every process left in the lab's namespaces (they can only be the lab's), deletes the
namespaces (the veths go with them) and the state directory; it is idempotent and never raises.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_CONFIG

STATE_ROOT = Path("/run/clinic-gateway-lab")
DEFAULT_PREFIX = "lab"
PREFIX_ENV = "GATEWAY_LAB_PREFIX"
HOST_IF = "eth0"


@dataclass(frozen=True)
class Segment:
    role: str
    gw_if: str
    gw_addr: str
    hosts: tuple[str, ...]
    prefixlen: int = 24


SEGMENTS = (
    Segment("lan", "gw-lan", "10.10.0.1", ("10.10.0.10", "10.10.0.20")),
    Segment("med", "gw-med", "10.20.0.1", ("10.20.0.10",)),
    Segment("guest", "gw-guest", "10.30.0.1", ("10.30.0.10",)),
    Segment("wan", "gw-wan", "198.18.0.1", ("198.18.0.10",)),
)
ROLES = tuple(s.role for s in SEGMENTS) + ("gw",)
# (role, address, port): plain HTTP servers over the lab's www directory.
SERVERS = (("wan", "198.18.0.10", 80), ("wan", "198.18.0.10", 8080), ("wan", "198.18.0.10", 445),
           ("lan", "10.10.0.20", 443))
EMR_ADDR = "10.10.0.20"
# The EICAR anti-virus test file (eicar.org): harmless, and what signatures/rules/clinic.rules blocks (sid 9000001).
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class LabError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    """Tools the lab (and the inline gateway in it) need; empty when all are there."""
    need = ("ip", "iptables", "iptables-restore", "ethtool", "curl")
    return [t for t in need if shutil.which(t) is None]


class Lab:
    def __init__(self, prefix: str = DEFAULT_PREFIX, state_root: Path | str = STATE_ROOT):
        if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", prefix):
            raise LabError(f"lab prefix {prefix!r}: use 1-12 lowercase letters/digits, starting with a letter")
        self.prefix = prefix
        self.state = Path(state_root) / prefix
        self.www = self.state / "www"
        self._procs: list[subprocess.Popen] = []

    # ------------------------------------------------------------------ names
    def ns(self, role: str) -> str:
        """Namespace name of a role (lan, med, guest, wan, gw); a full namespace name passes through."""
        if role in ROLES:
            return f"{self.prefix}-{role}"
        if role.startswith(self.prefix + "-"):
            return role
        raise LabError(f"unknown lab role {role!r} (roles: {', '.join(ROLES)})")

    def namespaces(self) -> list[str]:
        return [self.ns(r) for r in ROLES]

    @staticmethod
    def addr(role: str) -> str:
        for s in SEGMENTS:
            if s.role == role:
                return s.hosts[0]
        raise LabError(f"{role!r} has no host address (roles: {', '.join(s.role for s in SEGMENTS)})")

    def info(self) -> dict:
        return {
            "prefix": self.prefix,
            "namespaces": {r: self.ns(r) for r in ROLES},
            "hosts": {s.role: {"namespace": self.ns(s.role), "addresses": list(s.hosts), "gateway": s.gw_addr,
                               "interface": HOST_IF} for s in SEGMENTS},
            "gateway": {"namespace": self.ns("gw"),
                        "interfaces": {s.gw_if: f"{s.gw_addr}/{s.prefixlen}" for s in SEGMENTS}},
            "servers": [{"namespace": self.ns(r), "url": f"http://{a}:{p}/"} for r, a, p in SERVERS],
            "www": str(self.www),
        }

    # ------------------------------------------------------------------ up / down
    def exists(self) -> bool:
        from pyroute2 import netns

        have = set(netns.listnetns())
        return any(n in have for n in self.namespaces())

    def up(self) -> Lab:
        missing = missing_tools()
        if missing:
            raise LabError(f"missing tools: {', '.join(missing)} (apt-get install iproute2 iptables ethtool curl)")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces)")
        from pyroute2 import NetNS, netns

        if self.exists():
            self.down()
        try:
            for n in self.namespaces():
                netns.create(n)
            gw = NetNS(self.ns("gw"))
            try:
                for seg in SEGMENTS:
                    host_ns = self.ns(seg.role)
                    gw.link("add", ifname=seg.gw_if, kind="veth", peer={"ifname": HOST_IF, "net_ns_fd": host_ns})
                    idx = gw.link_lookup(ifname=seg.gw_if)[0]
                    gw.addr("add", index=idx, address=seg.gw_addr, prefixlen=seg.prefixlen)
                    gw.link("set", index=idx, state="up")
                    with NetNS(host_ns) as h:
                        hidx = h.link_lookup(ifname=HOST_IF)[0]
                        for a in seg.hosts:
                            h.addr("add", index=hidx, address=a, prefixlen=seg.prefixlen)
                        h.link("set", index=hidx, state="up")
                        h.link("set", index=h.link_lookup(ifname="lo")[0], state="up")
                        h.route("add", dst="default", gateway=seg.gw_addr)
                gw.link("set", index=gw.link_lookup(ifname="lo")[0], state="up")
            finally:
                gw.close()
            self._sysctl("gw", "net.ipv4.ip_forward=1")
            for seg in SEGMENTS:
                self._offloads_off("gw", seg.gw_if)
                self._offloads_off(seg.role, HOST_IF)
            self.www.mkdir(parents=True, exist_ok=True)
            (self.www / "index.html").write_text(f"clinic-gateway lab {self.prefix}\n")
            self._start_servers(SERVERS)
            (self.state / "lab.json").write_text(json.dumps(self.info(), indent=2))
        except BaseException:
            self.down()
            raise
        return self

    def _sysctl(self, role: str, setting: str) -> None:
        self.exec(role, ["sysctl", "-qw", setting], check=True)

    def _offloads_off(self, role: str, ifname: str) -> None:
        self.exec(role, ["ethtool", "-K", ifname, "gro", "off", "gso", "off", "tso", "off"], check=True)

    def _start_servers(self, servers, timeout: float = 10.0) -> None:
        """Plain HTTP servers over www, started together; returns once each listens (each prints a line
        when bound)."""
        import select

        started = [(self.popen(role, [sys.executable, "-m", "gateway.lab", "serve", addr, str(port),
                                      str(self.www)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True),
                    role, addr, port) for role, addr, port in servers]
        deadline = time.monotonic() + timeout
        for p, role, addr, port in started:
            ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = p.stdout.readline() if ready else b""
            if not line.startswith(b"listening"):
                raise LabError(f"HTTP server {addr}:{port} in {self.ns(role)} did not start")

    def down(self) -> list[str]:
        """Remove everything; returns problems it could not fix (never raises)."""
        problems = []
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        try:
            from pyroute2 import netns

            have = set(netns.listnetns())
        except Exception as e:  # noqa: BLE001 - down() never raises; report instead
            return [f"pyroute2: {e}"]
        mine = [n for n in self.namespaces() if n in have]
        # Processes still inside our namespaces (servers, a gateway, iperf3): SIGTERM first, so a
        # gateway removes its rules, then SIGKILL what is left.
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
            pids = self._pids(mine)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while pids and time.monotonic() < deadline:
                time.sleep(0.05)
                pids = self._pids(mine)
            for p in self._procs:
                p.poll()
        for n in mine:
            try:
                netns.remove(n)
            except Exception as e:  # noqa: BLE001 - down() never raises; report instead
                problems.append(f"remove namespace {n}: {e}")
        self._procs = [p for p in self._procs if p.poll() is None]
        shutil.rmtree(self.state, ignore_errors=True)
        return problems

    @staticmethod
    def _pids(namespaces: list[str]) -> list[int]:
        pids = []
        for n in namespaces:
            try:
                out = subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True, timeout=5,
                                     check=False).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            pids += [int(x) for x in out.split() if x.isdigit() and int(x) != os.getpid()]
        return pids

    def __enter__(self) -> Lab:  # noqa: PYI034 - up() returns self
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # ------------------------------------------------------------------ running things
    def exec(self, role: str, cmd: list[str], timeout: float = 10.0, check: bool = False, text: bool = True,
             input=None) -> subprocess.CompletedProcess:
        """Run a command in a namespace and wait (raises subprocess.TimeoutExpired past `timeout`)."""
        proc = subprocess.run(["ip", "netns", "exec", self.ns(role)] + list(cmd), capture_output=True,
                              text=text, timeout=timeout, input=input, check=False)
        if check and proc.returncode != 0:
            raise LabError(f"{self.ns(role)}: {' '.join(cmd)}: exit {proc.returncode}: "
                           f"{(proc.stderr or '').strip()}")
        return proc

    def popen(self, role: str, cmd: list[str], **kw) -> subprocess.Popen:
        """Start a command in a namespace; down() ends it."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(role)] + list(cmd), **kw)
        self._procs.append(p)
        return p

    def ping(self, role: str, dst: str, count: int = 1, timeout: float = 1.0) -> int:
        """ICMP echo requests from a namespace; returns how many were answered."""
        r = self.exec(role, [sys.executable, "-m", "gateway.lab", "ping", dst, str(count), str(timeout)],
                      timeout=count * timeout + 10)
        try:
            return int(r.stdout.strip() or 0)
        except ValueError:
            raise LabError(f"ping helper failed: {r.stderr.strip()}") from None

    def curl(self, role: str, url: str, max_time: float = 5.0, output: str | None = None,
             extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """curl from a namespace. returncode 0 = fetched; 7 = refused (RST); 28 = timed out."""
        cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", str(max_time), "-o", output or "/dev/null",
               "-w", "%{http_code} %{size_download} %{time_total}", *extra, url]
        return self.exec(role, cmd, timeout=max_time + 10)

    def start_tcp_sender(self, role: str, addr: str, port: int, path: str | Path,
                         timeout: float = 10.0) -> subprocess.Popen:
        """A plain TCP server (no application protocol) that sends the file to every client, then closes.
        Returns once it listens."""
        p = self.popen(role, [sys.executable, "-m", "gateway.lab", "send", addr, str(port), str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        import select

        ready, _, _ = select.select([p.stdout], [], [], timeout)
        if not (ready and p.stdout.readline().startswith(b"listening")):
            raise LabError(f"TCP sender {addr}:{port} in {self.ns(role)} did not start")
        return p

    def tcp_fetch(self, role: str, addr: str, port: int, output: str | Path, timeout: float = 30.0,
                  rate: int = 0) -> int:
        """Connect from a namespace, write everything received to `output`; returns the byte count
        (raises LabError when the connection fails or times out). `rate` > 0 reads at most that many
        bytes per second (a slow client keeps a flow alive for a while)."""
        r = self.exec(role, [sys.executable, "-m", "gateway.lab", "fetch", addr, str(port), str(output),
                             str(timeout), str(rate)], timeout=timeout + 10)
        if r.returncode != 0:
            raise LabError(f"tcp fetch {addr}:{port} from {self.ns(role)}: {r.stderr.strip()}")
        return int(r.stdout.strip())

    def start_dns(self, role: str, addr: str, answer: str | None = None, port: int = 53,
                  timeout: float = 10.0) -> subprocess.Popen:
        """A minimal UDP DNS server in a namespace: every A query is answered with `answer` (default: its own
        address), anything else with an empty NOERROR. Returns once it listens."""
        p = self.popen(role, [sys.executable, "-m", "gateway.lab", "dns", addr, str(port), answer or addr],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        import select

        ready, _, _ = select.select([p.stdout], [], [], timeout)
        if not (ready and p.stdout.readline().startswith(b"listening")):
            raise LabError(f"DNS server {addr}:{port} in {self.ns(role)} did not start")
        return p

    def resolve(self, role: str, server: str, name: str, timeout: float = 2.0, port: int = 53) -> str | None:
        """One A query from a namespace to `server`; the first address of the answer, or None when no
        answer came back within `timeout`."""
        r = self.exec(role, [sys.executable, "-m", "gateway.lab", "resolve", server, str(port), name, str(timeout)],
                      timeout=timeout + 10)
        if r.returncode not in (0, 1):
            raise LabError(f"resolve {name} via {server} from {self.ns(role)}: {r.stderr.strip()}")
        return r.stdout.strip() or None

    def start_gateway(self, config: dict | str | Path, queues: int | None = None,
                      signatures: str | None = None) -> InlineGateway:
        """Start `gateway run` in {p}-gw. `config` is a TOML file or a dict in the TOML layout; a dict's
        gateway.state_dir defaults to a directory inside the lab state, so labs never share one."""
        gw_state = self.state / "gateway"
        gw_state.mkdir(parents=True, exist_ok=True)
        if isinstance(config, dict):
            raw = json.loads(json.dumps(config))        # deep copy
            raw.setdefault("gateway", {}).setdefault("state_dir", str(gw_state))
            path = self.state / "gateway.toml"
            path.write_text(toml_dumps(raw))
        else:
            path = Path(config)
            raw = tomllib.loads(path.read_text())
        cmd = [sys.executable, "-m", "gateway", "run", "--config", str(path)]
        if queues:
            cmd += ["--queues", str(queues)]
        if signatures:
            cmd += ["--signatures", signatures]
        state_dir = Path(raw.get("gateway", {}).get("state_dir", "/var/lib/clinic-gateway"))
        with open(self.state / "gateway.log", "ab") as log:
            proc = self.popen("gw", cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return InlineGateway(self, proc, raw, state_dir, self.state / "gateway.log")


class InlineGateway:
    """A `gateway run` process inside the lab's gateway namespace."""

    def __init__(self, lab: Lab, proc: subprocess.Popen, raw: dict, state_dir: Path, log_path: Path):
        self.lab = lab
        self.proc = proc
        self.raw = raw
        self.state_dir = state_dir
        self.log_path = log_path
        gw = raw.get("gateway", {})
        self.chain = gw.get("chain", "CLINIC_GW")
        self.listen = raw.get("metrics", {}).get("listen", "127.0.0.1:9753")
        self.eve_path = Path(gw.get("eve") or state_dir / "eve.json")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def state(self) -> dict:
        try:
            return json.loads((self.state_dir / "supervisor.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 20.0) -> dict:
        """Wait until the rules are installed and every queue is bound; raises LabError with the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.state()
            if st.get("ready") and all(st.get("workers", {}).values()):
                return st
            if self.proc.poll() is not None:
                raise LabError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise LabError(f"gateway not ready after {timeout:.0f}s:\n{self.log()}")

    def worker_pids(self) -> dict[str, int | None]:
        return self.state().get("workers", {})

    def metrics(self, timeout: float = 5.0) -> str:
        """The Prometheus exposition text, fetched inside the gateway namespace."""
        r = self.lab.exec("gw", ["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout),
                                 f"http://{self.listen}/metrics"], timeout=timeout + 5)
        if r.returncode != 0:
            raise LabError(f"metrics endpoint {self.listen}: curl exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def eve_events(self) -> list[dict]:
        try:
            lines = self.eve_path.read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; the gateway removes its rules. Returns the exit code (SIGKILL past timeout)."""
        if self.proc.poll() is None:
            # `ip netns exec` execs the gateway, so this pid is the supervisor itself.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------- helpers

def toml_dumps(data: dict) -> str:
    """Minimal TOML writer for config dicts: tables, arrays of tables, strings, numbers, booleans, lists."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)

    out: list[str] = []

    def table(path: list[str], d: dict) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)
                   and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
        if path and (scalars or not d):
            out.append(f"[{'.'.join(key(p) for p in path)}]")
        for k, v in scalars.items():
            out.append(f"{key(k)} = {value(v)}")
        if scalars:
            out.append("")
        for k, v in d.items():
            if isinstance(v, dict):
                table(path + [k], v)
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for item in v:
                    out.append(f"[[{'.'.join(key(p) for p in path + [k])}]]")
                    for ik, iv in item.items():
                        out.append(f"{key(ik)} = {value(iv)}")
                    out.append("")

    table([], data)
    return "\n".join(out) + "\n"


def default_config_dict() -> dict:
    return tomllib.loads(DEFAULT_CONFIG.read_text())


# ---------------------------------------------------------------------------------------------- demo

def _describe(r: subprocess.CompletedProcess) -> tuple[bool, str]:
    if r.returncode == 0:
        code, size, secs = (r.stdout.split() + ["?", "?", "?"])[:3]
        return True, f"allowed   HTTP {code}, {size} bytes in {float(secs) * 1000:.0f} ms"
    if r.returncode == 7:
        return False, "blocked   connection refused at once (the gateway answered with a TCP RST)"
    if r.returncode == 28:
        return False, "blocked   no answer (dropped silently), curl gave up"
    return False, f"failed    curl exit {r.returncode}: {r.stderr.strip()}"


def _describe_ips(r: subprocess.CompletedProcess, size: int) -> tuple[bool, str]:
    """A download the IPS should stop: the response headers get through, the file does not."""
    code, got = (r.stdout.split() + ["?", "?"])[:2]
    if r.returncode == 0 and got == str(size):
        return True, f"allowed   HTTP {code}, {got} bytes: NOT blocked (is the IPS on? see signatures/README.md)"
    if code in ("000", "?"):
        return False, "blocked   by the IPS: no response arrived, curl gave up"
    return False, f"blocked   by the IPS mid-transfer: HTTP {code} headers arrived, {got} of {size} file bytes"


def _alert_line(ev: dict) -> str:
    a = ev.get("alert") or {}
    return (f"  alert {ev.get('src_ip')}:{ev.get('src_port', '')} -> {ev.get('dest_ip')}:{ev.get('dest_port', '')} "
            f"{ev.get('proto')} {a.get('action')} sid {a.get('signature_id')} \"{a.get('signature')}\"")


def demo(prefix: str, config_path: str | None = None, signatures: str | None = None) -> int:
    raw = tomllib.loads(Path(config_path).read_text()) if config_path else default_config_dict()
    lab = Lab(prefix)
    print(f"lab {prefix}: creating namespaces {', '.join(lab.namespaces())} ...", flush=True)
    with lab:
        raw.setdefault("gateway", {})["state_dir"] = str(lab.state / "gateway")
        gw = lab.start_gateway(raw, signatures=signatures)
        gw.wait_ready()
        st = gw.state()
        print(f"gateway running in {lab.ns('gw')}: {len(st['workers'])} workers on NFQUEUE "
              f"{st['queues'][0]}..{st['queues'][1]}, chain {st['chain']} jumped to from FORWARD\n")
        wan, emr = lab.addr("wan"), EMR_ADDR
        (lab.www / "eicar.com").write_bytes(EICAR)
        cases = [
            ("lan", f"http://{wan}/", "reception PC -> internet web server"),
            ("lan", f"http://{wan}/eicar.com", "reception PC downloads a malware test file (EICAR)"),
            ("lan", f"http://{wan}:445/", "reception PC -> internet SMB port (ransomware path)"),
            ("med", f"http://{emr}:443/", "medical device -> EMR server"),
            ("med", f"http://{wan}:8080/", "medical device -> vendor maintenance portal"),
            ("med", f"http://{wan}/", "medical device -> any other internet host"),
            ("guest", f"http://{wan}/", "guest Wi-Fi -> internet"),
            ("guest", f"http://{emr}:443/", "guest Wi-Fi -> EMR server"),
        ]
        allowed = blocked = 0
        for role, url, what in cases:
            if url.endswith("/eicar.com"):      # dropped mid-transfer: curl waits for the rest until max_time
                ok, text = _describe_ips(lab.curl(role, url, max_time=1.5), len(EICAR))
            else:
                ok, text = _describe(lab.curl(role, url, max_time=2.0))
            allowed += ok
            blocked += not ok
            print(f"  {what:52s} {url:28s} {text}", flush=True)
        replies = lab.ping("lan", wan, count=3, timeout=1.0)
        print(f"  {'reception PC -> internet, ping x3':52s} {wan:28s} {replies}/3 echo replies")
        time.sleep(0.6)     # workers fold counters into the metrics every 0.5 s
        text = gw.metrics()
        print(f"\nPrometheus metrics (inside {lab.ns('gw')}: "
              f"ip netns exec {lab.ns('gw')} curl http://{gw.listen}/metrics):")
        for line in text.splitlines():
            if line.startswith(("gateway_packets_total", "gateway_bypassed_flows_total", "gateway_flows_active",
                                "gateway_workers_up", "gateway_queue_dropped_total", "gateway_alerts_total",
                                "gateway_signatures_loaded")) and not line.endswith(" 0.0"):
                print("  " + line)
        rc = gw.stop()
        events = gw.eve_events()
        kinds: dict[str, int] = {}
        for ev in events:
            kinds[ev.get("event_type", "?")] = kinds.get(ev.get("event_type", "?"), 0) + 1
        print(f"\nEVE JSON: {len(events)} events ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
        for ev in events:
            kind = ev.get("event_type")
            if kind == "alert":
                print(_alert_line(ev))
            elif kind == "drop":
                print(f"  drop  {ev.get('src_ip')} -> {ev.get('dest_ip')}:{ev.get('dest_port', '')} "
                      f"{ev.get('proto')} {json.dumps(ev.get('drop') or {})}")
        left = lab.exec("gw", ["iptables-save"], timeout=10).stdout
        print(f"\ngateway stopped (exit {rc}); rules left in {lab.ns('gw')}: "
              f"{'NONE' if st['chain'] not in left else 'SOME (bug!)'}")
        print(f"{allowed} connections allowed, {blocked} blocked. Tearing the lab down.")
    return 0


# ---------------------------------------------------------------------------------------------- CLI

def main(args) -> int:
    prefix = getattr(args, "prefix", None) or os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX
    try:
        lab = Lab(prefix)
        if args.lab_command == "up":
            lab.up()
            if args.json:
                print(json.dumps(lab.info(), indent=2))
            else:
                print(f"lab {prefix} is up: " + ", ".join(lab.namespaces()))
                print(f"try: ip netns exec {lab.ns('lan')} curl http://{lab.addr('wan')}/")
            return 0
        if args.lab_command == "down":
            problems = lab.down()
            for p in problems:
                print(f"gateway lab down: {p}", file=sys.stderr)
            return 1 if problems else 0
        if args.lab_command == "demo":
            return demo(prefix, getattr(args, "config", None), getattr(args, "signatures", None))
    except LabError as e:
        print(f"gateway lab: {e}", file=sys.stderr)
        return 1
    return 2


# ---------------------------------------------------------------------------------------------- helpers run
# inside a namespace (`python -m gateway.lab serve|ping ...`)

def _serve(addr: str, port: int, directory: str) -> None:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

    class Server(ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

        def server_bind(self) -> None:
            # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): seconds of timeouts in a
            # namespace without a resolver.
            import socketserver

            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = addr, port

    server = Server((addr, port), functools.partial(Quiet, directory=directory))
    print("listening", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    server.serve_forever()


def _send(addr: str, port: int, path: str) -> None:
    import socket
    import threading

    srv = socket.create_server((addr, port), reuse_port=False)
    print("listening", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

    def one(conn: socket.socket) -> None:
        with conn, open(path, "rb") as f:
            conn.sendfile(f)

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=one, args=(conn,), daemon=True).start()


def _fetch(addr: str, port: int, out: str, timeout: float, rate: int = 0) -> int:
    import socket

    total = 0
    start = time.monotonic()
    with socket.create_connection((addr, port), timeout=timeout) as s, open(out, "wb") as f:
        if rate:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)   # so the sender feels it
        deadline = start + timeout
        while (chunk := s.recv(min(1 << 16, rate // 10) if rate else 1 << 16)):
            f.write(chunk)
            total += len(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError(f"still receiving after {timeout}s")
            if rate and (ahead := total / rate - (time.monotonic() - start)) > 0:
                time.sleep(ahead)
    return total


def _dns_name(msg: bytes, pos: int) -> tuple[bytes, int]:
    """The uncompressed QNAME at `pos` (queries carry no pointers) and the offset after it."""
    labels = []
    while True:
        n = msg[pos]
        if n == 0:
            return b".".join(labels), pos + 1
        if n > 63 or pos + 1 + n > len(msg) or len(labels) >= 127:
            raise ValueError("bad name")
        labels.append(msg[pos + 1:pos + 1 + n])
        pos += 1 + n


def _dns_serve(addr: str, port: int, answer: str) -> None:
    import socket
    import struct

    rdata = socket.inet_aton(answer)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    print("listening", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        msg, peer = sock.recvfrom(512)
        try:
            qid, flags, qdcount = struct.unpack_from("!HHH", msg)
            if flags & 0x8000 or qdcount != 1:          # a response, or not one question: ignore it
                continue
            _, end = _dns_name(msg, 12)
            qtype, qclass = struct.unpack_from("!HH", msg, end)
        except (struct.error, ValueError, IndexError):
            continue
        question = msg[12:end + 4]
        ancount = 1 if qtype == 1 and qclass == 1 else 0
        reply = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100), 1, ancount, 0, 0) + question
        if ancount:
            reply += struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + rdata
        sock.sendto(reply, peer)


def _resolve(server: str, port: int, name: str, timeout: float) -> str:
    import random
    import socket
    import struct

    qid = random.randrange(1 << 16)
    qname = b"".join(bytes([len(label)]) + label for label in name.strip(".").encode().split(b".")) + b"\0"
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, (server, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = sock.recv(4096)
            except TimeoutError:
                break
            if len(msg) < 12 or struct.unpack_from("!H", msg)[0] != qid:
                continue
            ancount = struct.unpack_from("!H", msg, 6)[0]
            pos = 12 + len(qname) + 4
            for _ in range(ancount):
                while msg[pos] and msg[pos] < 0xC0:     # skip the owner name (labels, then maybe a pointer)
                    pos += 1 + msg[pos]
                pos += 2 if msg[pos] >= 0xC0 else 1
                rtype, _, _, rdlen = struct.unpack_from("!HHIH", msg, pos)
                pos += 10
                if rtype == 1 and rdlen == 4:
                    return socket.inet_ntoa(msg[pos:pos + 4])
                pos += rdlen
            return ""
    return ""


def _ping(dst: str, count: int, timeout: float) -> int:
    import select
    import socket
    import struct

    def checksum(b: bytes) -> int:
        if len(b) % 2:
            b += b"\0"
        s = sum(struct.unpack(f"!{len(b) // 2}H", b))
        s = (s >> 16) + (s & 0xFFFF)
        s += s >> 16
        return ~s & 0xFFFF

    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    replies = 0
    for seq in range(count):
        body = struct.pack("!d", time.time()) + b"clinic-gateway-lab"
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        sock.sendto(struct.pack("!BBHHH", 8, 0, checksum(hdr + body), ident, seq) + body, (dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, _ = sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            itype, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
            if itype == 0 and rid == ident and rseq == seq:
                replies += 1
                break
    return replies


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        _serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["send"]:
        _send(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["fetch"]:
        print(_fetch(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]),
                     int(sys.argv[6]) if len(sys.argv) > 6 else 0))
    elif sys.argv[1:2] == ["ping"]:
        print(_ping(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    elif sys.argv[1:2] == ["dns"]:
        _dns_serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["resolve"]:
        found = _resolve(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
        print(found)
        sys.exit(0 if found else 1)
    else:
        print("usage: python -m gateway.lab serve ADDR PORT DIR | send ADDR PORT FILE | "
              "fetch ADDR PORT OUT TIMEOUT [RATE] | ping DST COUNT TIMEOUT | dns ADDR PORT ANSWER | "
              "resolve SERVER PORT NAME TIMEOUT", file=sys.stderr)
        sys.exit(2)
