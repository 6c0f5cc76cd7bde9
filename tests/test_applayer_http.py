"""HTTP/1.x parser: buffers as Suricata builds them, framing, decompression, limits, fuzzing."""
from __future__ import annotations

import gzip
import random
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.applayer.http import HTTP_BUFFERS, HttpLimits, HttpParser
from gateway.applayer.uri import normalize_uri, remove_dot_segments


def exchange(request: bytes, response: bytes = b"", limits: HttpLimits | None = None, close=True):
    p = HttpParser(limits or HttpLimits())
    ev = p.feed(request, True)
    ev += p.feed(response, False)
    if close:
        ev += p.eof(True) + p.eof(False)
    return p, ev


def kinds(events):
    return [e.kind for e in events]


def first_tx(events):
    return next(e.tx for e in events if e.tx is not None)


def anomalies(events):
    return [e.info for e in events if e.kind == "anomaly"]


GET = (b"GET /index.html?q=1 HTTP/1.1\r\nHost: www.Example.com:8080\r\nUser-Agent: Mozilla/5.0\r\n"
       b"Accept: */*\r\nCookie: sid=42\r\nReferer: http://a.example/\r\n\r\n")
OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5\r\n"
      b"Server: nginx\r\nSet-Cookie: a=b\r\n\r\nhello")


# ---------------------------------------------------------------------------- buffers
def test_simple_exchange_events_and_buffers():
    p, ev = exchange(GET, OK, close=False)
    assert kinds(ev) == ["request_headers", "request_complete", "response_headers", "response_body",
                         "file", "response_complete"]
    tx = first_tx(ev)
    assert tx.buffer("http.method") == b"GET"
    assert tx.buffer("http.uri") == b"/index.html?q=1"
    assert tx.buffer("http.uri.raw") == b"/index.html?q=1"
    assert tx.buffer("http.host") == b"www.example.com"
    assert tx.buffer("http.host.raw") == b"www.Example.com:8080"
    assert tx.buffer("http.user_agent") == b"Mozilla/5.0"
    assert tx.buffer("http.referer") == b"http://a.example/"
    assert tx.buffer("http.accept") == b"*/*"
    assert tx.buffer("http.request_line") == b"GET /index.html?q=1 HTTP/1.1"
    assert tx.buffer("http.protocol", True) == b"HTTP/1.1"
    assert tx.buffer("http.stat_code") == b"200"
    assert tx.buffer("http.stat_msg") == b"OK"
    assert tx.buffer("http.response_line") == b"HTTP/1.1 200 OK"
    assert tx.buffer("http.server") == b"nginx"
    assert tx.buffer("http.content_type", False) == b"text/html; charset=utf-8"
    assert tx.buffer("http.content_len", False) == b"5"
    assert tx.buffer("file.data", False) == b"hello"
    assert tx.buffer("http.response_body") == b"hello"
    assert tx.buffer("http.cookie", True) == b"sid=42"
    assert tx.buffer("http.cookie", False) == b"a=b"
    assert tx.status_code == 200
    assert p.transactions == []          # both sides complete: retired


def test_header_buffers_follow_suricata_layout():
    _, ev = exchange(GET, OK)
    tx = first_tx(ev)
    # http.header: "Name: value\r\n" per header, Cookie left out (it has http.cookie), no extra CRLF.
    assert tx.buffer("http.header", True) == (b"Host: www.Example.com:8080\r\nUser-Agent: Mozilla/5.0\r\n"
                                              b"Accept: */*\r\nReferer: http://a.example/\r\n")
    assert b"Set-Cookie" not in tx.buffer("http.header", False)
    assert tx.buffer("http.header_names", True) == b"\r\nHost\r\nUser-Agent\r\nAccept\r\nCookie\r\nReferer\r\n\r\n"
    start = tx.buffer("http.start", True)
    assert start.startswith(b"GET /index.html?q=1 HTTP/1.1\r\nHost: ") and start.endswith(b"sid=42\r\nReferer: http://a.example/\r\n\r\n")
    assert tx.buffer("http.header.raw", True) == GET[GET.index(b"\r\n") + 2:]


