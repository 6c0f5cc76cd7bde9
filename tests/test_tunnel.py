"""Tunnels: the packet inside IP-in-IP / GRE / VXLAN is inspected as its own packet (own flow, EVE `tunnel`
object) besides the carrier, and a dropped inner packet drops the carrier. Real Inspector and IDS stage."""
from __future__ import annotations

import pytest
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from gateway.config import Config, GatewaySection
from gateway.packet import decode
from gateway.pipeline import Inspector, Verdict
from gateway.signatures import SignatureSet
from gateway.stages import build_stages
from gateway.tunnel import inner_datagram

OUT_A, OUT_B = "198.18.0.1", "198.18.0.2"
IN_A, IN_B = "10.1.0.3", "10.1.0.4"
RULES = 'alert tcp any any -> any any (content:"hello"; sid:1;)\nalert icmp any any -> any any (itype:8; sid:2;)\n'


@pytest.fixture(autouse=True)
def _hs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_HS_CACHE", str(tmp_path / "hs"))


def _inspector(tmp_path, rules=RULES, ips=False, vxlan_port=0):
    path = tmp_path / "t.rules"
    path.write_text(rules)
    cfg = Config(gateway=GatewaySection(vxlan_port=vxlan_port))
    sigs = SignatureSet(root=tmp_path, rule_files=(path,), yara_files=(), lists={}, mail_files=())
    events: list[dict] = []
    return Inspector(cfg, build_stages(cfg, sigs, ips=ips), sink=events.append), events


def _alerts(events):
    return [e for e in events if e["event_type"] == "alert"]


def test_ip_in_ip_inner_packet_alerts_with_tunnel_object(tmp_path):
    insp, events = _inspector(tmp_path)
    inner = IP(src=IN_A, dst=IN_B) / TCP(sport=1000, dport=80, flags="PA") / b"hello"
    assert insp.process(bytes(IP(src=OUT_A, dst=OUT_B) / inner), 1.0, pcap_cnt=1) == Verdict.ACCEPT
    (alert,) = _alerts(events)
    assert (alert["src_ip"], alert["dest_ip"], alert["proto"]) == (IN_A, IN_B, "TCP")
    assert alert["pkt_src"] == "ipv4 tunnel"
    assert alert["tunnel"] == {"src_ip": OUT_A, "dest_ip": OUT_B, "src_port": 0, "dest_port": 0,
                               "proto": "IP-in-IP", "depth": 1, "pcap_cnt": 1}


def test_vxlan_only_on_the_configured_port(tmp_path):
    ping = Ether() / IP(src=IN_A, dst=IN_B) / ICMP(type=8)
    carrier = bytes(IP(src=OUT_A, dst=OUT_B) / UDP(sport=5000, dport=4789) / VXLAN(vni=7) / ping)
    insp, events = _inspector(tmp_path)
    insp.process(carrier, 1.0)
    assert _alerts(events) == []
    insp, events = _inspector(tmp_path, vxlan_port=4789)
    insp.process(carrier, 1.0)
    (alert,) = _alerts(events)
    assert alert["tunnel"]["dest_port"] == 4789 and alert["src_ip"] == IN_A
    assert alert["packet_info"]["linktype_name"] == "RAW"


def test_dropped_inner_packet_drops_the_carrier(tmp_path):
    insp, _ = _inspector(tmp_path, 'drop tcp any any -> any any (content:"hello"; sid:1;)', ips=True)
    inner = IP(src=IN_A, dst=IN_B) / TCP(sport=1000, dport=80, flags="PA") / b"hello"
    assert insp.process(bytes(IP(src=OUT_A, dst=OUT_B) / GRE() / inner), 1.0) == Verdict.DROP
    clean = IP(src=IN_A, dst=IN_B) / TCP(sport=1001, dport=80, flags="PA") / b"bye"
    assert insp.process(bytes(IP(src=OUT_A, dst=OUT_B) / GRE() / clean), 1.1) == Verdict.ACCEPT


def test_gre_variants_and_bad_inner_versions():
    inner = bytes(IP(src=IN_A, dst=IN_B) / UDP())
    keyed = decode(bytes(IP(src=OUT_A, dst=OUT_B) / GRE(key_present=1, key=5, seqnum_present=1, seqence_number=9)
                         / IP(src=IN_A, dst=IN_B) / UDP()))
    assert inner_datagram(keyed, -1)[0] == inner
    ppp = decode(bytes(IP(src=OUT_A, dst=OUT_B) / GRE(proto=0x880B) / Raw(b"\xff\x03\x00\x21" + inner)))
    assert inner_datagram(ppp, -1)[0] == inner
    wrong = decode(bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=41)) + inner)
    assert inner_datagram(wrong, -1) == (None, "", ("ipv6.ipv6_in_ipv6_wrong_version",))


def test_tunnel_carrier_flow_is_not_bypassed(tmp_path):
    # no rules: every stage is done at once, so an ordinary flow is bypassed (the control), a carrier never
    insp, _ = _inspector(tmp_path, rules="")
    plain = IP(src=IN_A, dst=IN_B) / UDP(sport=5, dport=6) / b"x"
    assert insp.process(bytes(plain), 1.0) == Verdict.BYPASS
    for i in range(3):
        assert insp.process(bytes(IP(src=OUT_A, dst=OUT_B) / plain), 2.0 + i) == Verdict.ACCEPT


def test_erspan_is_decoded_in_place_with_its_vlan(tmp_path):
    insp, events = _inspector(tmp_path)
    mirrored = bytes(Ether() / IP(src=IN_A, dst=IN_B) / ICMP(type=8))
    erspan = b"\x10\x17\x00\x01\x00\x00\x00\x00"     # version 1, VLAN 23, session 1
    ip = bytes(IP(src=OUT_A, dst=OUT_B) / GRE(seqnum_present=1, proto=0x88BE) / Raw(erspan + mirrored))
    frame = bytes(Ether()) + ip
    insp.process(ip, 1.0, pcap_cnt=1, frame=frame, linktype=1)
    (alert,) = _alerts(events)
    assert (alert["src_ip"], alert["proto"], alert["vlan"]) == (IN_A, "ICMP", [23])
    assert "tunnel" not in alert and alert["packet_info"]["linktype"] == 1


def test_fragments_inside_a_tunnel_reassemble_with_the_tunnel_object(tmp_path):
    insp, events = _inspector(tmp_path)
    whole = IP(src=IN_A, dst=IN_B, id=9) / TCP(sport=1000, dport=80, flags="PA") / (b"z" * 40 + b"hello")
    for i, frag in enumerate(whole.fragment(24)):
        insp.process(bytes(IP(src=OUT_A, dst=OUT_B) / frag), 1.0 + i, pcap_cnt=i + 1)
    (alert,) = _alerts(events)
    assert alert["src_ip"] == IN_A and alert["tunnel"]["proto"] == "IP-in-IP" and alert["pkt_src"] == "ipv4 tunnel"
