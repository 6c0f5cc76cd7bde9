"""Tunnels: the packet inside IP-in-IP / GRE / VXLAN / Geneve is inspected as its own packet (own flow, EVE `tunnel`
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


def _inspector(tmp_path, rules=RULES, ips=False, vxlan_port=0, geneve_port=6081):
    path = tmp_path / "t.rules"
    path.write_text(rules)
    cfg = Config(gateway=GatewaySection(vxlan_port=vxlan_port, geneve_port=geneve_port))
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
    keyed = decode(bytes(IP(src=OUT_A, dst=OUT_B) / GRE(key_present=1, key=5, seqnum_present=1, sequence_number=9)
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


def _geneve(payload: bytes, ethertype: int = 0x0800, options: bytes = b"", first: int | None = None,
            flags: int = 0) -> bytes:
    """A Geneve header (version 0, options given in 4-byte words) and its payload."""
    ver_optlen = len(options) // 4 if first is None else first
    return bytes([ver_optlen, flags]) + ethertype.to_bytes(2, "big") + b"\x00\x00\x07\x00" + options + payload


# an AWS load balancer style option: class 0x0108, type 1, 2 words of data
_OPTION = b"\x01\x08\x01\x02" + bytes(8)


def test_geneve_inner_packet_either_direction_of_the_default_port(tmp_path):
    insp, events = _inspector(tmp_path)
    inner = bytes(IP(src=IN_A, dst=IN_B) / TCP(sport=1000, dport=80, flags="PA") / b"hello")
    to_port = IP(src=OUT_A, dst=OUT_B) / UDP(sport=40000, dport=6081) / Raw(_geneve(inner, options=_OPTION))
    from_port = IP(src=OUT_B, dst=OUT_A) / UDP(sport=6081, dport=40000) / Raw(_geneve(
        bytes(Ether() / IP(src=IN_B, dst=IN_A) / ICMP(type=8)), ethertype=0x6558))
    insp.process(bytes(to_port), 1.0, pcap_cnt=1)
    insp.process(bytes(from_port), 1.1, pcap_cnt=2)
    tcp_alert, icmp_alert = _alerts(events)
    assert (tcp_alert["src_ip"], tcp_alert["proto"], tcp_alert["pkt_src"]) == (IN_A, "TCP", "geneve encapsulation")
    assert tcp_alert["tunnel"]["dest_port"] == 6081 and tcp_alert["tunnel"]["proto"] == "UDP"
    assert (icmp_alert["src_ip"], icmp_alert["proto"]) == (IN_B, "ICMP")


@pytest.mark.parametrize("payload", [
    _geneve(b"", first=0x40 | 0),                                    # version 1
    _geneve(b"", flags=0x01),                                        # a reserved flag bit
    _geneve(b"", options=b"\x01\x08\x01\x05" + bytes(8)),            # an option longer than the header says
    b"\x00\x00\x08",                                                 # shorter than the fixed header
], ids=["version", "reserved-bit", "option-lengths", "short"])
def test_not_geneve_stays_plain_udp(payload):
    pkt = decode(bytes(IP(src=OUT_A, dst=OUT_B) / UDP(sport=40000, dport=6081) / Raw(payload)))
    assert inner_datagram(pkt, -1, 6081) == (None, "", ())


def test_geneve_unknown_payload_type_is_a_decoder_event(tmp_path):
    rules = 'alert pkthdr any any -> any any (decode-event:geneve.unknown_payload_type; sid:9;)\n'
    insp, events = _inspector(tmp_path, rules=rules)
    odd = IP(src=OUT_A, dst=OUT_B) / UDP(sport=40000, dport=6081) / Raw(_geneve(b"\x00" * 20, ethertype=0x88CC))
    insp.process(bytes(odd), 1.0)
    (alert,) = _alerts(events)
    assert alert["alert"]["signature_id"] == 9 and alert["proto"] == "UDP"


def test_geneve_port_setting(tmp_path):
    inner = bytes(IP(src=IN_A, dst=IN_B) / TCP(sport=1000, dport=80, flags="PA") / b"hello")
    carrier = bytes(IP(src=OUT_A, dst=OUT_B) / UDP(sport=40000, dport=6081) / Raw(_geneve(inner)))
    insp, events = _inspector(tmp_path, geneve_port=0)
    insp.process(carrier, 1.0)
    assert _alerts(events) == []
    from gateway.config import ConfigError, from_dict
    with pytest.raises(ConfigError, match="gateway.geneve_port"):
        from_dict({"gateway": {"geneve_port": 70000}})


def test_ip_only_rules_see_every_packet_of_a_gre_carrier(tmp_path):
    # Suricata sets up no flow for a GRE carrier, so an IP-only rule matches each of its packets; the inner
    # TCP flow gets it on its first packet each way only
    insp, events = _inspector(tmp_path, rules='alert ip any any -> any any (sid:5;)\n')
    for i in range(3):
        inner = IP(src=IN_A, dst=IN_B) / TCP(sport=1000, dport=80, flags="PA", seq=1 + i) / b"x"
        insp.process(bytes(IP(src=OUT_A, dst=OUT_B) / GRE() / inner), 1.0 + i)
    protos = sorted(a["proto"] for a in _alerts(events))
    assert protos == ["GRE", "GRE", "GRE", "TCP"]
