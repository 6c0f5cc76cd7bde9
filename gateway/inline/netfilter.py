"""The netfilter rules the inline driver owns: one chain in the filter table, jumped to from FORWARD.

    FORWARD  [-i IFACE] -j CLINIC_GW                      (one jump per gateway.interfaces entry, or one for all)
    CLINIC_GW  -m connmark --mark B/B -j ACCEPT            bypassed flow: the kernel forwards it alone
               -m mark --mark B/B -j CONNMARK --set-xmark B/B   worker said BYPASS (verdict REPEAT + mark B)
               -m mark --mark B/B -j ACCEPT
               -m mark --mark R/R -p tcp -j REJECT --reject-with tcp-reset     worker said REJECT
               -m mark --mark R/R -p udp -j REJECT --reject-with icmp-port-unreachable
               -m mark --mark R/R -j REJECT --reject-with icmp-admin-prohibited
               -m conntrack --ctdir REPLY -j MARK --set-xmark P/P    tells the worker "reply direction"
               -j NFQUEUE --queue-balance Q0:Qn [--queue-bypass]

Verdicts that need the kernel's help come back as NF_REPEAT with a mark bit set ("repeat mode", as
Suricata calls it), so the packet walks FORWARD again and meets the mark rules before the NFQUEUE rule;
a repeated packet therefore never reaches NFQUEUE twice. The bypass bit goes into the conntrack mark
because nfnetlink_queue's NFQA_CT verdict attribute needs CONFIG_NETFILTER_NETLINK_GLUE_CT, which
stock kernels (this one included) often lack.

The same chain is installed with ip6tables (REJECT types spelled for ICMPv6) when ip6tables exists.
Installation is one `iptables-restore --noflush` transaction per family; removal deletes every jump,
flushes and deletes the chain, and is idempotent, so a start after a crash first cleans up.
Commands run in the caller's network namespace, or in `netns` via `ip netns exec` (tests, the lab).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from ..config import GatewaySection

# One row per family: the binaries and how REJECT answers in that family.
_FAMILIES = (
    ("iptables", "iptables-restore", "iptables-save", "icmp-port-unreachable", "icmp-admin-prohibited"),
    ("ip6tables", "ip6tables-restore", "ip6tables-save", "icmp6-port-unreachable", "icmp6-adm-prohibited"),
)
TIMEOUT = 15.0


class NetfilterError(RuntimeError):
    """A rule command failed; the message carries the command and iptables' own error text."""


@dataclass(frozen=True)
class QueueRange:
    first: int
    count: int

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def target(self, fail_open: bool) -> list[str]:
        if self.count == 1:
            args = ["-j", "NFQUEUE", "--queue-num", str(self.first)]
        else:
            args = ["-j", "NFQUEUE", "--queue-balance", f"{self.first}:{self.last}"]
        if fail_open:
            args.append("--queue-bypass")   # no program bound to the queue: accept instead of drop
        return args


