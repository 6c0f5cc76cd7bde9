"""Zone firewall: zones by interface and CIDR, rule order, defaults, state, reject, ICMP related."""
from pathlib import Path

import pytest

from gateway import config
from gateway.config import ConfigError
from gateway.pipeline import Inspector, Verdict
from gateway.stages import build_stages

from .conftest import icmp, make_inspector, tcp, udp

CLINIC = Path(__file__).resolve().parent.parent / "config" / "gateway.toml"

LAN_PC, EMR, BOOKING = "10.10.0.10", "10.10.0.20", "10.10.0.30"
XRAY, GUEST, VENDOR, WEB = "10.20.0.10", "10.30.0.10", "198.18.0.10", "198.18.0.99"


def passed(verdict: Verdict) -> Verdict:
    """A UDP/ICMP flow with nothing left to inspect is bypassed at once: for the policy that is ACCEPT."""
    return Verdict.ACCEPT if verdict == Verdict.BYPASS else verdict


@pytest.fixture
def clinic():
    events = []
    cfg = config.load(CLINIC)
    insp = Inspector(cfg, build_stages(cfg), sink=events.append)
    insp.events = events
    return insp


@pytest.mark.parametrize("src, dst, dport, proto, expected", [
    (LAN_PC, WEB, 443, "tcp", Verdict.ACCEPT),          # staff browse the internet
    (LAN_PC, WEB, 53, "udp", Verdict.ACCEPT),
    (LAN_PC, WEB, 445, "tcp", Verdict.REJECT),          # but never SMB out
    (XRAY, EMR, 104, "tcp", Verdict.ACCEPT),            # DICOM to the EMR server
    (XRAY, LAN_PC, 445, "tcp", Verdict.DROP),           # nothing else in the clinic
    (XRAY, VENDOR, 8080, "tcp", Verdict.ACCEPT),        # vendor maintenance portal
    (XRAY, VENDOR, 80, "tcp", Verdict.DROP),            # ...only that port
    (XRAY, WEB, 443, "tcp", Verdict.DROP),              # no internet for devices
    (GUEST, WEB, 443, "tcp", Verdict.ACCEPT),
    (GUEST, EMR, 443, "tcp", Verdict.REJECT),           # guest Wi-Fi never reaches the clinic
    (WEB, LAN_PC, 22, "tcp", Verdict.DROP),             # inbound denied...
    (WEB, BOOKING, 443, "tcp", Verdict.ACCEPT),         # ...except what is published
    (WEB, BOOKING, 80, "tcp", Verdict.DROP),
    (LAN_PC, XRAY, 104, "tcp", Verdict.ACCEPT),         # staff view images
    (LAN_PC, XRAY, 22, "tcp", Verdict.DROP),
])
def test_clinic_policy(clinic, src, dst, dport, proto, expected):
    pkt = tcp(src, dst, 40000, dport, "S") if proto == "tcp" else udp(src, dst, 40000, dport)
    assert passed(clinic.process(pkt, 1.0)) == expected


def test_return_traffic_is_stateful(clinic):
    assert clinic.process(tcp(LAN_PC, WEB, 40000, 443, "S"), 1.0) == Verdict.ACCEPT
    assert clinic.process(tcp(WEB, LAN_PC, 443, 40000, "SA", 9, 1001), 1.0) == Verdict.ACCEPT
    # the same server opening a connection of its own is denied
    assert clinic.process(tcp(WEB, LAN_PC, 443, 40001, "S"), 1.0) == Verdict.DROP


def test_reply_direction_hint_orients_a_flow_met_mid_connection(clinic):
    """Inline, after a worker restart, the first packet of a running download may be the server's;
    the kernel's reply-direction mark keeps it from being judged as an inbound connection."""
    data = tcp(WEB, LAN_PC, 443, 40000, "A", 9000, 1001, b"x" * 100)
    assert passed(clinic.process(data, 1.0, reply=True)) == Verdict.ACCEPT
    flow = next(iter(clinic.flows.flows.values()))
    assert flow.client_ip == LAN_PC and flow.fw_rule == "lan-to-internet"
    # without the hint the same packet opens a wan -> lan flow, which the policy denies
    assert clinic.process(tcp(WEB, LAN_PC, 443, 40001, "A", 9000, 1001, b"x"), 1.0) == Verdict.DROP


def test_denied_flow_stays_denied_and_is_logged_once(clinic):
    for _ in range(3):
        assert clinic.process(tcp(XRAY, WEB, 40000, 443, "S"), 1.0) == Verdict.DROP
    drops = [e for e in clinic.events if e["event_type"] == "drop"]
    assert len(drops) == 1
    assert drops[0]["drop"] == {"reason": "firewall", "action": "drop", "rule": "default:medical",
                                "src_zone": "medical", "dest_zone": "wan"}
    clinic.finish()
    (flow,) = [e for e in clinic.events if e["event_type"] == "flow"]
    assert flow["flow"]["action"] == "drop" and flow["flow"]["firewall"]["rule"] == "default:medical"


def test_logged_rule_names_itself(clinic):
    assert clinic.process(tcp(LAN_PC, WEB, 40000, 3389, "S"), 1.0) == Verdict.REJECT
    (drop,) = [e for e in clinic.events if e["event_type"] == "drop"]
    assert drop["drop"]["rule"] == "no-smb-rdp-out" and drop["drop"]["action"] == "reject"