def test_every_listed_buffer_is_answerable():
    _, ev = exchange(GET, OK)
    tx = first_tx(ev)
    for name in HTTP_BUFFERS:
        tx.buffer(name, True)            # must not raise for any keyword we advertise


def test_repeated_headers_are_joined_and_trailing_space_trimmed():
    req = b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: SuriTester/0.8 \t\r\nUser-Agent: GGGG\r\n\r\n"
    _, ev = exchange(req)
    tx = first_tx(ev)
    assert tx.buffer("http.user_agent") == b"SuriTester/0.8, GGGG"


def test_header_folding_is_joined():
    req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n  two\r\n\tthree\r\n\r\n"
    _, ev = exchange(req)
    assert first_tx(ev).request_header(b"x-long") == b"one  two\tthree"


def test_absolute_uri_gives_host_and_path_only_uri():
    req = b"GET http://User@WWW.Example.ORG.:81/a/../b?x HTTP/1.1\r\nHost: other\r\n\r\n"
    _, ev = exchange(req)
    tx = first_tx(ev)
    assert tx.buffer("http.host") == b"www.example.org"
    assert tx.buffer("http.uri") == b"/b?x"
    assert tx.buffer("http.uri.raw") == b"http://User@WWW.Example.ORG.:81/a/../b?x"


def test_uri_with_spaces_keeps_them():
    _, ev = exchange(b"GET /a b afterspace HTTP/1.1\r\nHost: h\r\n\r\n")
    tx = first_tx(ev)
    assert tx.buffer("http.uri") == b"/a b afterspace"
    assert "uri_delim_non_compliant" in tx.anomalies


def test_request_header_multi_buffer():
    _, ev = exchange(GET, OK)
    tx = first_tx(ev)
    assert tx.buffers("http.request_header")[:2] == [b"Host: www.Example.com:8080", b"User-Agent: Mozilla/5.0"]
    assert b"Set-Cookie: a=b" in tx.buffers("http.response_header")
    assert tx.buffers("http.uri") == [b"/index.html?q=1"]