def chain_rules(gw: GatewaySection, queues: QueueRange, family: int = 4) -> list[list[str]]:
    """The chain's rules, in order, as iptables argument lists (without `-A CHAIN`)."""
    _, _, _, port_unreach, admin = _FAMILIES[0 if family == 4 else 1]
    b = f"{gw.mark_bypass:#x}/{gw.mark_bypass:#x}"
    r = f"{gw.mark_reject:#x}/{gw.mark_reject:#x}"
    rules = []
    if gw.bypass:
        rules += [
            ["-m", "connmark", "--mark", b, "-j", "ACCEPT"],
            ["-m", "mark", "--mark", b, "-j", "CONNMARK", "--set-xmark", b],
            ["-m", "mark", "--mark", b, "-j", "ACCEPT"],
        ]
    rules += [
        ["-m", "mark", "--mark", r, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["-m", "mark", "--mark", r, "-p", "udp", "-j", "REJECT", "--reject-with", port_unreach],
        ["-m", "mark", "--mark", r, "-j", "REJECT", "--reject-with", admin],
        # Tell the worker which packets conntrack saw in the reply direction (orients flows it meets
        # mid-connection, e.g. after a restart). Set only on packets about to be queued.
        ["-m", "mark", "!", "--mark", r, "-m", "conntrack", "--ctdir", "REPLY", "-j", "MARK",
         "--set-xmark", f"{gw.mark_reply:#x}/{gw.mark_reply:#x}"],
        # Belt and braces: a packet carrying the reject bit never goes back to userspace.
        ["-m", "mark", "!", "--mark", r] + queues.target(gw.fail_open),
    ]
    return rules


def jump_rules(gw: GatewaySection) -> list[list[str]]:
    if not gw.interfaces:
        return [["-j", gw.chain]]
    return [["-i", iface, "-j", gw.chain] for iface in gw.interfaces]


def restore_script(gw: GatewaySection, queues: QueueRange, family: int = 4) -> str:
    """iptables-restore input (used with --noflush, so nothing else in the table is touched)."""
    lines = ["*filter", f":{gw.chain} - [0:0]"]
    lines += [_join(["-A", gw.chain] + rule) for rule in chain_rules(gw, queues, family)]
    # -I FORWARD 1 in reverse, so the jumps end up first and in config order.
    lines += [_join(["-I", "FORWARD", "1"] + rule) for rule in reversed(jump_rules(gw))]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _join(args: list[str]) -> str:
    return " ".join(a if a and " " not in a else f'"{a}"' for a in args)


def _prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def _run(cmd: list[str], netns: str | None, input: str | None = None, check: bool = True):
    full = _prefix(netns) + cmd
    try:
        proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except FileNotFoundError as e:
        raise NetfilterError(f"{' '.join(full)}: {e.strerror}: {e.filename}") from None
    except subprocess.TimeoutExpired:
        raise NetfilterError(f"{' '.join(full)}: no answer within {TIMEOUT:.0f}s") from None
    if check and proc.returncode != 0:
        raise NetfilterError(f"{' '.join(full)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def families(need_v6: bool = True) -> list[int]:
    """Families whose tools are installed (IPv4 is required; IPv6 is added when ip6tables exists)."""
    if shutil.which("iptables") is None or shutil.which("iptables-restore") is None:
        raise NetfilterError("iptables / iptables-restore not found (apt-get install iptables)")
    out = [4]
    if need_v6 and shutil.which("ip6tables") and shutil.which("ip6tables-restore"):
        out.append(6)
    return out


def install(gw: GatewaySection, queues: QueueRange, netns: str | None = None) -> list[int]:
    """Remove leftovers of an earlier run, then install the chain and jumps. Returns the families done."""
    done = []
    remove(gw, netns)
    try:
        for fam in families():
            _, restore, _, _, _ = _FAMILIES[0 if fam == 4 else 1]
            _run([restore, "--noflush"], netns, input=restore_script(gw, queues, fam))
            done.append(fam)
    except NetfilterError:
        remove(gw, netns)
        raise
    return done


def remove(gw: GatewaySection, netns: str | None = None) -> list[str]:
    """Delete every jump to the chain, flush and delete it, in both families. Idempotent; returns
    what was removed (for logs). Errors other than "not there" raise NetfilterError."""
    removed = []
    for fam in families():
        binary, _, save, _, _ = _FAMILIES[0 if fam == 4 else 1]
        dump = _run([save, "-t", "filter"], netns).stdout
        jumps = [line for line in dump.splitlines()
                 if line.startswith("-A ") and line.split()[1] != gw.chain and _jumps_to(line, gw.chain)]
        for line in jumps:
            # "-A FORWARD ... -j CHAIN" -> "-D FORWARD ... -j CHAIN": same spec, delete verb.
            spec = line.split()[1:]
            _run([binary, "-w", "-t", "filter", "-D"] + spec, netns)
            removed.append(f"{binary} {line}")
        if f":{gw.chain} " in dump:
            _run([binary, "-w", "-t", "filter", "-F", gw.chain], netns)
            _run([binary, "-w", "-t", "filter", "-X", gw.chain], netns)
            removed.append(f"{binary} chain {gw.chain}")
    return removed


def _jumps_to(line: str, chain: str) -> bool:
    words = line.split()
    return any(w in ("-j", "-g") and i + 1 < len(words) and words[i + 1] == chain for i, w in enumerate(words))


def installed(chain: str, netns: str | None = None) -> bool:
    """True when any family still has the chain or a jump to it."""
    for fam in families():
        _, _, save, _, _ = _FAMILIES[0 if fam == 4 else 1]
        if chain in _run([save, "-t", "filter"], netns).stdout:
            return True
    return False
