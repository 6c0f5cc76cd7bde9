"""SMTP parser (applayer/smtp.py): commands and replies, pipelining, DATA / BDAT / RSET / STARTTLS, MIME
decoding of attachments, bounds and malformed input (events, never exceptions), and fuzzing."""
from __future__ import annotations

import base64
import quopri

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.applayer.smtp import SmtpLimits, SmtpParser, header_params

BANNER = b"220 mx.example ESMTP\r\n"


def talk(p: SmtpParser, steps) -> list:
    """Feed (bytes, to_server) steps; return every event."""
    out = []
    for data, ts in steps:
        out += p.feed(data, ts)
    return out


def infos(events, kind="anomaly"):
    return [e.info for e in events if e.kind == kind]


def mail(body: bytes, pipelining=False) -> list:
    ehlo = b"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n" if pipelining else b"250 mx\r\n"
    return [(BANNER, False), (b"EHLO client.example\r\n", True), (ehlo, False),
            (b"MAIL FROM:<a@example.org> SIZE=100\r\n", True), (b"250 ok\r\n", False),
            (b"RCPT TO:<b@example.net>\r\n", True), (b"250 ok\r\n", False),
            (b"RCPT TO: <c@example.net>\r\n", True), (b"250 ok\r\n", False),
            (b"DATA\r\n", True), (b"354 go ahead\r\n", False), (body, True), (b"250 queued\r\n", False)]


def multipart(*parts: bytes, boundary=b"BOUND") -> bytes:
    out = (b"From: Alice <a@example.org>\r\nTo: <b@example.net>, <c@example.net>\r\nSubject: report\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n"
           b"This is a multi-part message in MIME format.\r\n")
    for p in parts:
        out += b"--" + boundary + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--\r\n.\r\n"


def attachment(name: bytes, content: bytes, enc=b"base64") -> bytes:
    if enc == b"base64":
        data = base64.encodebytes(content).replace(b"\n", b"\r\n")
    elif enc == b"quoted-printable":
        data = quopri.encodestring(content).replace(b"\n", b"\r\n")
    else:
        data = content
    return (b"Content-Type: application/octet-stream; name=\"" + name + b"\"\r\nContent-Transfer-Encoding: " + enc +
            b"\r\nContent-Disposition: attachment; filename=\"" + name + b"\"\r\n\r\n" + data)


TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\nsee attached.\r\n"


# ------------------------------------------------------------------------------------------ commands and replies

def test_one_mail_is_one_transaction_with_envelope_and_headers():
    p = SmtpParser()
    ev = talk(p, mail(multipart(TEXT, attachment(b"r.pdf", b"%PDF-1.4 report"))))
    tx = p.tx
    assert tx.tx_id == 0 and tx.complete and tx.data_done
    assert tx.helo == b"client.example" and tx.mail_from == b"<a@example.org>"     # SIZE= parameter cut off
    assert tx.rcpt_to == [b"<b@example.net>", b"<c@example.net>"]
    assert tx.header(b"Subject") == b"report" and tx.header(b"from") == b"Alice <a@example.org>"
    assert tx.attachments == [b"r.pdf"] and tx.file_data() == [b"%PDF-1.4 report"]
    assert tx.mime_status == "PARSE_DONE" and not tx.anomalies
    assert infos(ev, "file") == ["r.pdf"] and "tx_complete" in [e.kind for e in ev]
    # the next MAIL FROM starts the next transaction, RSET and QUIT after a mail do not
    talk(p, [(b"RSET\r\n", True), (b"250 ok\r\n", False)])
    assert p.tx is tx
    talk(p, [(b"MAIL FROM:<x@example.org>\r\n", True)])
    assert p.tx.tx_id == 1 and p.tx.helo == b"client.example" and p.tx.mail_from == b"<x@example.org>"


