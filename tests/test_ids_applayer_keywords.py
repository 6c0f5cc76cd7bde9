"""App-layer keywords: app-layer-event, DNS multi-buffers and integers, HTTP header multi-buffers.

Crafted traffic through the real Inspector and stages (helpers from test_ids_engine)."""
from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from gateway.ids.model import RuleError
from gateway.ids.rules import parse_rule

from .conftest import udp
from .test_ids_engine import C, S, _hs_cache, alerts, conversation, inspector, run  # noqa: F401


def sids(events):
    return sorted(a["alert"]["signature_id"] for a in alerts(events))


# ------------------------------------------------------------------------------------------ parsing

def test_app_layer_event_parse():
    r = parse_rule("alert http any any -> any any (app-layer-event:http.request_chunk_extension; sid:1;)")
    assert r.app_proto == "http" and r.app_events == ("request_chunk_extension",)
    r = parse_rule("alert tcp any any -> any any (app-layer-event:dns.z_flag_set; sid:1;)")
    assert r.app_proto == "dns"
    assert parse_rule("alert tcp any any -> any any (app-layer-event:smtp.invalid_reply; sid:1;)").app_proto == "smtp"
    for bad, why in (("ftp.request_command_too_long", "no ftp parser"), ("smtp.no_such_event", "smtp has no event"),
                     ("applayer_mismatch_protocol_both_directions", "general events unsupported")):
        with pytest.raises(RuleError, match=why):
            parse_rule(f"alert tcp any any -> any any (app-layer-event:{bad}; sid:1;)")
    with pytest.raises(RuleError, match="needs dns, but the rule is for http"):
        parse_rule("alert http any any -> any any (app-layer-event:dns.z_flag_set; sid:1;)")


def test_dns_rrtype_parse():
    r = parse_rule("alert dns any any -> any any (dns.rrtype:!2; sid:1;)")
    (ti,) = r.tx_ints
    assert ti.field == "dns.rrtype" and ti.compare.op == "!=" and ti.index == "any"
    assert parse_rule("alert dns any any -> any any (dns.rrtype:1,-1; sid:1;)").tx_ints[0].index == -1
    assert parse_rule("alert dns any any -> any any (dns.rrtype:1,all; sid:1;)").tx_ints[0].index == "all"
    with pytest.raises(RuleError, match="subslices"):
        parse_rule("alert dns any any -> any any (dns.rrtype:1,0,1:2; sid:1;)")


# ------------------------------------------------------------------------------------------ matching

def _dns_exchange(qname="www.example.org", answers=(("www.example.org", 1, "192.0.2.1"),), opcode=0):
    q = DNS(id=9, rd=1, opcode=opcode, qd=DNSQR(qname=qname))
    an = [DNSRR(rrname=name, type=rtype, rdata=rdata, ttl=60) for name, rtype, rdata in answers]
    r = DNS(id=9, qr=1, opcode=opcode, qd=DNSQR(qname=qname), an=an)
    return [udp(C, S, 5353, 53, bytes(q)), udp(S, C, 53, 5353, bytes(r))]


def test_dns_request_and_response_are_separate_transactions(tmp_path):
    insp, events, _ = inspector(tmp_path,
                                'alert dns any any -> any any (dns.queries.rrname; content:"example"; sid:1;)\n'
                                'alert dns any any -> any any (dns.response.rrname; content:"target.example";'
                                ' sid:2;)\n')
    run(insp, _dns_exchange(answers=(("www.example.org", 5, "target.example"),
                                     ("target.example", 1, "192.0.2.1"))))
    got = [(a["alert"]["signature_id"], a["direction"]) for a in alerts(events)]
    # sid 1 once per direction (the response repeats the question); sid 2 on the CNAME's rdata/name
    assert sorted(got) == [(1, "to_client"), (1, "to_server"), (2, "to_client")]
    resp = next(a for a in alerts(events) if a["alert"]["signature_id"] == 2)
    assert resp["dns"]["type"] == "response" and resp["dns"]["answers"][0]["rrtype"] == "CNAME"