def test_anomalies_use_suricata_app_layer_event_names():
    cases = [
        (b"GET /\r\n", "request_line_missing_protocol"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n",
         "request_chunk_extension"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Foo bar\r\n\r\n", "request_auth_unrecognized"),
        (b"GET /a%252e%252e/ HTTP/1.1\r\nHost: h\r\n\r\n", "double_encoded_uri"),
        (b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n", "host_header_ambiguous"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n\r\n", "request_header_repetition"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
         "duplicate_content_length_field_in_request"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n", "request_field_missing_colon"),
        (b"GET / HTTP/1.1\r\n\r\n", "missing_host_header"),
    ]
    for req, code in cases:
        _, ev = exchange(req)
        assert code in anomalies(ev), (req, anomalies(ev))
    _, ev = exchange(b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic Zm9vOmJhcg==\r\n\r\n")
    assert anomalies(ev) == []


# ---------------------------------------------------------------------------- URI normalisation
def test_uri_normalisation_like_libhtp_ids_personality():
    cases = {
        b"/a/./b/../c": b"/a/c",
        b"/a//b///c": b"/a/b/c",
        b"/a%2fb%2Fc": b"/a/b/c",
        b"/a\\b\\..\\c": b"/a/c",
        b"/%41%42%zz": b"/AB%zz",                 # invalid escape kept
        b"/%u0041%uFF0E": b"/A.",                 # %u and full-width best fit
        b"/x/%c0%af/y": b"/x/y",                  # overlong UTF-8 '/'
        b"/Case/Kept": b"/Case/Kept",             # Suricata turns lowercasing off
        b"/p?a=%41&b=/../c": b"/p?a=A&b=/../c",   # query decoded but not path-normalised
        b"/p#frag": b"/p#frag",
        b"/../../etc/passwd": b"/etc/passwd",
    }
    for raw, want in cases.items():
        assert normalize_uri(raw)[0] == want, raw


def test_remove_dot_segments_rfc3986_examples():
    assert remove_dot_segments(b"/a/b/c/./../../g") == b"/a/g"
    assert remove_dot_segments(b"mid/content=5/../6") == b"mid/6"
    assert remove_dot_segments(b"/..") == b"/"


# ---------------------------------------------------------------------------- framing
def test_pipelined_requests_match_responses_in_order():
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3))
    resps = b"".join(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr%d" % i for i in range(3))
    p, ev = exchange(reqs, resps, close=False)
    got = [(e.tx.uri, bytes(e.tx.response_body)) for e in ev if e.kind == "response_complete"]
    assert got == [(b"/0", b"r0"), (b"/1", b"r1"), (b"/2", b"r2")]
    assert p.transactions == []


def test_chunked_request_and_response_with_extensions_and_trailers():
    req = (b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4;ext=1\r\nabcd\r\n2\r\nef\r\n0\r\nX-Trailer: t\r\n\r\n")
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    _, ev = exchange(req, resp, close=False)
    tx = first_tx(ev)
    assert tx.buffer("http.request_body") == b"abcdef"
    assert tx.buffer("file.data", True) == b"abcdef"
    assert tx.buffer("file.data", False) == b"xyz"
    assert tx.response_complete


def test_close_delimited_body_ends_at_eof():
    p = HttpParser()
    p.feed(b"GET / HTTP/1.0\r\n\r\n", True)
    ev = p.feed(b"HTTP/1.0 200 OK\r\n\r\npart one ", False) + p.feed(b"part two", False)
    assert "response_complete" not in kinds(ev)
    ev = p.eof(False)
    assert kinds(ev) == ["file", "response_complete"]
    assert ev[0].data == b"part one part two"


def test_100_continue_then_real_response():
    req = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc"
    resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    _, ev = exchange(req, resp, close=False)
    tx = first_tx(ev)
    assert tx.status == b"201" and tx.response_complete
    assert kinds(ev).count("response_headers") == 1


def test_head_and_304_have_no_body():
    reqs = b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
    resps = (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
             b"HTTP/1.1 304 Not Modified\r\n\r\n")
    _, ev = exchange(reqs, resps, close=False)
    assert [e.tx.uri for e in ev if e.kind == "response_complete"] == [b"/", b"/2"]
    assert not any(e.kind == "file" for e in ev)


def test_http09_request_gets_bare_body():
    _, ev = exchange(b"GET /old\r\n", b"<html>raw</html>")
    tx = first_tx(ev)
    assert tx.http09 and tx.buffer("http.protocol", True) is None
    assert tx.buffer("file.data", False) == b"<html>raw</html>"


def test_missing_protocol_with_headers_is_not_http09():
    # suricata-verify http-not09: the headers that follow are parsed (User-Agent is logged).
    req = b"GET /\nFakeHeader\nHost: localhost\nUser-Agent: myscript\n\n"
    for cut in range(len(req) + 1):
        p = HttpParser()
        ev = p.feed(req[:cut], True) + p.feed(req[cut:], True)
        tx = first_tx(ev)
        assert not tx.http09 and tx.buffer("http.user_agent") == b"myscript", cut
        assert anomalies(ev).count("request_line_missing_protocol") == 1


def test_headers_cut_by_close_are_still_inspected():
    _, ev = exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.0 200 OK\nServer:ng1nx\r\nX-Last: v")
    tx = first_tx(ev)
    assert tx.buffer("http.header", False) == b"Server: ng1nx\r\nX-Last: v\r\n"
    assert "headers_truncated_at_close" in anomalies(ev) and tx.response_complete


def test_data_after_a_request_that_is_no_request_line_is_its_body():
    # suricata-verify http-request-invalid: a POST without Content-Length followed by form data.
    req = (b"POST /index.html HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
           b"login=foo&password=bar3\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    _, ev = exchange(req, close=False)
    txs = [e.tx for e in ev if e.kind == "request_headers"]
    assert [t.uri for t in txs] == [b"/index.html", b"/next"]
    assert txs[0].buffer("http.request_body") == b"login=foo&password=bar3\r\n"
    assert "request_body_unexpected" in txs[0].anomalies


def test_response_without_request_is_kept_as_orphan_tx():
    p = HttpParser()
    ev = p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", False)
    assert "unable_to_match_response_to_request" in anomalies(ev)
    assert first_tx(ev).buffer("file.data", False) == b"hi"


def test_connect_tunnel_stops_parsing():
    req = b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03\x01garbage"
    p, ev = exchange(req, b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03more", close=False)
    assert not anomalies(ev)
    assert p.feed(b"\x17\x03\x03 anything at all", False) == []


# ---------------------------------------------------------------------------- content coding
def test_gzip_and_deflate_variants_are_decoded():
    body = b"The quick brown fox " * 50
    for label, enc in ((b"gzip", gzip.compress(body)),
                       (b"deflate", zlib.compress(body)),                        # zlib wrapper
                       (b"deflate", zlib.compress(body)[2:-4]),                  # raw deflate
                       (b"x-gzip", gzip.compress(body))):
        resp = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (label, len(enc), enc)
        _, ev = exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp)
        assert first_tx(ev).buffer("file.data", False) == body, label


def test_compressed_request_body_is_decoded():
    body = b"name=john&surname=doe"
    z = gzip.compress(body)
    req = b"POST /hi.php HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(z), z)
    _, ev = exchange(req, close=False)
    assert first_tx(ev).buffer("http.request_body") == body


def test_lying_content_encoding_passes_body_through():
    resp = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 11\r\n\r\nplain text!"
    _, ev = exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp)
    assert first_tx(ev).buffer("file.data", False) == b"plain text!"


def test_gzip_bomb_output_is_capped():
    bomb = gzip.compress(b"\0" * (20 << 20))     # 20 MiB of zeros in ~20 KB
    lim = HttpLimits(response_body_limit=4096, file_limit=65536)
    resp = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(bomb), bomb)
    _, ev = exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp, lim)
    tx = first_tx(ev)
    assert len(tx.response_body) == 65536 and tx.response_truncated
    inspected = sum(len(e.data) for e in ev if e.kind == "response_body")
    assert inspected == 4096                       # only the inspect limit goes to detection


def test_stacked_encodings_respect_layer_limit():
    body = b"layered content " * 20
    twice = gzip.compress(gzip.compress(body))
    resp = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(twice), twice)
    _, ev = exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp)
    assert first_tx(ev).buffer("file.data", False) == body
    _, ev = exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp, HttpLimits(decompress_layer_limit=1))
    assert "too_many_encoding_layers" in anomalies(ev)
    # Over the limit, the outermost layers are peeled and the inner one stays as it is.
    inner = gzip.compress(body)
    thrice = gzip.compress(gzip.compress(inner))
    resp = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip,gzip,gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(thrice), thrice)
    _, ev = exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp, HttpLimits(decompress_layer_limit=2))
    assert first_tx(ev).buffer("file.data", False) == inner


