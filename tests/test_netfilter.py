"""The netfilter rules of the inline driver: what is generated (no root needed), and install/remove in a
network namespace of the test's own (root)."""
from __future__ import annotations

import subprocess

import pytest

from gateway.config import GatewaySection
from gateway.inline import netfilter
from gateway.inline.netfilter import QueueRange, chain_rules, jump_rules, restore_script
from tests.labhelp import needs_lab, unique_prefix


def _index(rules: list[list[str]], *words: str) -> int:
    for i, r in enumerate(rules):
        if all(w in r for w in words):
            return i
    raise AssertionError(f"no rule with {words}: {rules}")


def test_bypass_and_reject_rules_come_before_the_queue():
    rules = chain_rules(GatewaySection(), QueueRange(0, 2))
    queue = _index(rules, "NFQUEUE")
    assert queue == len(rules) - 1
    assert _index(rules, "connmark", "ACCEPT") < queue
    save = _index(rules, "CONNMARK")
    assert rules[save][rules[save].index("--set-xmark") + 1] == "0x100000/0x100000"
    assert rules[save + 1][-2:] == ["-j", "ACCEPT"] and "0x100000/0x100000" in rules[save + 1]
    tcp_reset = _index(rules, "tcp-reset")
    assert ["-p", "tcp"] == rules[tcp_reset][rules[tcp_reset].index("-p"):rules[tcp_reset].index("-p") + 2]
    assert "0x200000/0x200000" in rules[tcp_reset]
    assert _index(rules, "icmp-port-unreachable") < queue
    assert _index(rules, "icmp-admin-prohibited") < queue
    # A packet carrying the reject bit never goes back to the queue (repeat mode).
    assert rules[queue][:5] == ["-m", "mark", "!", "--mark", "0x200000/0x200000"]


def test_queue_balance_and_fail_open():
    open_rules = chain_rules(GatewaySection(fail_open=True), QueueRange(3, 4))
    assert open_rules[-1][-4:] == ["NFQUEUE", "--queue-balance", "3:6", "--queue-bypass"]
    closed = chain_rules(GatewaySection(fail_open=False), QueueRange(0, 1))
    assert closed[-1][-3:] == ["NFQUEUE", "--queue-num", "0"]
    assert "--queue-bypass" not in closed[-1]


def test_no_bypass_rules_when_bypass_is_off():
    rules = chain_rules(GatewaySection(bypass=False), QueueRange(0, 2))
    assert not any("connmark" in r or "CONNMARK" in r for r in rules)


def test_custom_marks_are_used():
    gw = GatewaySection(mark_bypass=0x4, mark_reject=0x8)
    text = " ".join(" ".join(r) for r in chain_rules(gw, QueueRange(0, 1)))
    assert "0x4/0x4" in text and "0x8/0x8" in text
    assert "0x100000" not in text and "0x200000" not in text


def test_ipv6_reject_types():
    text = restore_script(GatewaySection(), QueueRange(0, 2), family=6)
    assert "icmp6-port-unreachable" in text and "icmp6-adm-prohibited" in text
    assert "icmp-port-unreachable" not in text.replace("icmp6-port-unreachable", "")


def test_jumps_per_interface_in_config_order():
    assert jump_rules(GatewaySection()) == [["-j", "CLINIC_GW"]]
    gw = GatewaySection(interfaces=("gw-lan", "gw-med"), chain="MYCHAIN")
    assert jump_rules(gw) == [["-i", "gw-lan", "-j", "MYCHAIN"], ["-i", "gw-med", "-j", "MYCHAIN"]]
    script = restore_script(gw, QueueRange(0, 1))
    lines = script.splitlines()
    assert lines[0] == "*filter" and lines[1] == ":MYCHAIN - [0:0]" and lines[-1] == "COMMIT"
    inserts = [line for line in lines if line.startswith("-I FORWARD 1")]
    # inserted at position 1 in reverse, so gw-lan ends up first
    assert inserts == ["-I FORWARD 1 -i gw-med -j MYCHAIN", "-I FORWARD 1 -i gw-lan -j MYCHAIN"]


# ---------------------------------------------------------------------------------------------- root

@pytest.fixture
def netns_name():
    name = f"{unique_prefix()}-nf"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


def _save(ns: str, binary: str = "iptables-save") -> str:
    return subprocess.run(["ip", "netns", "exec", ns, binary, "-t", "filter"], capture_output=True, text=True,
                          check=True, timeout=10).stdout


@pytest.mark.netns
@needs_lab
def test_install_and_remove_in_a_namespace(netns_name):
    gw = GatewaySection(interfaces=("gw-lan", "gw-wan"))
    fams = netfilter.install(gw, QueueRange(0, 2), netns=netns_name)
    assert 4 in fams
    dump = _save(netns_name)
    assert "-A FORWARD -i gw-lan -j CLINIC_GW" in dump and "-A FORWARD -i gw-wan -j CLINIC_GW" in dump
    assert "--queue-balance 0:1 --queue-bypass" in dump
    assert "--reject-with tcp-reset" in dump
    if 6 in fams:
        assert "icmp6-adm-prohibited" in _save(netns_name, "ip6tables-save")
    assert netfilter.installed("CLINIC_GW", netns=netns_name)

    # Installing again (a restart after a crash) replaces, never duplicates.
    netfilter.install(gw, QueueRange(0, 2), netns=netns_name)
    assert _save(netns_name).count("-j CLINIC_GW") == 2

    removed = netfilter.remove(gw, netns=netns_name)
    assert any("chain CLINIC_GW" in r for r in removed)
    assert "CLINIC_GW" not in _save(netns_name)
    assert not netfilter.installed("CLINIC_GW", netns=netns_name)
    assert netfilter.remove(gw, netns=netns_name) == []          # idempotent


@pytest.mark.netns
@needs_lab
def test_remove_finds_jumps_the_config_no_longer_names(netns_name):
    """The interfaces changed between a crash and the restart: every jump to the chain still goes."""
    netfilter.install(GatewaySection(interfaces=("old0", "old1")), QueueRange(0, 1), netns=netns_name)
    netfilter.remove(GatewaySection(interfaces=("new0",)), netns=netns_name)
    assert "CLINIC_GW" not in _save(netns_name)


@pytest.mark.netns
@needs_lab
def test_a_bad_rule_fails_with_the_command_and_leaves_nothing(netns_name):
    gw = GatewaySection(chain="X" * 40)         # longer than iptables allows for a chain name
    with pytest.raises(netfilter.NetfilterError, match="iptables-restore"):
        netfilter.install(gw, QueueRange(0, 1), netns=netns_name)
    assert "XXXX" not in _save(netns_name)