def test_multi_line_replies_and_pipelined_commands_match_in_order():
    p = SmtpParser()
    ev = talk(p, [(BANNER, False), (b"EHLO c\r\n", True),
                  (b"250-mx\r\n250-SIZE 100\r\n", False), (b"250-PIPELINING\r\n250 HELP\r\n", False),
                  # pipelined: MAIL, RCPT, RCPT, DATA in one segment; DATA last is allowed
                  (b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n", True),
                  (b"250 ok\r\n250 ok\r\n550 no such user\r\n354 go\r\n", False),
                  (b"Subject: s\r\n\r\nbody\r\n.\r\n", True), (b"250 ok\r\n", False)])
    assert p.pipelining and p.tx.complete and not p.cmds
    assert infos(ev, "reply") == ["220", "250", "250", "250", "550", "354", "250"]
    assert infos(ev) == []


def test_pipelining_after_data_is_an_invalid_sequence():
    p = SmtpParser()
    ev = talk(p, [(BANNER, False), (b"EHLO c\r\n", True), (b"250 mx\r\n", False),
                  (b"MAIL FROM:<a@x>\r\n", True), (b"250 ok\r\n", False),
                  (b"DATA\r\nRCPT TO:<b@y>\r\n", True)])
    assert "invalid_pipelined_sequence" in infos(ev)


def test_reply_anomalies():
    p = SmtpParser()
    ev = talk(p, [(b"EHLO c\r\n", True)])
    assert infos(ev) == ["no_server_welcome_message"]
    p = SmtpParser()
    ev = talk(p, [(b"554 go away\r\n", False)])          # the first reply must be 220
    assert infos(ev) == ["invalid_reply"]
    ev = talk(p, [(b"EHLO c\r\n", True), (b"2\r\n", False), (b"999 what\r\n", False)])
    assert infos(ev) == ["invalid_reply"]               # once per transaction
    p = SmtpParser()
    ev = talk(p, [(BANNER, False), (b"EHLO a\r\n", True), (b"250 ok\r\n", False), (b"HELO b\r\n", True),
                  (b"DATA\r\n", True), (b"250 ok\r\n", False), (b"503 need MAIL\r\n", False)])
    assert infos(ev) == ["duplicate_fields", "data_command_rejected"]
    assert p.mode == 0          # not in data mode: the DATA was refused


def test_over_long_lines_are_cut_with_events():
    p = SmtpParser(SmtpLimits(max_line=100))
    ev = talk(p, [(BANNER, False), (b"EHLO " + b"a" * 300 + b"\r\nNOOP\r\n", True),
                  (b"250 " + b"b" * 150 + b"\r\n", False), (b"250 ok\r\n", False)])
    assert infos(ev) == ["max_command_line_len_exceeded", "truncated_line", "max_reply_line_len_exceeded"]
    assert len(p.helo) == 95 and not p.cmds         # both commands answered, the cut line counted once
    # a line with no end at all: cut at the limit, the rest discarded until its end
    ev = talk(p, [(b"MAIL FROM:<" + b"x" * 500, True), (b"y" * 500, True), (b">\r\nRCPT TO:<r@x>\r\n", True)])
    assert infos(ev) == []              # (the transaction has these events already: once each)
    assert p.tx.mail_from == b"<" + b"x" * 89 and p.tx.rcpt_to == [b"<r@x>"]


# ------------------------------------------------------------------------------------------ DATA

def test_end_of_data_split_across_segments_and_dot_stuffing():
    att = attachment(b"d.txt", b".hidden\r\n..two\r\nplain\r\n", enc=b"7bit")
    # on the wire every line that starts with a dot gets one more (RFC 5321 4.5.2)
    msg = multipart(TEXT, att.replace(b"\r\n.", b"\r\n.."))
    for cut in (1, 2, 3, 5, 7):
        p = SmtpParser()
        steps = mail(b"")[:-2]
        steps.append((b"354 go\r\n", False))
        for i in range(0, len(msg), cut):
            steps.append((msg[i:i + cut], True))
        ev = talk(p, steps)
        assert p.tx.data_done and p.mode == 0, cut
        # (the part's last line end belongs to the boundary; attachment() ends its data with one of its own)
        assert p.tx.file_data() == [b".hidden\r\n..two\r\nplain\r\n"], cut
        assert infos(ev) == []
        talk(p, [(b"250 ok\r\n", False)])
        assert p.tx.complete


def test_terminator_needs_a_line_of_its_own():
    p = SmtpParser()
    talk(p, mail(b"")[:-2] + [(b"354 go\r\n", False), (b"Subject: x\r\n\r\nnot the end .\r\n", True),
                                (b"\r\n.", True)])
    assert not p.tx.data_done
    talk(p, [(b"\r", True), (b"\n", True)])
    assert p.tx.data_done


def test_pipelining_server_enters_data_mode_without_waiting_for_354():
    p = SmtpParser()
    steps = mail(b"")[:-4] + [(b"DATA\r\n" + multipart(attachment(b"a.bin", b"\x00\x01MZ")), True),
                              (b"354 go\r\n250 ok\r\n", False)]
    steps[2] = (b"250-mx\r\n250 PIPELINING\r\n", False)
    talk(p, steps)
    assert p.tx.complete and p.tx.file_data() == [b"\x00\x01MZ"]


# ------------------------------------------------------------------------------------------ BDAT, RSET, STARTTLS

def test_bdat_chunks_and_rset_between_mails():
    p = SmtpParser()
    msg = multipart(attachment(b"c.zip", b"PK\x03\x04 chunked")).removesuffix(b".\r\n")
    a, b = msg[:57], msg[57:]
    ev = talk(p, [(BANNER, False), (b"EHLO c\r\n", True), (b"250-mx\r\n250 CHUNKING\r\n", False),
                  (b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n", True), (b"250 ok\r\n250 ok\r\n", False),
                  (b"BDAT %d\r\n" % len(a) + a[:10], True), (a[10:], True), (b"250 ok\r\n", False),
                  (b"BDAT %d LAST\r\n" % len(b) + b, True)])
    assert not p.tx.complete and p.tx.data_done
    assert p.tx.file_data() == [b"PK\x03\x04 chunked"]
    # the first chunk ends inside a line: Suricata counts BDAT in lines and calls that an overrun
    assert infos(ev) == ["bdat_chunk_len_exceeded"] or not a.endswith(b"\n")
    ev = talk(p, [(b"250 ok\r\n", False), (b"RSET\r\n", True), (b"250 ok\r\n", False),
                  (b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 13 LAST\r\nMessage Two\r\n", True),
                  (b"250 ok\r\n250 ok\r\n250 ok\r\n", False)])
    assert p.tx.tx_id == 1 and p.tx.complete and infos(ev) == []
    # a chunk that is not a whole number of lines (smtp-rset's counterpart)
    ev = talk(p, [(b"MAIL FROM:<a@x>\r\nBDAT 5 LAST\r\nMessage\r\n", True)])
    assert "bdat_chunk_len_exceeded" in infos(ev)


def test_rset_ends_an_open_mail():
    p = SmtpParser()
    talk(p, mail(b"")[:-2] + [(b"354 go\r\n", False)])
    talk(p, [(b"Subject: x\r\n\r\nhalf\r\n.\r\nRSET\r\n", True), (b"250 ok\r\n", False)])
    assert p.tx.complete
    p = SmtpParser()
    talk(p, [(BANNER, False), (b"EHLO c\r\nMAIL FROM:<a@x>\r\nRSET\r\n", True),
             (b"250 mx\r\n250 ok\r\n250 reset\r\n", False), (b"MAIL FROM:<b@x>\r\n", True)])
    assert p.tx.tx_id == 1 and p.tx.mail_from == b"<b@x>"


def test_starttls_stops_parsing_and_a_refusal_is_an_event():
    p = SmtpParser()
    ev = talk(p, [(BANNER, False), (b"EHLO c\r\n", True), (b"250-mx\r\n250 STARTTLS\r\n", False),
                  (b"STARTTLS\r\n", True), (b"454 not now\r\n", False)])
    # 454 is not in Suricata's table of reply codes: invalid_reply too, but it still answers the STARTTLS
    assert infos(ev) == ["invalid_reply", "tls_rejected"] and not p.done and not p.cmds
    talk(p, [(b"STARTTLS\r\n", True), (b"220 go ahead\r\n", False)])
    assert p.done
    assert talk(p, [(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, True),
                    (b"\x16\x03\x03\x00\x10" + b"\x02" * 16, False)]) == []


# ------------------------------------------------------------------------------------------ MIME

def test_base64_and_quoted_printable_attachments_are_decoded():
    qp_content = "Grüße = 100%\nline two".encode()
    big = bytes(range(256)) * 40
    p = SmtpParser()
    talk(p, mail(multipart(TEXT, attachment(b"b.bin", big), attachment(b"q.txt", qp_content,
                                                                         enc=b"quoted-printable"))))
    assert p.tx.attachments == [b"b.bin", b"q.txt"]
    assert p.tx.file_data() == [big, qp_content.replace(b"\n", b"\r\n")]
    assert [f.closed for f in p.tx.files] == [True, True] and p.tx.files[0].size == len(big)


def test_base64_quads_carry_across_lines_like_suricata():
    # bug-6207: "NA=", "=Mg", "==" decode to "42"
    part = (b"Content-Type: application/zip;\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment;\n filename*0=smtptest-a;\n filename*1=b..zip\r\n\r\n"
            b"NA=\r\n=Mg\r\n==\r\n\r\n")
    p = SmtpParser()
    talk(p, mail(multipart(TEXT, part)))
    assert p.tx.attachments == [b"smtptest-ab..zip"] and p.tx.file_data() == [b"42"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t-%", max_size=90),
                max_size=8))
def test_base64_fast_path_decodes_as_the_quad_by_quad_reading(lines):
    # whole quads with padding only at the end go through binascii; the rest quad by quad: same bytes, same events
    from gateway.applayer.smtp import MimeParser, SmtpTransaction, _Entity
    events = []
    mime = MimeParser(SmtpTransaction(0, None), SmtpLimits(), lambda tx, code: events.append(code), lambda tx, f: None)
    ent, ref = _Entity(), _Entity()
    for text in (t.encode() for t in lines):
        got = mime._b64(ent, text)
        ref.b64 += text.replace(b" ", b"").replace(b"\t", b"")
        bad = next((i for i, c in enumerate(ref.b64) if c not in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="), -1)
        if bad >= 0:
            del ref.b64[bad:]
        n = len(ref.b64) - len(ref.b64) % 4
        want = mime._b64_quads(bytes(ref.b64[:n]))
        del ref.b64[:n]
        assert got == want and ent.b64 == ref.b64


def test_nested_multipart_and_attached_message():
    inner = (b"Content-Type: multipart/alternative; boundary=INNER\r\n\r\n--INNER\r\n" + TEXT +
             b"\r\n--INNER\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--INNER\r\n" +
             attachment(b"inner.exe", b"MZ\x90\x00inner") + b"\r\n--INNER--\r\n")
    forwarded = (b"Content-Type: message/rfc822\r\n\r\nSubject: fwd\r\n"
                 b"Content-Type: application/octet-stream; name=fwd.js\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                 base64.b64encode(b"eval('x')") + b"\r\n")
    p = SmtpParser()
    talk(p, mail(multipart(inner, forwarded, attachment(b"last.txt", b"end", enc=b"8bit"))))
    tx = p.tx
    assert tx.attachments == [b"inner.exe", b"fwd.js", b"last.txt"]
    assert tx.file_data() == [b"MZ\x90\x00inner", b"eval('x')", b"end"]
    assert tx.header(b"subject") == b"report"           # the forwarded message's headers are its own


def test_text_parts_are_no_files_as_in_suricata():
    p = SmtpParser()
    talk(p, mail(b"Subject: plain\r\n\r\nJust text, no MIME.\r\n.\r\n"))
    assert p.tx.files == [] and p.tx.file_data() == [] and p.tx.mime_status == "PARSE_DONE"
    # a single-part message that is itself an attachment is a file
    p = SmtpParser()
    talk(p, mail(b"Content-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                 base64.b64encode(b"%PDF-1.7") + b"\r\n.\r\n"))
    assert p.tx.file_data() == [b"%PDF-1.7"]


def test_mime_anomalies():
    long_b = b"B" * 300
    p = SmtpParser()
    ev = talk(p, mail(multipart(TEXT, boundary=long_b)))
    assert infos(ev) == ["mime_long_boundary", "mime_parse_failed"] and p.tx.mime_status == "PARSE_ERROR"
    bad = (b"Content-Type: application/x; name=a\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD$REVG\r\n")
    badqp = (b"Content-Type: text/x; name=b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbad =ZZ escape\r\n")
    wide = (b"Content-Type: application/x; name=c\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
            base64.b64encode(b"w" * 300) + b"\r\n")
    p = SmtpParser()
    ev = talk(p, mail(multipart(bad, badqp, wide, b"X-" + b"n" * 80 + b": v\r\n\r\nx")))
    assert set(infos(ev)) == {"mime_invalid_base64", "mime_invalid_qp", "mime_long_enc_line",
                              "mime_long_header_name"}
    assert p.tx.file_data()[:2] == [b"ABC", b"bad =ZZ escape\r\n"]


def test_files_and_parts_are_bounded():
    lim = SmtpLimits(file_limit=1000, max_files=2, max_parts=5, max_mime_depth=4)
    p = SmtpParser(lim)
    parts = [attachment(b"f%d" % i, b"z" * 5000) for i in range(7)]
    ev = talk(p, mail(multipart(*parts)))
    tx = p.tx
    assert len(tx.files) == 2 and [len(d) for d in tx.file_data()] == [1000, 1000]
    assert tx.files[0].size == 5000 and tx.files[0].truncated and tx.file_count == 5
    assert "mime_too_many_parts" in infos(ev)
    nested = b"x"
    for i in range(6):
        nested = b"Content-Type: multipart/mixed; boundary=L%d\r\n\r\n--L%d\r\n" % (i, i) + nested + \
            b"\r\n--L%d--\r\n" % i
    p = SmtpParser(lim)
    ev = talk(p, mail(b"Subject: deep\r\n" + nested + b".\r\n"))
    assert "mime_parse_failed" in infos(ev)


def test_long_message_lines_are_decoded_in_pieces():
    content = bytes(range(256)) * 200
    one_line = base64.b64encode(content)             # 68 KB without a line break
    part = b"Content-Type: application/x; name=one.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" + one_line
    p = SmtpParser()
    steps = mail(multipart(part))
    body = steps[-2][0]
    steps[-2:-1] = [(body[i:i + 1460], True) for i in range(0, len(body), 1460)]
    ev = talk(p, steps)
    assert p.tx.file_data() == [content] and p.tx.complete
    assert {"mime_long_line", "mime_long_enc_line"} <= set(infos(ev))


def test_header_params():
    assert header_params(b' name="a b.txt"; x=1') == {b"name": b"a b.txt", b"x": b"1"}
    assert header_params(b" filename*=UTF-8''%E2%82%AC.pdf") == {b"filename": "€.pdf".encode()}
    assert header_params(b" filename*1=b; filename*0=a") == {b"filename": b"ab"}


# ------------------------------------------------------------------------------------------ robustness

def _session_bytes() -> tuple[bytes, bytes]:
    steps = mail(multipart(TEXT, attachment(b"a.bin", b"payload" * 50),
                           attachment(b"q.txt", b"qp = text", enc=b"quoted-printable")), pipelining=True)
    client = b"".join(d for d, ts in steps if ts) + b"QUIT\r\n"
    server = b"".join(d for d, ts in steps if not ts) + b"221 bye\r\n"
    return client, server


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 3000), max_size=10))
def test_split_points_do_not_change_results(cuts):
    client, server = _session_bytes()

    def run(cut_list):
        p = SmtpParser()
        kinds = []
        # each direction cut at the same points; the server's part first so that replies precede
        for c_piece, s_piece in _interleave(client, server, cut_list):
            kinds += [e.info for e in p.feed(s_piece, False) if e.kind in ("anomaly", "file")]
            kinds += [e.info for e in p.feed(c_piece, True) if e.kind in ("anomaly", "file")]
        tx = p.tx
        return kinds, tx.tx_id, tx.mail_from, tx.rcpt_to, tx.file_data(), tx.attachments

    assert run(cuts) == run([])


def _interleave(client: bytes, server: bytes, cuts):
    """The whole server side first (pipelining server), then the client's bytes cut at the points."""
    yield b"", server
    prev = 0
    for c in sorted({c % (len(client) + 1) for c in cuts}) + [len(client)]:
        yield client[prev:c], b""
        prev = c


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.booleans())
def test_random_bytes_never_raise(data, to_server):
    p = SmtpParser(SmtpLimits(max_line=64, max_mime_line=128, file_limit=100))
    for e in talk(p, [(BANNER, False), (b"EHLO x\r\nDATA\r\n", True), (b"250 ok\r\n354 go\r\n", False),
                      (data, to_server), (data, not to_server), (b"\r\n.\r\n", True)]):
        assert not e.info.startswith("internal_error")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1, max_size=12),
       st.integers(1, 64))
def test_mutated_sessions_never_raise(mutations, seg):
    client, server = _session_bytes()
    c, s = bytearray(client), bytearray(server)
    for pos, val in mutations:
        target = c if pos % 3 else s
        target[pos % len(target)] = val
    p = SmtpParser(SmtpLimits(max_line=200, max_mime_line=300))
    events = p.feed(bytes(s), False)
    for i in range(0, len(c), seg):
        events += p.feed(bytes(c[i:i + seg]), True)
    events += p.eof(True)
    assert not [e for e in events if e.info.startswith("internal_error")]