# ---------------------------------------------------------------------------- files
def test_file_event_names_from_content_disposition_or_uri():
    resp = (b'HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename="report.pdf"\r\n'
            b"Content-Length: 3\r\n\r\nPDF")
    _, ev = exchange(b"GET /dl?id=1 HTTP/1.1\r\nHost: h\r\n\r\n", resp)
    assert [(e.info, e.data) for e in ev if e.kind == "file"] == [("report.pdf", b"PDF")]
    _, ev = exchange(b"GET /files/setup.exe?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
                     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nMZ")
    assert [(e.info, e.data) for e in ev if e.kind == "file"] == [("/files/setup.exe", b"MZ")]


def test_rfc5987_filename():
    resp = (b"HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.doc\r\n"
            b"Content-Length: 1\r\n\r\nx")
    _, ev = exchange(b"GET /d HTTP/1.1\r\nHost: h\r\n\r\n", resp)
    assert [e.info for e in ev if e.kind == "file"] == ["r%C3%A9sum%C3%A9.doc"]


def test_upload_body_is_a_file_to_server():
    req = b"PUT /u/notes.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\ndata"
    _, ev = exchange(req, close=False)
    assert [(e.to_server, e.info, e.data) for e in ev if e.kind == "file"] == [(True, "/u/notes.txt", b"data")]


# ---------------------------------------------------------------------------- limits / bad input
def test_request_body_inspection_limit():
    lim = HttpLimits(request_body_limit=10, file_limit=10)
    req = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    _, ev = exchange(req, limits=lim, close=False)
    tx = first_tx(ev)
    assert tx.buffer("http.request_body") == b"x" * 10 and tx.request_truncated and tx.request_complete
    assert tx.request_body_len == 100


def test_overlong_header_line_gives_up_direction_only():
    lim = HttpLimits(max_line=100)
    p = HttpParser(lim)
    ev = p.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 200, True)
    assert "request_field_too_long" in anomalies(ev) and "gave_up" in anomalies(ev)
    assert p.feed(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", True) == []      # direction given up, quietly
    ev = p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz", False)
    assert "response_complete" in kinds(ev)                            # the other side still works


def test_too_many_headers_is_bounded():
    lim = HttpLimits(max_headers=10)
    req = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(50)) + b"\r\n"
    _, ev = exchange(req, limits=lim, close=False)
    tx = first_tx(ev)
    assert len(tx.request_headers) == 10 and "request_too_many_headers" in anomalies(ev)