def test_block_rules_log_unless_silenced():
    events = []
    raw = {"firewall": {"rules": [
        {"name": "loud", "action": "deny", "proto": "tcp", "ports": [23]},
        {"name": "quiet", "action": "reject", "proto": "tcp", "ports": [24], "log": False}]}}
    insp = make_inspector(raw, events=events)
    assert insp.process(tcp(dport=23, flags="S"), 1.0) == Verdict.DROP
    assert insp.process(tcp(dport=24, flags="S"), 1.0) == Verdict.REJECT
    assert [e["drop"]["rule"] for e in events if e["event_type"] == "drop"] == ["loud"]


def test_interfaces_take_precedence_over_addresses():
    raw = {"zones": {"inside": {"interfaces": ["eth1"], "default": "allow"},
                     "outside": {"cidrs": ["0.0.0.0/0"], "default": "deny"}}}
    insp = make_inspector(raw)
    # a spoofed "inside" address arriving on the outside is judged as outside
    assert insp.process(tcp("10.1.1.1", "10.2.2.2", 1, 2, "S"), 1.0, indev="eth0") == Verdict.DROP
    assert insp.process(tcp("198.18.5.5", "10.2.2.2", 1, 2, "S"), 1.0, indev="eth1") == Verdict.ACCEPT


def test_longest_prefix_zone_and_global_default():
    raw = {"zones": {"big": {"cidrs": ["10.0.0.0/8"], "default": "allow"},
                     "small": {"cidrs": ["10.9.0.0/16"], "default": "deny"}},
           "firewall": {"default": "reject"}}
    insp = make_inspector(raw)
    assert insp.process(tcp("10.1.0.1", "198.18.0.1", 1, 2, "S"), 1.0) == Verdict.ACCEPT
    assert insp.process(tcp("10.9.0.1", "198.18.0.1", 1, 2, "S"), 1.0) == Verdict.DROP
    assert insp.process(tcp("198.19.0.1", "10.1.0.1", 1, 2, "S"), 1.0) == Verdict.REJECT


def test_port_ranges_and_protocol():
    raw = {"zones": {"a": {"cidrs": ["10.0.0.0/8"], "default": "deny"}},
           "firewall": {"rules": [{"from": "a", "proto": "udp", "ports": ["5000-5010"], "action": "allow"}]}}
    insp = make_inspector(raw)
    assert passed(insp.process(udp("10.0.0.1", "198.18.0.1", 1, 5005), 1.0)) == Verdict.ACCEPT
    assert insp.process(udp("10.0.0.1", "198.18.0.1", 1, 5011), 1.0) == Verdict.DROP
    assert insp.process(tcp("10.0.0.1", "198.18.0.1", 1, 5005, "S"), 1.0) == Verdict.DROP


def test_icmp_error_for_an_allowed_flow_is_related(clinic):
    syn = tcp(LAN_PC, WEB, 40000, 443, "S")
    assert clinic.process(syn, 1.0) == Verdict.ACCEPT
    # "fragmentation needed" from a router on the way, quoting our SYN
    err = icmp("198.18.0.254", LAN_PC, type=3, code=4, payload=syn[:28])
    assert passed(clinic.process(err, 1.1)) == Verdict.ACCEPT
    # an unsolicited error (quoting nothing we forwarded) is judged by the rules: wan -> lan denied
    bogus = icmp("198.18.0.254", LAN_PC, type=3, code=4,
                 payload=tcp(LAN_PC, WEB, 40999, 443, "S")[:28])
    assert clinic.process(bogus, 1.2) == Verdict.DROP
    # and the related error did not open the host pair for pings from the internet
    assert clinic.process(icmp("198.18.0.254", LAN_PC, type=8), 1.3) == Verdict.DROP


def test_ping_out_and_reply(clinic):
    assert passed(clinic.process(icmp(LAN_PC, WEB, type=8), 1.0)) == Verdict.ACCEPT
    assert passed(clinic.process(icmp(WEB, LAN_PC, type=0), 1.0)) == Verdict.ACCEPT


@pytest.mark.parametrize("raw, key", [
    ({"zones": {"a": {"cidrs": ["10.0.0.0/33"]}}}, "zones.a.cidrs"),
    ({"zones": {"a": {}}}, "zones.a"),
    ({"firewall": {"rules": [{"action": "allow", "from": "nowhere"}]}}, "firewall.rules[0] (rule-0)"),
    ({"firewall": {"rules": [{"action": "maybe"}]}}, "firewall.rules[0] (rule-0).action"),
    ({"firewall": {"rules": [{"action": "allow", "ports": [80]}]}}, "firewall.rules[0] (rule-0).ports"),
    ({"firewall": {"rules": [{"action": "allow", "proto": "tcp", "ports": ["90-80"]}]}},
     "firewall.rules[0] (rule-0).ports"),
    ({"gateway": {"queues": 0}}, "gateway.queues"),
    ({"gateway": {"fail_open": "yes"}}, "gateway.fail_open"),
    ({"flows": {"max_flows": -1}}, "flows.max_flows"),
    ({"metrics": {"listen": "localhost"}}, "metrics.listen"),
    ({"bogus": {}}, "bogus"),
])
def test_bad_config_names_key(raw, key):
    with pytest.raises(ConfigError) as e:
        config.from_dict(raw, "test.toml")
    assert e.value.where == "test.toml" and e.value.key == key


def test_bad_toml_file_names_file(tmp_path):
    bad = tmp_path / "gw.toml"
    bad.write_text("[gateway]\nqueues = \n")
    with pytest.raises(ConfigError, match=r"gw.toml: -: not valid TOML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "missing.toml")


def test_config_check_cli(tmp_path, capsys):
    from gateway.cli import main
    assert main(["config", "check", str(CLINIC)]) == 0
    assert "4 zones, 7 firewall rules" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[zones.x]\ncidrs = ['nope']\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "zones.x.cidrs: not an IP network: 'nope'" in capsys.readouterr().err
