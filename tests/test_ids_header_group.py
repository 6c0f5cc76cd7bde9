"""The HTTP buffers that come from the header list alone share one remembered prefilter answer
(gateway/ids/header_group.py). What a rule sees must not depend on whether the answer came from the memo: the
same alerts with the group as without it, for repeated and changed header lists, other ports and cookies."""
from __future__ import annotations

import pytest

from gateway.applayer.http import HttpParser
from gateway.ids.header_group import GROUPED
from gateway.ids.stage import IdsStage

from .test_ids_engine import alerts, conversation, inspector, run

RULES = """\
alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"ua"; flow:to_server; http.user_agent; content:"EvilBot"; sid:1;)
alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"names without referer"; flow:to_server; http.method; \
content:"GET"; http.header_names; content:"|0d 0a|Host|0d 0a|"; content:!"Referer"; sid:2;)
alert http $HOME_NET any -> $EXTERNAL_NET 8080 (msg:"ua on 8080"; flow:to_server; http.user_agent; content:"curl/"; \
sid:3;)
alert http $EXTERNAL_NET any -> $HOME_NET any (msg:"server"; flow:to_client; http.server; content:"BadServer"; sid:4;)
alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"accept"; flow:to_server; http.accept; \
content:"application/x-evil"; sid:5;)
alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"header line"; flow:to_server; http.header; \
content:"X-Stage|3a 20|2"; sid:6;)
alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"cookie name"; flow:to_server; http.header_names; \
content:"|0d 0a|Cookie|0d 0a|"; sid:7;)
alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"uri"; flow:to_server; http.uri; content:"/drop.php"; sid:8;)
"""


def _request(uri: str, headers: list[str]) -> bytes:
    return (f"GET {uri} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode()


def _response(server: str) -> bytes:
    return f"HTTP/1.1 200 OK\r\nServer: {server}\r\nContent-Length: 2\r\n\r\nok".encode()


# (request, server, port): header lists repeat with other URIs and cookies, change by one header, move ports
EXCHANGES = [
    (_request("/a", ["Host: h.example", "User-Agent: EvilBot/1", "Cookie: s=1"]), "nginx", 80),
    (_request("/b", ["Host: h.example", "User-Agent: EvilBot/1", "Cookie: s=2"]), "nginx", 80),
    (_request("/drop.php", ["Host: h.example", "User-Agent: EvilBot/1"]), "BadServer/2", 80),
    (_request("/c", ["Host: h.example", "User-Agent: curl/8", "Referer: x"]), "nginx", 80),
    (_request("/c", ["Host: h.example", "User-Agent: curl/8", "Referer: x"]), "nginx", 8080),
    (_request("/d", ["Host: h.example", "User-Agent: curl/8", "Accept: application/x-evil"]), "BadServer/2", 8080),
    (_request("/e", ["Host: h.example", "X-Stage: 2", "Cookie: t=9"]), "nginx", 80),
    (_request("/e", ["Host: h.example", "X-Stage: 3", "Cookie: t=9"]), "nginx", 80),
    (_request("/e", ["Host: h.example", "X-Stage: 2", "Cookie: t=10"]), "BadServer/3", 80),
]


def _alerts(tmp_path, grouped: bool) -> list[tuple[int, int]]:
    insp, events, ids = inspector(tmp_path, RULES)
    assert isinstance(ids, IdsStage)
    groups = [grp.header_groups for grp in ids.engine.groups.values() if grp.header_groups]
    assert groups, "the rules' header buffers form a group"
    if not grouped:
        for g in groups:
            g.clear()
    out = []
    for n, (req, server, port) in enumerate(EXCHANGES):
        events.clear()
        run(insp, conversation([(req, True), (_response(server), False)], cport=41000 + n, sport=port))
        out += [(n, a["alert"]["signature_id"]) for a in alerts(events)]
    return sorted(out)


def test_grouped_answers_equal_the_per_buffer_ones(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_group = _alerts(tmp_path / "a", True)
    without = _alerts(tmp_path / "b", False)
    assert with_group == without
    # and they are the right ones: the user agent on every EvilBot request, curl only on 8080, the server,
    # the accept header, X-Stage 2 (not 3), the Cookie name only where a cookie was sent, the URI
    assert with_group == [
        (0, 1), (0, 2), (0, 7), (1, 1), (1, 2), (1, 7), (2, 1), (2, 2), (2, 4), (2, 8),
        (4, 3), (5, 2), (5, 3), (5, 4), (5, 5), (6, 2), (6, 6), (6, 7), (7, 2), (7, 7), (8, 2), (8, 4), (8, 6), (8, 7),
    ]


def test_repeated_header_list_is_answered_from_the_memo(tmp_path):
    insp, events, ids = inspector(tmp_path, RULES)
    hg = next(grp.header_groups[True][0] for grp in ids.engine.groups.values() if True in grp.header_groups)
    req = [_request(f"/p{i}", ["Host: h.example", "User-Agent: EvilBot/1", f"Cookie: s={i}"]) for i in range(3)]
    for i, r in enumerate(req):
        run(insp, conversation([(r, True), (_response("nginx"), False)], cport=42000 + i))
    # one header list (the cookie's value left out of the key): one entry
    assert len(hg.memo) == 1
    assert [a["alert"]["signature_id"] for a in alerts(events)].count(1) == 3


@pytest.mark.parametrize("name", sorted(GROUPED))
def test_grouped_buffers_come_from_the_header_list_alone(name):
    # the premise of the memo: each grouped buffer is a function of the header list (applayer/http.py): two
    # messages with one header list and other request lines, status lines and bodies give the same buffer
    to_server = name not in ("http.server", "http.location")
    got = []
    for uri, line, body in ((b"/one", b"HTTP/1.1 200 OK", b"ab"), (b"/two?x=1", b"HTTP/1.0 404 Gone", b"cd")):
        p = HttpParser()
        p.feed(b"POST " + uri + b" HTTP/1.1\r\nHost: a\r\nUser-Agent: u\r\nAccept: a/b\r\nAccept-Encoding: gzip"
               b"\r\nAccept-Language: ja\r\nReferer: r\r\nConnection: keep-alive\r\nContent-Type: t\r\n"
               b"Content-Length: 2\r\n\r\n" + body, True)
        p.feed(line + b"\r\nServer: s\r\nLocation: /l\r\nContent-Type: t\r\nContent-Length: 2\r\n\r\n" + body,
               False)
        tx = p.last_request
        assert tx is not None and tx.response_complete
        got.append(tx.buffer(name, to_server))
    assert got[0] and got[0] == got[1]