def test_stored_header_bytes_are_bounded_but_framing_headers_kept():
    lim = HttpLimits(max_header_bytes=4096)
    req = (b"POST / HTTP/1.1\r\n" + (b"X-Big: " + b"a" * 1000 + b"\r\n") * 20
           + b"Content-Length: 3\r\nHost: h\r\n\r\nabc")
    _, ev = exchange(req, limits=lim, close=False)
    tx = first_tx(ev)
    assert len(tx.request_header(b"x-big")) < 5000 and "request_field_too_long" in anomalies(ev)
    assert tx.buffer("http.request_body") == b"abc" and tx.buffer("http.host") == b"h"


def test_pending_transactions_are_bounded():
    lim = HttpLimits(max_transactions=5)
    p = HttpParser(lim)
    ev = p.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 20, True)
    assert "too_many_transactions" in anomalies(ev)
    assert len(p.transactions) == 5


def test_invalid_chunk_length_falls_back_to_close_delimited_body():
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnot-a-chunk-size body"
    _, ev = exchange(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", resp)
    assert "invalid_response_chunk_len" in anomalies(ev)
    assert first_tx(ev).buffer("file.data", False) == b"not-a-chunk-size body"


# ---------------------------------------------------------------------------- incremental + fuzz
def _summary(events):
    out, bodies = [], {}
    for e in events:
        if e.kind.endswith("_body"):
            bodies.setdefault((e.tx.tx_id if e.tx else None, e.kind), bytearray()).extend(e.data)
        else:
            out.append((e.kind, e.to_server, e.info, e.data, e.tx.tx_id if e.tx else None))
    return out, bodies


def _feed_split(request: bytes, response: bytes, cuts_req, cuts_resp):
    p = HttpParser()
    ev = []
    for data, cuts, ts in ((request, cuts_req, True), (response, cuts_resp, False)):
        prev = 0
        for c in sorted(set(cuts)) + [len(data)]:
            if c > prev:
                ev += p.feed(data[prev:c], ts)
                prev = c
        ev += p.eof(ts)
    return _summary(ev)


_GZ = gzip.compress(b"payload " * 30)
CHUNKED_GZIP = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"".join(b"%x\r\n%s\r\n" % (len(_GZ[i:i + 7]), _GZ[i:i + 7]) for i in range(0, len(_GZ), 7))
                + b"0\r\n\r\n")
REQUESTS = (GET + b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabcdef" + b"GET /x\xff HTTP/1.0\r\n\r\n"
            + b"GET /noproto\nX-Header: 1\n\n" + b"GET /nine\r\n")
RESPONSES = OK + CHUNKED_GZIP + b"HTTP/1.0 404 Nope\r\nX: y\r\n z\r\n\r\nclose-delimited"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, len(REQUESTS)), max_size=12),
       st.lists(st.integers(0, len(RESPONSES)), max_size=12))
def test_split_points_do_not_change_results(cuts_req, cuts_resp):
    assert _feed_split(REQUESTS, RESPONSES, cuts_req, cuts_resp) == _feed_split(REQUESTS, RESPONSES, [], [])


def test_byte_at_a_time_equals_whole():
    whole = _feed_split(REQUESTS, RESPONSES, [], [])
    assert _feed_split(REQUESTS, RESPONSES, range(len(REQUESTS)), range(len(RESPONSES))) == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=600), st.booleans())
