"""Replay driver: pcaps crafted with scapy through `gateway replay`, EVE output, bad captures."""
import json
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import PcapNgWriter, wrpcap

from gateway.cli import main
from gateway.pcapio import PcapError, read_frames

from .conftest import handshake, tcp

CLINIC = str(Path(__file__).resolve().parent.parent / "config" / "gateway.toml")


def _eth(raw: bytes):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(raw)


def _write(path, frames, linktype=None):
    for i, f in enumerate(frames):
        f.time = 1700000000 + i / 10
    wrpcap(str(path), frames, linktype=linktype)
    return str(path)


def _replay(capsys, *argv):
    code = main(["replay", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_events_pcap_cnt_and_non_ip_frames(tmp_path, capsys):
    frames = [Ether() / ARP()] + [_eth(d) for d, _ in handshake()]
    pcap = _write(tmp_path / "a.pcap", frames)
    code, events, err = _replay(capsys, pcap)
    assert code == 0
    (flow,) = [e for e in events if e["event_type"] == "flow"]
    assert flow["flow"]["pkts_toserver"] == 2 and flow["src_ip"] == "10.10.0.10"
    assert "replayed 3 IP packets (1 non-IP frames)" in err


def test_clinic_config_drop_event_names_rule_and_pcap_cnt(tmp_path, capsys):
    frames = [_eth(tcp("10.20.0.10", "198.18.0.99", 40000, 443, "S")),
              _eth(tcp("10.20.0.10", "198.18.0.99", 40000, 443, "S"))]
    pcap = _write(tmp_path / "b.pcap", frames)
    code, events, err = _replay(capsys, "--config", CLINIC, pcap)
    assert code == 0
    (drop,) = [e for e in events if e["event_type"] == "drop"]
    assert drop["pcap_cnt"] == 1 and drop["drop"]["rule"] == "default:medical"
    assert drop["src_ip"] == "10.20.0.10" and drop["dest_port"] == 443
    assert "drop/firewall=2" in err


def test_eve_to_file_and_multiple_pcaps(tmp_path, capsys):
    p1 = _write(tmp_path / "1.pcap", [_eth(tcp(sport=1, flags="S"))])
    p2 = _write(tmp_path / "2.pcap", [_eth(tcp(sport=2, flags="S"))])
    eve = tmp_path / "eve.json"
    assert main(["replay", "--no-progress", "--eve", str(eve), p1, p2]) == 0
    flows = [json.loads(x) for x in eve.read_text().splitlines()]
    assert sorted(e["src_port"] for e in flows) == [1, 2]


def test_truncated_pcap_writes_what_it_read_then_fails(tmp_path, capsys):
    pcap = Path(_write(tmp_path / "t.pcap", [_eth(d) for d, _ in handshake()]))
    pcap.write_bytes(pcap.read_bytes()[:-10])
    code, events, err = _replay(capsys, str(pcap))
    assert code == 1
    assert "record 3: truncated" in err
    assert events and events[0]["flow"]["pkts_toserver"] == 1 and events[0]["flow"]["pkts_toclient"] == 1


def test_not_a_pcap(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not a capture")
    code, events, err = _replay(capsys, str(bad))
    assert code == 1 and "not a pcap or pcapng file" in err and events == []
    code, _, err = _replay(capsys, str(tmp_path / "missing.pcap"))
    assert code == 1 and "cannot open" in err


def test_bad_config_is_refused(tmp_path, capsys):
    cfg = tmp_path / "gw.toml"
    cfg.write_text("[flows]\nmax_flows = 'many'\n")
    pcap = _write(tmp_path / "a.pcap", [_eth(tcp())])
    code, events, err = _replay(capsys, "--config", str(cfg), pcap)
    assert code == 2 and "flows.max_flows: must be an integer" in err and events == []


def test_malformed_packet_in_capture_is_an_anomaly(tmp_path, capsys):
    pcap = tmp_path / "m.pcap"
    with open(pcap, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))     # raw IP
        bad = b"\x45\x00\x01\x00" + b"\x00" * 16
        f.write(struct.pack("<IIII", 1, 0, len(bad), len(bad)) + bad)
    code, events, err = _replay(capsys, str(pcap))
    assert code == 0 and events[0]["event_type"] == "anomaly" and events[0]["pcap_cnt"] == 1
    assert "drop/malformed=1" in err


@pytest.mark.parametrize("linktype, frame", [
    ("vlan", lambda raw: Ether() / Dot1Q(vlan=10) / IP(raw)),
    ("raw", lambda raw: IP(raw)),
])
def test_link_layers(tmp_path, linktype, frame):
    raw = tcp(payload=b"x")
    path = _write(tmp_path / f"{linktype}.pcap", [frame(raw)], linktype=101 if linktype == "raw" else None)
    (f,) = list(read_frames(path))
    assert f.ip == raw and f.index == 1


def test_pcapng(tmp_path):
    path = tmp_path / "a.pcapng"
    w = PcapNgWriter(str(path))
    for d, _ in handshake():
        w.write(_eth(d))
    w.close()
    frames = list(read_frames(str(path)))
    assert [f.index for f in frames] == [1, 2, 3]
    assert frames[0].ip == handshake()[0][0]


def test_read_frames_errors(tmp_path):
    empty = tmp_path / "e.pcap"
    empty.write_bytes(b"")
    with pytest.raises(PcapError, match="empty file"):
        list(read_frames(str(empty)))
    weird = tmp_path / "w.pcap"
    weird.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147))
    with pytest.raises(PcapError, match="link type 147 is not supported"):
        list(read_frames(str(weird)))
