"""The captured packet in EVE alerts (packet, packet_info, ether, vlan) and the frames reassembly rebuilds."""
from __future__ import annotations

import base64

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Dot1Q, Ether

from gateway.config import FragmentSection
from gateway.events import add_packet_fields
from gateway.fragments import Defragmenter
from gateway.packet import decode
from gateway.pcapio import LINKTYPE_ETHERNET, LINKTYPE_PPP, strip_link


def test_ethernet_vlan_frame_fields():
    frame = bytes(Ether(src="00:01:02:03:04:05", dst="05:04:03:02:01:00") / Dot1Q(vlan=1111)
                  / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
    ip = strip_link(LINKTYPE_ETHERNET, frame)
    pkt = decode(ip)
    pkt.frame, pkt.linktype = frame, LINKTYPE_ETHERNET
    ev: dict = {}
    add_packet_fields(ev, pkt)
    assert base64.b64decode(ev["packet"]) == frame
    assert ev["packet_info"] == {"linktype": 1, "linktype_name": "EN10MB"}
    assert ev["ether"] == {"src_mac": "00:01:02:03:04:05", "dest_mac": "05:04:03:02:01:00"}
    assert ev["vlan"] == [1111]


def test_raw_packet_without_frame_is_the_datagram():
    ip = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
    ev: dict = {}
    add_packet_fields(ev, decode(ip))
    assert base64.b64decode(ev["packet"]) == ip
    assert ev["packet_info"]["linktype_name"] == "RAW"
    assert "ether" not in ev and "vlan" not in ev


def test_ppp_compressed_protocol_field():
    ip = bytes(IP(src="1.1.1.1", dst="2.2.2.2") / TCP())
    assert strip_link(LINKTYPE_PPP, b"\x21" + ip) == ip                 # 1-byte protocol, no address/control
    assert strip_link(LINKTYPE_PPP, b"\xff\x03\x00\x21" + ip) == ip
    assert strip_link(LINKTYPE_PPP, b"\xff\x03\xc0\x21" + b"\x01" * 20) is None   # LCP


def test_reassembled_ipv4_has_link_layer_and_valid_checksum():
    link = b"\x21"
    whole = IP(src="1.1.1.1", dst="2.2.2.2", id=7) / TCP(flags="S") / (b"A" * 16)
    defrag = Defragmenter(FragmentSection())
    out = None
    for frag in (bytes(f) for f in whole.fragment(16)):
        p = decode(frag)
        p.frame, p.linktype = link + frag, LINKTYPE_PPP
        out = defrag.add(p) or out
    assert out is not None
    assert out.frame[:1] == link and out.frame[1:] == out.data
    rebuilt = IP(out.data)
    want = IP(bytes(IP(src="1.1.1.1", dst="2.2.2.2", id=7, flags=0) / TCP(flags="S") / (b"A" * 16)))
    assert rebuilt.chksum == want.chksum and rebuilt.frag == 0 and rebuilt.flags == 0


def test_reassembled_ipv6_drops_the_fragment_header():
    payload = bytes(TCP(sport=1, dport=2, flags="S")) + b"B" * 40
    base = IPv6(src="2001:db8::1", dst="2001:db8::2", nh=44)
    f1 = bytes(base / IPv6ExtHdrFragment(nh=6, id=3, offset=0, m=1) / payload[:32])
    f2 = bytes(base / IPv6ExtHdrFragment(nh=6, id=3, offset=4, m=0) / payload[32:])
    defrag = Defragmenter(FragmentSection())
    assert defrag.add(decode(f1)) is None
    out = defrag.add(decode(f2))
    assert out is not None and out.proto == 6 and out.ip_hlen == 40
    assert out.data[6] == 6 and int.from_bytes(out.data[4:6], "big") == len(payload)
    assert out.data[40:] == payload and out.sport == 1 and out.dport == 2


def test_nsh_on_ethernet_is_decoded_in_place():
    ip = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
    eth = b"\x52\x54\x00\x00\x00\x01\x52\x54\x00\x00\x00\x02\x89\x4f"
    md2 = b"\x00\x03\x02\x01" + b"\x00\x00\x01\x02" + b"\x00\x01\x00\x00"   # length 3 words, MD type 2, next IPv4
    assert strip_link(LINKTYPE_ETHERNET, eth + md2 + ip) == ip
    inner_eth = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
    to_eth = b"\x00\x02\x01\x03" + b"\x00\x00\x01\x02"                     # next protocol Ethernet
    assert strip_link(LINKTYPE_ETHERNET, eth + to_eth + inner_eth) == ip
    assert strip_link(LINKTYPE_ETHERNET, eth + b"\x00\x02\x01\x05" + b"\x00" * 4 + ip) is None   # MPLS
