"""SMTP through the inline gateway: Python's smtplib in the lan namespace sends mail to a small SMTP server in the
wan namespace, through real NFQUEUE (root; skipped otherwise). A `drop` rule on an attachment's decoded bytes
(file.data) stops that mail mid-transfer; a clean mail with an attachment is delivered whole.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.labhelp import gateway_with_rules, make_lab, needs_lab

pytestmark = [pytest.mark.netns, needs_lab]
WAN = "198.18.0.10"
SID_ATTACHMENT = 9100101
MARKER = "CLINIC-LAB-MALICIOUS-MACRO"
RULES = f"""\
drop smtp any any -> any any (msg:"LAB malicious attachment"; flow:established,to_server; file.data; \
content:"{MARKER}"; sid:{SID_ATTACHMENT}; rev:1;)
"""

# A one-connection-at-a-time SMTP server: enough of RFC 5321 for smtplib (EHLO, MAIL, RCPT, DATA, QUIT). Each
# delivered message is logged as one JSON line; bounded: 1 MiB per message, 5 s idle per client, 30 s without one.
SMTP_SERVER = r"""
import json, socket, sys
addr, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(4)
srv.settimeout(30)
print("ready", flush=True)
while True:
    try:
        c, _ = srv.accept()
    except OSError:
        break
    c.settimeout(5)
    f = c.makefile("rb")
    def say(line):
        c.sendall(line.encode() + b"\r\n")
    try:
        say("220 mx.lab.example ESMTP")
        while True:
            line = f.readline(4096)
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                say("250-mx.lab.example")
                say("250 8BITMIME")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                say("250 OK")
            elif verb == b"DATA":
                say("354 go ahead")
                body = b""
                while len(body) < 1 << 20:
                    chunk = f.readline(65536)
                    if not chunk or chunk == b".\r\n":
                        break
                    body += chunk
                if chunk == b".\r\n":
                    with open(log, "a") as out:
                        out.write(json.dumps({"size": len(body), "text": body.decode("latin-1")}) + "\n")
                    say("250 queued")
            elif verb == b"QUIT":
                say("221 bye")
                break
            else:
                say("502 not implemented")
    except OSError:
        pass
    c.close()
"""

# smtplib with an attachment; prints "sent" or the exception's name (bounded by its timeout)
SEND = r"""
import smtplib, sys
from email.message import EmailMessage
msg = EmailMessage()
msg["From"], msg["To"], msg["Subject"] = "lab@clinic.example", "records@lab.example", sys.argv[3]
msg.set_content("Monthly report attached.")
msg.add_attachment(sys.argv[2].encode() * 200, maintype="application", subtype="vnd.ms-word.document.macroEnabled.12",
                   filename="report.docm")
try:
    with smtplib.SMTP(sys.argv[1], 25, timeout=4) as s:
        s.send_message(msg)
    print("sent")
except Exception as e:
    print(type(e).__name__)
"""


@pytest.fixture(scope="module")
def lab(request):
    return make_lab(request)


@pytest.fixture(scope="module")
def gw(lab, tmp_path_factory):
    yield from gateway_with_rules(lab, tmp_path_factory, "smtp-lab", RULES)


@pytest.fixture(scope="module")
def mailbox(lab, tmp_path_factory):
    log = tmp_path_factory.mktemp("mx") / "delivered.jsonl"
    p = lab.popen("wan", [sys.executable, "-c", SMTP_SERVER, WAN, "25", str(log)], stdout=subprocess.PIPE,
                  stderr=subprocess.DEVNULL, start_new_session=True)
    assert p.stdout.readline().strip() == b"ready"
    return log


def _delivered(log) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def _send(lab, payload: str, subject: str) -> str:
    return lab.exec("lan", [sys.executable, "-c", SEND, WAN, payload, subject], timeout=20).stdout.strip()


def test_clean_attachment_is_delivered(lab, gw, mailbox):
    assert _send(lab, "quarterly figures ", "clean report") == "sent", gw.log()
    (mail,) = [m for m in _delivered(mailbox) if "clean report" in m["text"]]
    assert "report.docm" in mail["text"]


def test_malicious_attachment_is_blocked_mid_mail(lab, gw, mailbox):
    outcome = _send(lab, MARKER + " ", "infected report")
    assert outcome != "sent", outcome                       # the mail never completed ...
    time.sleep(0.5)
    assert not [m for m in _delivered(mailbox) if "infected report" in m["text"]]    # ... nor arrived
    deadline = time.monotonic() + 5
    while True:
        alerts = [e for e in gw.eve_events() if e.get("event_type") == "alert"
                  and e["alert"]["signature_id"] == SID_ATTACHMENT]
        if alerts or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    (alert,) = alerts
    assert alert["alert"]["action"] == "blocked" and alert["app_proto"] == "smtp"
    assert alert["smtp"]["mail_from"] == "<lab@clinic.example>" and alert["smtp"]["rcpt_to"] == ["<records@lab.example>"]
    assert alert["email"]["subject"] == "infected report" and alert["email"]["attachment"] == ["report.docm"]
