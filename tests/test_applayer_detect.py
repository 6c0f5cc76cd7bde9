"""Protocol detection: content decides, ports only break ties."""
from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR

from gateway.applayer.detect import detect

from .test_applayer_pcaputil import DATA, tcp_streams

QUERY = bytes(DNS(id=7, rd=1, qd=DNSQR(qname="example.com")))


def test_http_by_content_on_any_port():
    assert detect(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", dport=443) == "http"
    assert detect(b"POST /x HTTP/1.0\r\n", dport=12345) == "http"
    assert detect(b"", b"HTTP/1.1 200 OK\r\n", sport=2000) == "http"
    assert detect(b"\r\n\r\nGET / HTTP/1.1\r\n") == "http"


def test_tls_by_content_on_any_port():
    client, server = tcp_streams(DATA / "tls-fingerprint-alert.pcap")[0]
    assert detect(client[:64], dport=80) == "tls"
    assert detect(b"", server[:64]) == "tls"
    sslv2, _ = tcp_streams(DATA / "sslv2-tls-upgrade.pcap")[0]
    assert detect(sslv2[:32]) == "tls"


def test_partial_prefixes_are_undecided_not_wrong():
    assert detect(b"GE") is None
    assert detect(b"\x16\x03") is None
    assert detect(b"", b"HTT") is None
    assert detect(b"", b"22") is None


def test_dns_over_udp_and_tcp():
    assert detect(QUERY, transport="udp") == "dns"
    assert detect(QUERY, transport="udp", dport=53) == "dns"
    assert detect(struct.pack("!H", len(QUERY)) + QUERY, dport=53) == "dns"
    assert detect(struct.pack("!H", len(QUERY)) + QUERY) == "dns"
    assert detect(b"\x00" * 40, transport="udp") is None          # zeros are not a query
    assert detect(b"random datagram payload....", transport="udp", dport=53) is None


def test_smtp_and_ftp_from_banner_and_client_verb():
    assert detect(b"", b"220 mx.example.org ESMTP Postfix\r\n") == "smtp"
    assert detect(b"EHLO client\r\n", b"220 welcome\r\n") == "smtp"
    assert detect(b"", b"220 (vsFTPd 3.0.3)\r\n") == "ftp"
    assert detect(b"USER anonymous\r\n", b"220 welcome\r\n") == "ftp"
    assert detect(b"", b"220 welcome\r\n") is None                 # banner alone is ambiguous ...
    assert detect(b"", b"220 welcome\r\n", dport=21) == "ftp"      # ... until the port breaks the tie
    assert detect(b"", b"220 welcome\r\n", dport=25) == "smtp"


def test_smb_from_its_netbios_framed_header():
    smb2 = b"\x00\x00\x00\x66" + b"\xfeSMB" + b"\x40\x00" + bytes(58)
    assert detect(smb2, b"", dport=445) == "smb"
    assert detect(smb2, b"", dport=8445) == "smb"                  # content, not the port
    assert detect(b"", b"\x00\x00\x00\x40\xffSMBr" + bytes(40)) == "smb"   # SMB1, the server's answer
    assert detect(b"\x00\x00\x00\x40\xfdSMB" + bytes(40)) == "smb"          # SMB3 transform (encrypted)
    assert detect(b"\x00\x00\x00", b"", dport=445) is None       # too short to tell
    assert detect(b"\x00\x00\x00\x66\xfeSM", b"", dport=445) is None
    assert detect(b"\x00\x00\x00\x66GET /", b"", dport=445) is None     # NetBIOS framing, no SMB
    assert detect(b"\x85\x00\x00\x00", b"", dport=139) is None       # a keepalive alone says nothing ...
    assert detect(b"\x85\x00\x00\x00" + smb2, b"", dport=139) == "smb"     # ... nor does it hide what follows
    session_request = b"\x81\x00\x00\x44" + bytes(0x44)
    assert detect(session_request + smb2, b"", dport=139) == "smb"
    assert detect(b"\x81\x00\x02\x00" + bytes(512) + smb2, b"", dport=139) is None   # not a short one


def test_dcerpc_over_tcp():
    bind = bytes([5, 0, 11, 3, 0x10, 0, 0, 0, 0x48, 0, 0, 0, 1, 0, 0, 0]) + bytes(56)
    assert detect(bind, b"", dport=49667) == "dcerpc"
    assert detect(bind[:10], b"", dport=135) is None                     # too short to tell
    assert detect(b"", bytes([5, 0, 12, 3, 0x10, 0, 0, 0, 0x3c, 0, 0, 0, 1, 0, 0, 0]) + bytes(44)) == "dcerpc"
    socks5 = b"\x05\x01\x00" + b"\x05\x01\x00\x03\x0bexample.org\x01\xbb"   # greeting + CONNECT, joined
    assert detect(socks5, b"", dport=1080) is None


def test_unknown_protocols_stay_unknown():
    assert detect(b"RFB 003.008\n", dport=5900) is None          # VNC: no parser here
    assert detect(b"\x00\x01\x02\x03\x04\x05\x06\x07", dport=80) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80), st.binary(max_size=80), st.sampled_from(["tcp", "udp"]),
       st.one_of(st.none(), st.integers(0, 65535)))
def test_never_raises(a, b, transport, port):
    assert detect(a, b, transport, dport=port) in (None, "http", "tls", "dns", "smtp", "ftp", "ssh", "smb", "dcerpc")
