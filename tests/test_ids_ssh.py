"""SSH in the IDS: `alert ssh` rules, ssh.proto / ssh.software / HASSH buffers, ssh app-layer events, the ssh
object of an alert, and no payload inspection once both sides encrypt. Crafted sessions through the real
Inspector; the ET Open rules are copied verbatim from the April 2024 set."""
from __future__ import annotations

from gateway.ids.rules import parse_rule

from .conftest import tcp_conversation
from .test_applayer_ssh import kexinit, packet
from .test_ids_engine import C, S, _hs_cache, alerts, inspector, run  # noqa: F401

ET_LIBSSH = ('alert ssh $EXTERNAL_NET any -> $HOME_NET 22 (msg:"ET SCAN LibSSH Based Frequent SSH Connections Likely '
             'BruteForce Attack"; flow:established,to_server; content:"SSH-"; content:"libssh"; within:20; threshold: '
             'type both, count 5, seconds 30, track by_src; classtype:attempted-admin; sid:2006546; rev:9; metadata:'
             'created_at 2010_07_30, updated_at 2019_07_26;)')
ET_ROAMING = ('alert ssh any $SSH_PORTS -> any any (msg:"ET EXPLOIT Possible CVE-2016-0777 Server Advertises '
              'Suspicious Roaming Support"; flow:established,to_client; content:"|14|"; offset:6; content:'
              '"resume@appgate.com"; distance:0; content:!"AppGateSSH_5.2"; reference:cve,2016-0777; classtype:'
              'attempted-user; sid:2022369; rev:2; metadata:created_at 2016_01_15, cve CVE_2016_0777, updated_at '
              '2019_07_26;)')
ET_PUTTY = ('alert ssh $EXTERNAL_NET any -> $HOME_NET any (msg:"ET SCAN SSH BruteForce Tool with fake PUTTY version"; '
            'flow:established,to_server; ssh_proto; content:"PUTTY"; threshold: type limit, track by_src, count 1, '
            'seconds 30; classtype:network-scan; sid:2019876; rev:6; metadata:created_at 2014_12_05, former_category '
            'SCAN, updated_at 2019_07_26;)')


def session(client_says: list[bytes], server_says: list[bytes], client=C, server=S, cport=40000, sport=22):
    """Handshake, then the server's and the client's segments in turn (the server speaks first in SSH)."""
    turns = []
    for i in range(max(len(client_says), len(server_says))):
        turns += [(seg[i], from_client) for seg, from_client in ((server_says, False), (client_says, True))
                  if i < len(seg)]
    return tcp_conversation(turns, client, server, cport, sport)


def sids(events):
    return sorted(a["alert"]["signature_id"] for a in alerts(events))


def test_ssh_rules_parse():
    r = parse_rule('alert ssh any any -> any any (ssh_proto; content:"2.0"; ssh.software; content:"libssh"; sid:1;)')
    assert r.app_proto == "ssh" and [b.buffer for b in r.buffers] == ["ssh.proto", "ssh.software"]
    r = parse_rule("alert tcp any any -> any any (app-layer-event:ssh.invalid_banner; sid:1;)")
    assert r.app_proto == "ssh"


def _scans(tmp_path, client_banner: bytes, times: int = 6) -> list[dict]:
    """An outside host (S) opening `times` SSH sessions to a clinic host's port 22 (C): the alerts of ET_LIBSSH."""
    insp, events, _ = inspector(tmp_path, ET_LIBSSH + "\n")
    pkts = []
    for n in range(times):
        pkts += session([client_banner], [b"SSH-2.0-OpenSSH_9.2p1\r\n"], client=S, server=C, cport=41000 + n)
    run(insp, pkts)
    return alerts(events)


