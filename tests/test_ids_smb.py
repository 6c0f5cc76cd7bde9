"""SMB and DCERPC in the IDS: the flows are detected from their headers and `alert smb` / `alert dcerpc` rules
inspect their stream bytes (there is no SMB or DCERPC parser: ET Open's rules for them are all content rules).
Crafted sessions between two clinic hosts through the real Inspector; the ET Open rules are copied verbatim
from the April 2024 set."""
from __future__ import annotations

import struct

from .conftest import tcp_conversation
from .test_ids_engine import C, _hs_cache, alerts, inspector, run  # noqa: F401

FILE_SERVER = "10.20.0.5"       # in $HOME_NET, as the rule wants the target to be

ET_SYSTEM32 = ('alert smb any any -> $HOME_NET any (msg:"ET ATTACK_RESPONSE Possible Lateral Movement - File Creation '
               'Request in Remote System32 Directory (T1105)"; flow:established,to_server; content:"|05 00|"; offset:16; '
               'depth:2; content:"|00|W|00|i|00|n|00|d|00|o|00|w|00|s|00 5c 00|S|00|y|00|s|00|t|00|e|00|m|00|3|00|2|00|"; '
               'fast_pattern; classtype:attempted-user; sid:2027267; rev:2; metadata:affected_product '
               'Windows_XP_Vista_7_8_10_Server_32_64_Bit, created_at 2019_04_23, deployment Internal, former_category '
               'ATTACK_RESPONSE, performance_impact Low, signature_severity Major, tag T1105, tag lateral_movement, tag '
               'remote_file_copy, updated_at 2019_07_26;)')


ET_WMIEXEC = ('alert dcerpc $HOME_NET any -> $HOME_NET any (msg:"ET INFO Suspected Impacket WMIExec Activity"; '
              'flow:established,to_server; content:"|3e 00 20 00 5c 00 5c 00 31 00 32 00 37 00 2e 00 30 00 2e 00 30 00 '
              '2e 00 31 00 5c 00 41 00 44 00 4d 00 49 00 4e 00 24 00 5c 00 5f 00 5f 00|"; fast_pattern; reference:url,'
              'thedfirreport.com/2023/01/09/unwrapping-ursnifs-gifts; classtype:bad-unknown; sid:2043996; rev:1; '
              'metadata:attack_target Client_Endpoint, created_at 2023_01_26, deployment Internal, former_category '
              'INFO, confidence Low, signature_severity Informational, updated_at 2023_01_26;)')


def smb2(command: int, body: bytes, message_id: int = 1) -> bytes:
    """One SMB2 request in its NetBIOS session message."""
    header = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ16s", 64, 1, 0, command, 1, 0, 0, message_id, 0, 1, 0x1234, b"")
    msg = header + body
    return b"\x00" + len(msg).to_bytes(3, "big") + msg


def create_request(name: str) -> bytes:
    """SMB2 CREATE of `name` (UTF-16LE, after the 56-byte fixed part)."""
    raw = name.encode("utf-16-le")
    fixed = struct.pack("<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, 0x0012019F, 0x80, 7, 1, 0x40, 64 + 56, len(raw), 0, 0)
    return smb2(5, fixed + raw, message_id=4)


def session(segments: list[tuple[bytes, bool]], sport: int = 445) -> list[bytes]:
    """A clinic PC (C) and a clinic file server: handshake, then each (payload, from_client) in turn."""
    return tcp_conversation(segments, C, FILE_SERVER, 40000, sport)


NEGOTIATE = smb2(0, struct.pack("<HHHHI16sIHH", 36, 2, 1, 0, 0x7F, b"c" * 16, 0, 0, 0) + b"\x02\x02\x10\x02")


def test_et_lateral_movement_to_system32(tmp_path):
    # a clinic PC (C) writes into a server's System32 over its ADMIN$ share (a worm or a ransomware operator)
    insp, events, _ = inspector(tmp_path, ET_SYSTEM32 + "\n")
    run(insp, session([(NEGOTIATE, True), (b"\x00\x00\x00\x08\xfeSMB\x40\x00\x00\x00", False),
                            (create_request("\\Windows\\System32\\evil.dll"), True)]))
    (a,) = alerts(events)
    assert a["alert"]["signature_id"] == 2027267 and a["app_proto"] == "smb" and a["direction"] == "to_server"


def test_smb_near_misses(tmp_path):
    # another directory: nothing
    insp, events, _ = inspector(tmp_path, ET_SYSTEM32 + "\n")
    run(insp, session([(NEGOTIATE, True), (create_request("\\Users\\Public\\report.pdf"), True)]))
    assert alerts(events) == []
    # the same bytes in a flow that is not SMB (an HTTP upload to port 445): the rule is for SMB only
    insp, events, _ = inspector(tmp_path, ET_SYSTEM32 + "\n")
    run(insp, session([(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n", True),
                            (create_request("\\Windows\\System32\\evil.dll"), True)]))
    assert [e.get("app_proto") for e in events if e["event_type"] == "flow"] == ["http"]
    assert alerts(events) == []


def dcerpc(ptype: int, body: bytes, call_id: int = 1) -> bytes:
    """A connection-oriented DCE/RPC PDU, little-endian."""
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, 3, b"\x10\x00\x00\x00", 16 + len(body), 0, call_id) + body


def test_et_wmiexec_over_dcerpc(tmp_path):
    # Impacket's wmiexec runs each command with its output redirected to \\127.0.0.1\ADMIN$\__<time>
    bind = dcerpc(11, struct.pack("<HHIB3x", 5840, 5840, 0, 1) + bytes(44))
    command = r"cmd.exe /Q /c whoami 1> \\127.0.0.1\ADMIN$\__1674728100.28 2>&1".encode("utf-16-le")
    request = dcerpc(0, struct.pack("<IHH", len(command), 0, 24) + b"MEOW" + bytes(20) + command, call_id=2)
    insp, events, _ = inspector(tmp_path, ET_WMIEXEC + "\n")
    run(insp, session([(bind, True), (dcerpc(12, bytes(44)), False), (request, True)], sport=49667))
    (a,) = alerts(events)
    assert a["alert"]["signature_id"] == 2043996 and a["app_proto"] == "dcerpc"
    # the same command text sent over a plain TCP connection that is no DCERPC: the rule is for DCERPC flows
    insp, events, _ = inspector(tmp_path, ET_WMIEXEC + "\n")
    run(insp, session([(b"hello\r\n", True), (command, True)], sport=49667))
    assert alerts(events) == []
