"""Transactional rules (Suricata 8's `=>`): request and response buffers of one transaction in one rule.

The rule alerts once per transaction, when its last condition is met (on the response), and its addresses
and ports are those of the request: `$HOME_NET any => $EXTERNAL_NET 80` is a client at home talking to a
server outside, whichever packet completes the match."""
from __future__ import annotations

import pytest

from gateway.ids.rules import RuleError, parse_rule

from .test_ids_engine import C, S, alerts, conversation, inspector, run

REQUEST = b"GET /wd/hub/session HTTP/1.1\r\nHost: grid.example\r\n\r\n"


def _response(status: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b" X\r\nServer: Jetty(9)\r\nContent-Length: %d\r\n\r\n" % len(body) + body


RULE = ('alert http $HOME_NET any => $EXTERNAL_NET any (msg:"request and answer"; http.uri; '
        'content:"/wd/hub/session"; http.stat_code; content:"500"; http.server; content:"Jetty"; startswith; '
        'file.data: to_client; content:"WebDriverException"; sid:1;)')


def test_parse_transactional_header():
    r = parse_rule(RULE)
    assert r.transactional and not r.bidirectional
    # `file.data: to_client` is the response body
    assert [ml.buffer for ml in r.buffers] == ["http.uri", "http.stat_code", "http.server", "http.response_body"]
    assert not parse_rule('alert http any any -> any any (http.uri; content:"/"; sid:2;)').transactional


@pytest.mark.parametrize("arg", ["sideways", "to_client,to_server"])
def test_file_data_direction_argument_is_checked(arg):
    with pytest.raises(RuleError, match="file.data"):
        parse_rule(f'alert http any any => any any (file.data: {arg}; content:"x"; sid:3;)')


def test_alerts_once_when_the_response_completes_the_match(tmp_path):
    insp, events, _ = inspector(tmp_path, RULE + "\n")
    pkts = conversation([(REQUEST, True), (_response(b"500", b"... WebDriverException: unknown error"), False)])
    run(insp, pkts)
    got = alerts(events)
    assert [a["alert"]["signature_id"] for a in got] == [1]
    # reported on the response packet, with the request's addresses as the rule states them
    assert got[0]["src_ip"] == S and got[0]["dest_ip"] == C


def test_no_alert_when_the_response_part_fails(tmp_path):
    insp, events, _ = inspector(tmp_path, RULE + "\n")
    run(insp, conversation([(REQUEST, True), (_response(b"200", b"WebDriverException"), False)]))
    assert alerts(events) == []


def test_addresses_are_those_of_the_request(tmp_path):
    # the client is at home: a rule naming the request the other way round never matches
    reverse = RULE.replace("$HOME_NET any => $EXTERNAL_NET any", "$EXTERNAL_NET any => $HOME_NET any")
    insp, events, _ = inspector(tmp_path, reverse + "\n")
    run(insp, conversation([(REQUEST, True), (_response(b"500", b"WebDriverException"), False)]))
    assert alerts(events) == []