def test_dns_rrtype_index_and_opcode(tmp_path):
    insp, events, _ = inspector(tmp_path,
                                "alert dns any any -> any any (dns.rrtype:1,0; flow:to_client; sid:1;)\n"
                                "alert dns any any -> any any (dns.rrtype:1,all; flow:to_client; sid:2;)\n"
                                "alert dns any any -> any any (dns.rrtype:1,-1; flow:to_client; sid:3;)\n"
                                "alert dns any any -> any any (dns.rrtype:5; flow:to_server; sid:4;)\n"
                                "alert dns any any -> any any (dns.opcode:0; flow:to_server; sid:5;)\n"
                                "alert dns any any -> any any (dns.opcode:!0; sid:6;)\n")
    # answers: CNAME then A -> index 0 is not A, the last one is, not all are
    run(insp, _dns_exchange(answers=(("www.example.org", 5, "target.example"),
                                     ("target.example", 1, "192.0.2.1"))))
    assert sids(events) == [3, 5]


def test_app_layer_event_fires_once_per_transaction(tmp_path):
    insp, events, _ = inspector(
        tmp_path,
        "alert http any any -> any any (flow:established,to_server; "
        "app-layer-event:http.request_chunk_extension; sid:1;)\n"
        "alert http any any -> any any (app-layer-event:http.response_chunk_extension; sid:2;)\n")
    req = (b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3;ext=1\r\nabc\r\n0\r\n\r\n")
    run(insp, conversation([(req, True), (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
                            (req, True)]))
    assert sids(events) == [1, 1]      # two requests with the event, no response event


def test_http_request_and_response_header_multibuffers(tmp_path):
    insp, events, _ = inspector(
        tmp_path,
        'alert http any any -> any any (http.request_header; content:"X-Key|3a 20|"; startswith; '
        'pcre:"/^[a-f]{4}$/R"; sid:1;)\n'
        'alert http any any -> any any (http.response_header; content:"Server|3a 20|nginx"; sid:2;)\n'
        # each header is its own buffer: a pattern across two headers never matches
        'alert http any any -> any any (http.request_header; content:"abcd|0d 0a|"; sid:3;)\n')
    req = b"GET / HTTP/1.1\r\nHost: h\r\nX-Key: abcd\r\nAccept: */*\r\n\r\n"
    res = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n"
    run(insp, conversation([(req, True), (res, False)]))
    assert sids(events) == [1, 2]


def test_tls_legacy_certificate_keywords_parse():
    r = parse_rule('alert tls any any -> any any (tls.subject:"CN=a, O=B"; tls.issuerdn:!"CN=x"; '
                   'tls.fingerprint:"AB:cd"; sid:1;)')
    subj, = r.buffer("tls.cert_subject").matches
    iss, = r.buffer("tls.cert_issuer").matches
    fp, = r.buffer("tls.cert_fingerprint").matches
    assert subj.pattern == b"CN=a, O=B" and not subj.negated and iss.negated and fp.pattern == b"ab:cd"


def test_tls_cert_validity_parse():
    r = parse_rule("alert tls any any -> any any (tls_cert_notafter:>2015; "
                   "tls_cert_notbefore:2014-01-01<>2014-12-31T23:59:59; sid:1;)")
    after, lo, hi = r.tx_ints
    assert after.field == "tls_cert_notafter" and (after.compare.op, after.compare.value) == (">=", 1420070400)
    assert (lo.compare.op, lo.compare.value) == (">=", 1388534400)
    assert (hi.compare.op, hi.compare.value) == ("<=", 1420070399)
    for bad in ("tls_cert_notafter:>2015<>2016", "tls_cert_notafter:2016<>2015", "tls_cert_notafter:soon"):
        with pytest.raises(RuleError, match="tls_cert_notafter"):
            parse_rule(f"alert tls any any -> any any ({bad}; sid:1;)")


def test_file_name_keywords(tmp_path):
    r = parse_rule('alert http any any -> any any (filestore; fileext:!"MP4"; filename:"x"; sid:1;)')
    ext, name = r.buffer("file.name").matches
    assert ext.pattern == b".MP4" and ext.negated and ext.endswith and ext.nocase and name.nocase
    with pytest.raises(RuleError, match="filestore"):
        parse_rule("alert http any any -> any any (filestore:sideways; sid:1;)")
    insp, events, _ = inspector(
        tmp_path,
        'alert http any any -> any any (fileext:"EXE"; sid:1;)\n'
        'alert http any any -> any any (file.name; content:"/dl/tool.exe"; startswith; endswith; sid:2;)\n'
        'alert http any any -> any any (fileext:!"exe"; sid:3;)\n'
        'alert http any any -> any any (file.name; content:"report.pdf"; sid:4;)\n'
        'alert http any any -> any any (filename:"up2"; flow:to_server; sid:5;)\n')
    body = (b"--B\r\nContent-Disposition: form-data; name=a; filename=\"up1.txt\"\r\n\r\nhello\r\n"
            b"--B\r\nContent-Disposition: form-data; name=b; filename=\"UP2.txt\"\r\n\r\nworld\r\n--B--\r\n")
    upload = (b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=B\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body)) + body
    run(insp, conversation([
        (b"GET /dl/tool.exe?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nMZ\x90\x00", False),
        (b"GET /doc HTTP/1.1\r\nHost: h\r\n\r\n", True),
        ((b'HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename="report.pdf"\r\n'
          b"Content-Length: 4\r\n\r\n%PDF"), False),
        (upload, True), (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False)]))
    # sid 3: report.pdf and each upload part (file rules alert per file); a tx without files has no
    # file.name
    assert sids(events) == [1, 2, 3, 3, 3, 4, 5]
    assert sorted(a["files"][0]["filename"] for a in alerts(events) if a["alert"]["signature_id"] == 3) == \
        ["UP2.txt", "report.pdf", "up1.txt"]


def test_url_decode_transform(tmp_path):
    from gateway.ids.match import url_decode
    assert url_decode(b"a%2Bb+c%2g%4%41") == b"a+b c%2g%4A"      # one pass: a decoded + stays a +
    insp, events, _ = inspector(
        tmp_path,
        "alert http any any -> any any (http.request_body; url_decode; content:\"alert('x')\"; sid:1;)\n"
        "alert http any any -> any any (http.request_body; content:\"alert('x')\"; sid:2;)\n")
    body = b"q=alert%28%27x%27%29+now"
    req = b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    run(insp, conversation([(req[:60], True), (req[60:], True)]))
    assert sids(events) == [1]


def test_dns_detection_ignores_trailing_bytes_on_a_dns_port():
    from gateway.applayer import detect
    q = bytes(DNS(id=1, rd=1, qd=DNSQR(qname="."))) + b"\x00"
    assert detect(q, b"", "udp", 53, 53) == "dns"
    assert detect(q, b"", "udp", 40000, 40001) is None      # no port hint: stay strict


def test_app_layer_protocol(tmp_path):
    r = parse_rule("alert tcp any any -> any any (app-layer-protocol:!http1,either; prefilter; sid:1;)")
    assert r.app_protocols == (("http", True, "either"),) and r.pd_only
    assert not parse_rule("alert tcp any any -> any any (app-layer-protocol:tls; flow:to_server; sid:1;)").pd_only
    with pytest.raises(RuleError, match="not a protocol the gateway detects"):
        parse_rule("alert tcp any any -> any any (app-layer-protocol:rdp; sid:1;)")
    insp, events, _ = inspector(
        tmp_path,
        "alert tcp any any -> any any (app-layer-protocol:http; sid:1;)\n"            # detection packet only
        "alert tcp any any -> any any (app-layer-protocol:http; flow:to_client; sid:2;)\n"
        "alert tcp any any -> any any (app-layer-protocol:!http; flow:to_server; sid:3;)\n")
    run(insp, conversation([(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
                            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
                            (b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n", True)]))
    # sid 1: the request that made HTTP known to_server, and the first response (to_client known);
    # sid 2: to_client packets once the response direction is known (the response only: no later ACKs)
    assert sids(events) == [1, 1, 2]


def test_multipart_file_data_is_one_buffer_per_file_and_sticky_instances(tmp_path):
    r = parse_rule('alert http any any -> any any (file.data; content:"a"; file.data; content:"b"; '
                   'http.request_header; content:"x"; http.request_header; content:"y"; sid:1;)')
    assert [ml.buffer for ml in r.buffers] == ["file.data", "file.data", "http.request_header",
                                               "http.request_header"]
    insp, events, _ = inspector(
        tmp_path,
        'alert http any any -> any any (file.data; content:"alpha"; content:"omega"; sid:1;)\n'    # across files
        'alert http any any -> any any (file.data; content:"alpha"; file.data; content:"omega"; sid:2;)\n'
        'alert http any any -> any any (file.data; content:"omega"; startswith; sid:3;)\n'
        'alert http any any -> any any (http.request_body; content:"filename=|22|b.txt"; sid:4;)\n')
    body = (b"--B\r\nContent-Disposition: form-data; name=a; filename=\"a.txt\"\r\n\r\nalpha\r\n"
            b"--B\r\nContent-Disposition: form-data; name=b; filename=\"b.txt\"\r\n\r\nomega\r\n--B--\r\n")
    head = (b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % len(body) + body + b"\r\n"
    # the last chunk completes the upload without adding body bytes
    run(insp, conversation([(head, True), (chunk, True), (b"0\r\n\r\n", True)]))
    assert sids(events) == [2, 3, 4]


def test_file_hash_lists(tmp_path):
    import hashlib
    exe = b"MZ" + b"\x90" * 100
    (tmp_path / "bad.md5").write_text(f"# known bad\n{hashlib.md5(exe).hexdigest().upper()}  tool.exe\n")
    (tmp_path / "bad.sha256").write_text(hashlib.sha256(b"other").hexdigest() + "\n")
    (tmp_path / "broken.md5").write_text("xyz\n")
    with pytest.raises(RuleError, match=r"broken.md5:1: not a md5 hash"):
        parse_rule("alert http any any -> any any (filemd5:broken.md5; sid:1;)", file=str(tmp_path / "r.rules"))
    with pytest.raises(RuleError, match="cannot read hash list"):
        parse_rule("alert http any any -> any any (filemd5:missing.md5; sid:1;)", file=str(tmp_path / "r.rules"))
    insp, events, _ = inspector(
        tmp_path,
        "alert http any any -> any any (filemd5:bad.md5; sid:1;)\n"
        "alert http any any -> any any (filesha256:bad.sha256; sid:2;)\n"
        "alert http any any -> any any (filesha256:!bad.sha256; sid:3;)\n")
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(exe) + exe
    run(insp, conversation([(b"GET /tool.exe HTTP/1.1\r\nHost: h\r\n\r\n", True),
                            (resp[:60], False), (resp[60:], False)]))
    assert sids(events) == [1, 3]        # once the file is complete; sid 3: its sha256 is not listed
    assert all(a["files"][0]["filename"] == "/tool.exe" for a in alerts(events))


def test_midstream_http_response_first_makes_its_sender_the_server(tmp_path):
    from .conftest import tcp
    insp, events, _ = inspector(tmp_path, 'alert http any any -> any any (http.stat_code; content:"200"; '
                                          'flow:to_client; sid:1;)\n')
    resp = b"HTTP/1.0 200 OK\r\nServer: x\r\nContent-Length: 2\r\n\r\nok"
    run(insp, [tcp(S, C, 8080, 40001, "PA", 7000, 9000, resp), tcp(C, S, 40001, 8080, "A", 9000, 7000 + len(resp))])
    (a,) = alerts(events)
    assert a["src_ip"] == S and a["direction"] == "to_client"