def test_random_bytes_never_raise(req, resp, close):
    p = HttpParser(HttpLimits(max_line=256))
    for ev in (p.feed(req, True), p.feed(resp, False)):
        assert all(not e.info.startswith("internal_error") for e in ev)
    if close:
        assert all(not e.info.startswith("internal_error") for e in p.eof(True) + p.eof(False))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_messages_never_raise(data):
    rnd = random.Random(data.draw(st.integers(0, 2 ** 32)))
    req, resp = bytearray(REQUESTS), bytearray(RESPONSES)
    for buf in (req, resp):
        for _ in range(rnd.randint(1, 8)):
            op = rnd.randrange(3)
            i = rnd.randrange(len(buf))
            if op == 0:
                buf[i] = rnd.randrange(256)
            elif op == 1:
                del buf[i:i + rnd.randint(1, 20)]
            else:
                buf[i:i] = rnd.choice([b"\r", b"\n", b"\r\n", b" ", b":", b"0", b"\x00", b"chunked", b"\t"])
    p = HttpParser()
    events = p.feed(bytes(req), True) + p.feed(bytes(resp), False) + p.eof(True) + p.eof(False)
    assert all(not e.info.startswith("internal_error") for e in events)


_HEADER_LINE = st.one_of(
    st.sampled_from([b"Host: h", b"Content-Length: 3", b"Transfer-Encoding: chunked", b"X: a", b"X: b",
                     b"Content-Encoding: gzip", b" folded", b"\tfolded", b"NoColon", b": empty", b"Name : v",
                     b"\x00nul: v", b"Cookie: c", b"Content-Length: 4"]),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b))


@settings(max_examples=300, deadline=None)
@given(st.lists(_HEADER_LINE, max_size=10), st.sampled_from([b"\r\n", b"\n"]), st.booleans())
def test_header_block_fast_path_equals_line_by_line(lines, eol, response):
    # Whole-block input takes the fast path when it can; byte-at-a-time input never does.
    head = b"HTTP/1.1 200 OK" if response else b"POST /x HTTP/1.1"
    msg = head + eol + b"".join(x + eol for x in lines) + eol + b"abcd0\r\n\r\n"
    cuts = range(len(msg))
    if response:
        assert (_feed_split(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", msg, [], cuts)
                == _feed_split(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", msg, [], []))
    else:
        assert _feed_split(msg, b"", cuts, []) == _feed_split(msg, b"", [], [])


def test_multipart_upload_parts_are_files():
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"scan.pdf\"\r\n"
            b"Content-Type: application/pdf\r\n\r\n%PDF-1.4 data\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"g\"; filename=\"b.txt\"\r\n\r\nsecond\r\n--XyZ--\r\n")
    req = (b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    _, ev = exchange(req, close=False)
    assert [(e.info, e.data) for e in ev if e.kind == "file"] == [("scan.pdf", b"%PDF-1.4 data"), ("b.txt", b"second")]
    assert first_tx(ev).buffer("http.request_body") == body


def test_long_bodies_in_segments_equal_whole_with_limits():
    """Segments inside a Content-Length or chunked body take a shorter path: the counts, the captured
    bytes, truncation and body events must not depend on how the bytes were cut."""
    lim = HttpLimits(request_body_limit=30, response_body_limit=50, file_limit=70)
    body = bytes(range(256)) * 2
    request = b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body) + GET
    response = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100]) for i in range(0, 512, 100))
                + b"0\r\n\r\n")

    def run(step):
        p = HttpParser(lim)
        ev = []
        for data, ts in ((request, True), (response, False)):
            for i in range(0, len(data), step):
                ev += p.feed(data[i:i + step], ts)
        txs = {e.tx.tx_id: e.tx for e in ev if e.tx is not None}
        fields = [(t.request_body_len, t.response_body_len, bytes(t.request_body), bytes(t.response_body),
                   t.request_truncated, t.response_truncated, t.request_complete, t.response_complete)
                  for _, t in sorted(txs.items())]
        return _summary(ev), fields

    whole = run(len(response))
    assert whole[1][0][:2] == (512, 512) and whole[1][0][4:6] == (True, True)
    assert whole[1][0][2] == body[:70] and whole[1][1][3] == body[:70]
    for step in (1, 7, 64, 99, 100, 101, 513):
        assert run(step) == whole, step