def test_et_libssh_bruteforce_fires_on_the_fifth_connection(tmp_path):
    # threshold both, count 5 per source in 30 s: one alert, on the fifth session
    (a,) = _scans(tmp_path, b"SSH-2.0-libssh_0.9.6\r\n")
    assert a["alert"]["signature_id"] == 2006546 and a["src_ip"] == S and a["flow"]["pkts_toserver"] >= 2
    assert a["ssh"]["client"] == {"proto_version": "2.0", "software_version": "libssh_0.9.6"}
    assert a["ssh"]["server"]["software_version"] == "OpenSSH_9.2p1"
    assert _scans(tmp_path, b"SSH-2.0-libssh_0.9.6\r\n", times=4) == []
    # an OpenSSH client as often: nothing
    assert _scans(tmp_path, b"SSH-2.0-OpenSSH_8.4\r\n") == []


def test_et_roaming_server_kexinit(tmp_path):
    algs = (b"curve25519-sha256,resume@appgate.com",) + (b"ssh-ed25519", b"aes128-ctr", b"aes128-ctr",
                                                          b"hmac-sha2-256", b"hmac-sha2-256", b"none", b"none", b"", b"")
    hello = b"SSH-2.0-OpenSSH_9.2p1\r\n"
    insp, events, _ = inspector(tmp_path, ET_ROAMING + "\n")
    run(insp, session([hello], [b"SSH-2.0-OpenSSH_5.8\r\n" + kexinit(algs)]))
    assert sids(events) == [2022369]
    # the AppGate server that is meant to offer it: no alert
    insp, events, _ = inspector(tmp_path, ET_ROAMING + "\n")
    run(insp, session([hello], [b"SSH-2.0-AppGateSSH_5.2\r\n" + kexinit(algs)]))
    assert alerts(events) == []


def test_et_putty_rule_reads_the_protocol_version(tmp_path):
    insp, events, _ = inspector(tmp_path, ET_PUTTY + "\n")
    run(insp, session([b"SSH-PUTTY-x\r\n"], [b"SSH-2.0-OpenSSH_9.2p1\r\n"], client=S, server=C))
    assert sids(events) == [2019876]
    # the real PuTTY says "2.0" as its protocol version: the software version is not what ssh_proto reads
    insp, events, _ = inspector(tmp_path, ET_PUTTY + "\n")
    run(insp, session([b"SSH-2.0-PuTTY_Release_0.78\r\n"], [b"SSH-2.0-OpenSSH_9.2p1\r\n"], client=S, server=C))
    assert alerts(events) == []


def test_buffers_by_direction_hassh_and_events(tmp_path):
    client = b"SSH-2.0-OpenSSH_9.2p1\r\n"
    rules = (
        'alert ssh any any -> any any (msg:"client software"; flow:to_server; ssh.software; content:"OpenSSH_9"; '
        "startswith; sid:1;)\n"
        # the server's banner is not in the to_server buffer
        'alert ssh any any -> any any (flow:to_server; ssh.software; content:"dropbear"; sid:2;)\n'
        'alert ssh any any -> any any (flow:to_client; ssh.software; content:"dropbear"; sid:3;)\n'
        'alert ssh any any -> any any (ssh.hassh.string; content:"curve25519-sha256,ext-info-c|3b|aes128-ctr"; '
        "startswith; sid:4;)\n"
        'alert ssh any any -> any any (ssh.hassh.server; content:"0"; sid:5;)\n'      # never: no server KEXINIT
        "alert ssh any any -> any any (app-layer-event:ssh.long_banner; sid:6;)\n"
        # after both NEWKEYS the payload is encrypted: not inspected (encryption handling)
        'alert ssh any any -> any any (content:"SECRETSECRET"; sid:7;)\n'
    )
    insp, events, _ = inspector(tmp_path, rules)
    run(insp, session([client + kexinit() + packet(21), b"SECRETSECRET" * 3],
                      [b"SSH-2.0-dropbear_2016.74 " + b"c" * 300 + b"\r\n", packet(21), b"SECRETSECRET"]))
    got = sids(events)
    assert got == [1, 3, 4, 6]
    assert next(a for a in alerts(events) if a["alert"]["signature_id"] == 4)["ssh"]["client"]["hassh"]["string"] \
        .startswith("curve25519-sha256,ext-info-c;aes128-ctr")
