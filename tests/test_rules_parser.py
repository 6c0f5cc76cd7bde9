"""Suricata rule parser and model (gateway/ids/rules.py, keywords.py, model.py)."""
import re

import pytest

from gateway.ids import RuleError, parse_rule
from gateway.ids.classification import load_classifications
from gateway.ids.model import (
    BufferSize,
    ByteExtract,
    ByteJump,
    ByteTest,
    ContentMatch,
    IntCompare,
    IsDataAt,
    PcreMatch,
)

CLS = load_classifications()


def rule(options: str, header: str = "alert tcp any any -> any any", **kw):
    return parse_rule(f"{header} ({options} sid:1;)", classifications=CLS, **kw)


def reject(options: str, header: str = "alert tcp any any -> any any") -> str:
    with pytest.raises(RuleError) as ei:
        rule(options, header)
    return ei.value.reason


def contents(r, buffer="pkt_data"):
    ml = r.buffer(buffer)
    return [m for m in ml.matches if isinstance(m, ContentMatch)] if ml else []


# ----------------------------------------------------------------------------------------------- header

@pytest.mark.parametrize("action", ["alert", "drop", "reject", "pass"])
def test_actions(action):
    assert rule('content:"x";', f"{action} tcp any any -> any any").action == action


@pytest.mark.parametrize("proto, ip_protos, app", [
    ("ip", None, None), ("tcp", {6}, None), ("udp", {17}, None), ("icmp", {1, 58}, None),
    ("http", {6}, "http"), ("dns", {6, 17}, "dns"), ("tls", {6}, "tls"), ("smtp", {6}, "smtp"),
    ("ftp", {6}, "ftp"), ("tcp-pkt", {6}, None), ("tcp-stream", {6}, None),
])
def test_protocols(proto, ip_protos, app):
    r = rule('content:"x";', f"alert {proto} any any -> any any")
    assert r.proto == proto and r.app_proto == app
    assert (r.ip_protos is None and ip_protos is None) or set(r.ip_protos) == ip_protos


def test_tcp_pkt_and_stream_become_flow_stream_restrictions():
    assert rule('content:"x";', "alert tcp-pkt any any -> any any").flow.stream == "no"
    r = rule('flow:established,to_server; content:"x";', "alert tcp-stream any any -> any any")
    assert r.flow.stream == "only" and r.flow.established and r.flow.to_server
    assert "conflicts" in reject('flow:only_stream; content:"x";', "alert tcp-pkt any any -> any any")


def test_bidirectional_and_groups():
    r = rule('content:"x";', "alert tcp [10.0.0.0/8,!10.9.0.0/16] ![80,443] <> $EXTERNAL_NET $HTTP_PORTS")
    assert r.bidirectional
    assert r.src.contains(bytes([10, 1, 1, 1])) and not r.src.contains(bytes([10, 9, 1, 1]))
    assert not r.sport.contains(80) and r.sport.contains(81)
    assert r.dport.contains(80)


@pytest.mark.parametrize("header, reason", [
    ("alarm tcp any any -> any any", "unsupported action: alarm"),
    ("rejectall tcp any any -> any any", "unsupported action: rejectall"),
    ("alert ftp-data any any -> any any", "unsupported protocol: ftp-data"),
    ("alert tcp any any <- any any", "direction"),
    ("alert tcp any any -> any", "fields"),
    ("alert tcp $NOPE any -> any any", "undefined address variable"),
    ("alert tcp any 99999 -> any any", "port"),
])
def test_bad_headers(header, reason):
    assert reason in reject('content:"x";', header)


# ------------------------------------------------------------------------------------ option tokenizing

def test_quoting_and_escapes():
    r = rule(r'msg:"a \"quoted\" \; msg \\ ok"; content:"a\;b\"c\\d\:e|3B 7c|f";')
    assert r.msg == 'a "quoted" ; msg \\ ok'
    assert contents(r)[0].pattern == b'a;b"c\\d:e;|f'


def test_hex_content():
    assert contents(rule('content:"|00 01 FF|ab|0d0a|";'))[0].pattern == b"\x00\x01\xffab\r\n"


@pytest.mark.parametrize("opts, reason", [
    ('content:"|4|";', "odd number of hex digits"),
    ('content:"|zz|";', "invalid character"),
    ('content:"|41";', "unterminated hex"),
    (r'content:"a\nb";', "invalid escape"),
    ('content:"";', "empty pattern"),
    ("content:abc;", "double quotes"),
    ('content:"a"', "missing ';'"),
])
def test_bad_content(opts, reason):
    text = f"alert tcp any any -> any any ({opts})" if not opts.endswith(";") else None
    if text:
        with pytest.raises(RuleError, match=re.escape(reason)):
            parse_rule(text)
    else:
        assert reason in reject(opts)


def test_unknown_keyword_is_rejected_never_ignored():
    assert reject('content:"x"; asn1:oversize_length 100;') == "unsupported keyword: asn1"
    assert reject('content:"x"; byte_math:bytes 1, offset 0, oper +, rvalue 1, result r;') == \
        "unsupported keyword: byte_math"


def test_missing_sid():
    with pytest.raises(RuleError, match="missing sid"):
        parse_rule('alert tcp any any -> any any (content:"x";)')


def test_error_carries_file_line_sid():
    with pytest.raises(RuleError) as ei:
        parse_rule('alert tcp any any -> any any (content:"x"; frobnicate; sid:42;)', file="f.rules", line=7)
    e = ei.value
    assert (e.file, e.line, e.sid, e.reason) == ("f.rules", 7, 42, "unsupported keyword: frobnicate")
    assert str(e) == "f.rules:7: sid 42: unsupported keyword: frobnicate"


# ------------------------------------------------------------------------------ buffers: sticky vs legacy

def _shape(r):
    return [(ml.buffer, ml.transforms, ml.matches) for ml in r.buffers]


def test_sticky_and_legacy_modifiers_give_the_same_model():
    legacy = rule('flow:established,to_server; content:"POST"; http_method; content:"/gate.php"; http_uri; '
                  'content:"id="; http_uri; distance:0; content:"Mozilla"; http_user_agent; nocase; '
                  'content:"evil.example"; http_host; content:"secret"; http_client_body;',
                  "alert http any any -> any any")
    sticky = rule('flow:established,to_server; http.method; content:"POST"; http.uri; content:"/gate.php"; '
                  'content:"id="; distance:0; http.user_agent; content:"Mozilla"; nocase; '
                  'http.host; content:"evil.example"; http.request_body; content:"secret";',
                  "alert http any any -> any any")
    assert sorted(_shape(legacy), key=lambda s: s[0]) == sorted(_shape(sticky), key=lambda s: s[0])
    uri = contents(sticky, "http.uri")
    assert [c.pattern for c in uri] == [b"/gate.php", b"id="] and uri[1].relative and uri[1].distance == 0
    assert contents(sticky, "http.user_agent")[0].nocase


def test_uricontent_and_legacy_names():
    r = rule('uricontent:"/x.php"; content:"abc"; http_raw_uri; content:"Set"; http_raw_header;',
             "alert tcp any any -> any any")
    assert contents(r, "http.uri")[0].pattern == b"/x.php"
    assert contents(r, "http.uri.raw")[0].pattern == b"abc"
    assert contents(r, "http.header.raw")[0].pattern == b"Set"
    assert r.app_proto == "http"
    r = rule('dns_query; content:"evil"; nocase;', "alert udp any any -> any 53")
    assert contents(r, "dns.query")[0].nocase and r.app_proto == "dns" and set(r.ip_protos) == {17}
    r = rule('tls_sni; content:"evil.example"; ja3_hash; content:"e7d705a3286e19ea42f587b344ee6865";',
             "alert tls any any -> any any")
    assert contents(r, "tls.sni") and contents(r, "ja3.hash")


def test_pkt_data_resets_sticky_and_file_data():
    r = rule('http.uri; content:"/a"; pkt_data; content:"raw"; file_data; content:"MZ";',
             "alert http any any -> any any")
    assert contents(r)[0].pattern == b"raw"
    assert contents(r, "file.data")[0].pattern == b"MZ"
    # SMTP attachments are file.data too (applayer/smtp.py); DNS has no files
    assert rule('file.data; content:"%PDF";', "alert smtp any any -> any any").app_proto == "smtp"
    assert "needs http or smtp" in reject('file.data; content:"%PDF";', "alert dns any any -> any any")


def test_transforms_key_their_own_list():
    r = rule('dns.query; dotprefix; content:".evil.example"; endswith; dns.query; content:"x";',
             "alert dns any any -> any any")
    ml = r.buffer("dns.query", ("dotprefix",))
    assert ml is not None and ml.matches[0].endswith
    assert r.buffer("dns.query").matches[0].pattern == b"x"
    # a transform after matches moves what follows to the transformed buffer (Suricata 5, ET sid 2044076)
    r = rule('dns.query; content:"rs-"; startswith; dotprefix; content:".rustdesk.com"; endswith;',
             "alert dns any any -> any any")
    assert r.buffer("dns.query").matches[0].pattern == b"rs-"
    assert r.buffer("dns.query", ("dotprefix",)).matches[0].pattern == b".rustdesk.com"
    assert "must follow a sticky buffer" in reject('content:"a"; dotprefix; content:"b";')
    assert "given twice" in reject('dns.query; dotprefix; dotprefix; content:"b";', "alert dns any any -> any any")


@pytest.mark.parametrize("opts, header, reason", [
    ('http.uri; content:"x";', "alert dns any any -> any any", "needs http"),
    ('content:"x"; http_uri;', "alert udp any any -> any any", "cannot match protocol udp"),
    ('dns.query; content:"x"; tls.sni; content:"y";', "alert ip any any -> any any", "needs tls"),
    ('http.uri; content:"x"; http_header;', "alert http any any -> any any", "inside a sticky buffer"),
    ('content:"x"; http_uri; http_header;', "alert http any any -> any any", "already has a buffer"),
    ('http.host; content:"Evil.example";', "alert http any any -> any any", "uppercase"),
    ('http.uri; sid:2; content:"x";', "alert http any any -> any any", "sid: given twice"),
    ('http_uri;', "alert http any any -> any any", "needs a preceding content"),
    ('http.uri; pkt_data; content:"x";', "alert http any any -> any any", "no match after it"),
    ('http.uri; content:"a"; http.host; content:"b"; http.uri;', "alert http any any -> any any",
     "no match after it"),
])
def test_buffer_errors(opts, header, reason):
    assert reason in reject(opts, header)


def test_http_host_nocase_allows_uppercase():
    assert rule('http.host; content:"Evil.Example"; nocase;', "alert http any any -> any any")


# ------------------------------------------------------------------------------------ content modifiers

def test_content_modifiers():
    r = rule('content:"GET"; offset:0; depth:3; content:"/x"; distance:1; within:10; '
             'content:!"curl"; nocase; content:"end"; endswith; content:"MZ"; startswith;')
    c = contents(r)
    assert (c[0].offset, c[0].depth, c[0].relative) == (0, 3, False)
    assert (c[1].distance, c[1].within, c[1].relative) == (1, 10, True)
    assert c[2].negated and c[2].nocase
    assert c[3].endswith
    assert c[4].startswith and (c[4].offset, c[4].depth) == (0, 2)


@pytest.mark.parametrize("opts, reason", [
    ('content:"abc"; depth:2;', "smaller than the content length"),
    ('content:"a"; content:"abc"; within:2;', "smaller than the content length"),
    ('content:"a"; offset:1; distance:2;', "cannot mix relative"),
    ('content:"a"; distance:2; depth:3;', "cannot mix relative"),
    ('content:"a"; nocase; nocase;', "nocase: given twice"),
    ('content:"a"; depth:1; depth:1;', "depth: given twice"),
    ('content:"ab"; startswith; offset:1;', "startswith"),
    ('nocase; content:"a";', "needs a preceding content"),
    ('content:"a"; offset:x;', "unknown byte_extract variable"),
    ('content:"a"; depth:0;', "must be > 0"),
])
def test_content_modifier_errors(opts, reason):
    assert reason in reject(opts)


def test_relative_modifiers_follow_suricata_last_content_rule():
    # nocase applies to the last content, even with a pcre in between (Suricata semantics)
    r = rule('content:"abc"; pcre:"/x/"; nocase;')
    assert contents(r)[0].nocase


# ----------------------------------------------------------------------------------------- fast pattern

def test_explicit_fast_pattern_variants():
    r = rule('content:"longer-content"; content:"short"; fast_pattern;')
    assert r.fast_pattern.pattern == b"short" and not r.fast_pattern.only
    r = rule('content:"abcdef"; fast_pattern:only;')
    assert r.fast_pattern.only
    r = rule('content:"abcdefgh"; fast_pattern:2,4; nocase;')
    assert r.fast_pattern.pattern == b"cdef" and r.fast_pattern.nocase
    assert "only one per rule" in reject('content:"a"; fast_pattern; content:"b"; fast_pattern;')
    assert "past the end" in reject('content:"abc"; fast_pattern:2,4;')
    assert "fast_pattern:only" in reject('content:"abc"; fast_pattern:only; depth:5;')
    assert "negated" in reject('content:!"abc"; fast_pattern:only;')


def test_automatic_fast_pattern_prefers_app_layer_buffer_then_length():
    # http.uri (priority 2) beats a longer payload content (priority 3)
    r = rule('content:"a-much-longer-payload-content"; content:"/uri"; http_uri;',
             "alert tcp any any -> any any")
    assert (r.fast_pattern.buffer, r.fast_pattern.pattern) == ("http.uri", b"/uri")
    # http.method has a lower priority than payload content
    r = rule('http.method; content:"POST"; pkt_data; content:"ab";', "alert http any any -> any any")
    assert r.fast_pattern.buffer == "pkt_data"
    # longest within the best buffers; negated contents ignored while positive ones exist
    r = rule('http.uri; content:"/a"; content:!"/negated-long"; http.header; content:"X-Hdr: 1";',
             "alert http any any -> any any")
    assert r.fast_pattern.pattern == b"X-Hdr: 1"
    c = contents(r, "http.header")[0]
    assert c.fast_pattern and not contents(r, "http.uri")[0].fast_pattern
    fp = r.fast_pattern
    assert r.buffers[fp.list_index].matches[fp.match_index] is c


def test_fast_pattern_strength_tie_break_and_negated_only():
    # same length: the more diverse pattern wins ("aaaa" scores 3+1+1+1, "a1b2" 3+4+3+4)
    assert rule('content:"aaaa"; content:"a1b2";').fast_pattern.pattern == b"a1b2"
    r = rule('content:!"abc";')
    assert r.fast_pattern.negated
    assert rule("flow:established;").fast_pattern is None


# ------------------------------------------------------------------------------------------------- pcre

def test_pcre_flags_and_buffers():
    r = rule('content:"x"; pcre:"/a(?<name>b)c/Ri"; pcre:"/^GET/M"; pcre:!"/evil/U"; pcre:"/X/H";')
    p = next(m for m in r.buffer("pkt_data").matches if isinstance(m, PcreMatch))
    assert p.relative and p.nocase and p.regex.search(b"xABC")
    assert isinstance(r.buffer("http.method").matches[0], PcreMatch)
    assert r.buffer("http.uri").matches[0].negated
    assert r.buffer("http.header").matches[0].source == "X"
    assert r.app_proto == "http"


def test_pcre_flag_matching_sticky_buffer_is_accepted():
    r = rule('http.uri; content:"/a"; pcre:"/^\\d+$/UR";', "alert http any any -> any any")
    assert len(r.buffer("http.uri").matches) == 2
    assert "differs" in reject('file_data; content:"a"; pcre:"/x/QR";', "alert http any any -> any any")


@pytest.mark.parametrize("opts, reason", [
    ('pcre:"/a(/";', "not supported by the regex engine"),
    ('pcre:"/a/Kq";', "unknown modifier"),
    ('pcre:"/a/A";', "anchored"),
    ('pcre:"/(a)\\g{-1}/";', "relative back references"),
    ('pcre:"/a/UH";', "more than one buffer"),
    ('pcre:"abc";', "expected /regex/flags"),
    ("pcre:abc;", "must be /regex/flags"),
    ('pcre:"/A/W";', "uppercase"),
])
def test_pcre_errors(opts, reason):
    assert reason in reject(opts)


# ----------------------------------------------------------------------------------------------- byte_*

def test_byte_keywords_and_variables():
    r = rule('content:"|00|"; byte_extract:2,0,len,relative,little; byte_test:2,>,len,0,relative; '
             'byte_jump:2,0,relative,multiplier 2,post_offset -1,align; isdataat:!len,relative; '
             'content:"x"; within:len; byte_test:4,!&,0x10,2,string,hex; byte_test:0,=,0,0,string,dec;')
    m = r.buffer("pkt_data").matches
    assert isinstance(m[1], ByteExtract) and (m[1].name, m[1].endian, m[1].relative) == ("len", "little", True)
    assert isinstance(m[2], ByteTest) and m[2].value == "len" and m[2].operator == ">"
    assert isinstance(m[3], ByteJump) and (m[3].multiplier, m[3].post_offset, m[3].align) == (2, -1, True)
    assert isinstance(m[4], IsDataAt) and m[4].negated and m[4].size == "len"
    assert m[5].within == "len"
    assert (m[6].negated, m[6].operator, m[6].value, m[6].string) == (True, "&", 16, "hex")
    assert m[7].nbytes == 0 and m[7].string == "dec"
    r = rule('byte_jump:2,0,align,string,hex; byte_extract:3,1,w,string,oct,align 4;')
    jump, extract = r.buffer("pkt_data").matches
    assert jump.align is True and jump.string == "hex"
    assert extract.align == 4 and extract.string == "oct"


@pytest.mark.parametrize("opts, reason", [
    ('byte_test:9,=,1,0;', "1..8"),
    ('byte_test:0,=,1,0;', "1..8"),
    ('byte_test:2,~,1,0;', "unknown operator"),
    ('byte_test:2,=,1;', "expected nbytes"),
    ('byte_test:2,=,nope,0;', "unknown byte_extract variable"),
    ('byte_jump:2,0,frobnicate;', "unknown option"),
    ('byte_extract:2,0,v; byte_extract:2,0,v;', "defined twice"),
    ('byte_extract:2,0,1bad;', "invalid variable name"),
    ('isdataat:10,sideways;', "unknown option"),
    ('byte_test:2,=,1,0,dce;', "dcerpc"),
    ('byte_test:2,=,1,0,hex;', "without string"),
    ('byte_test:21,=,1,0,string,dec;', "1..20"),
    ('byte_test:15,=,1,0,string,hex;', "1..14"),
    ('byte_extract:2,0,v,string,big;', "cannot be combined with string"),
    ('byte_extract:2,0,v,align 3;', "align must be 2 or 4"),
    ('byte_jump:2,0,multiplier 0;', "outside 1..65535"),
    ('byte_test:2,=,1,0,big,little;', "more than one endianness"),
])
def test_byte_errors(opts, reason):
    assert reason in reject(opts)


# ---------------------------------------------------------------------------------- per-packet, state, rate

def test_flow_flags_sizes():
    r = rule('flow:established,from_client,no_stream; flags:S+,12; dsize:>10; ttl:<5; itype:8; icode:0<>3; '
             'ip_proto:!tcp; stream_size:client,<,100; stream_size:server,>=,5;')
    assert (r.flow.established, r.flow.to_server, r.flow.stream) == (True, True, "no")
    assert r.flags.matches(0x02 | 0x10) and not r.flags.matches(0x10)
    assert r.flags.matches(0x02 | 0xC0)         # CWR/ECE are masked by ",12"
    assert r.dsize == IntCompare(">", 10) and r.ttl.matches(4) and not r.ttl.matches(5)
    assert r.itype.matches(8) and r.icode.matches(2) and not r.icode.matches(3)
    assert r.ip_proto == IntCompare("!=", 6)
    assert [s.side for s in r.stream_size] == ["client", "server"]


@pytest.mark.parametrize("spec, yes, no", [
    ("S", [0x02], [0x12, 0x00]), ("SA", [0x12], [0x02, 0x13]), ("*SF", [0x02, 0x01, 0x03], [0x10]),
    ("!R", [0x02], [0x04, 0x14]), ("0", [0x00], [0x01]), ("A+", [0x10, 0x18], [0x08]),
    ("!SA", [0x02, 0x10, 0x00], [0x12, 0x1A]),       # Suricata: not *all* of them
])
def test_tcp_flag_modes(spec, yes, no):
    f = rule(f"flags:{spec};").flags
    assert all(f.matches(x) for x in yes) and not any(f.matches(x) for x in no)


def test_flowbits_xbits_threshold():
    r = rule('flowbits:set,a.b; flowbits:isset,x | y; flowbits:isnotset,p&q; flowbits:noalert; '
             'xbits:set,ET.foo,track ip_src,expire 60; threshold:type limit, track by_src, seconds 60, count 1;')
    assert [(f.command, f.names, f.any_of) for f in r.flowbits] == [
        ("set", ("a.b",), False), ("isset", ("x", "y"), True), ("isnotset", ("p&q",), False)]
    assert r.noalert
    assert (r.xbits[0].track, r.xbits[0].expire) == ("ip_src", 60)
    assert (r.threshold.type, r.threshold.track, r.threshold.count, r.threshold.seconds) == \
        ("limit", "by_src", 1, 60)
    r = rule("detection_filter:track by_dst, count 5, seconds 10;")
    assert r.detection_filter.type == "detection_filter" and r.detection_filter.count == 5


@pytest.mark.parametrize("opts, reason", [
    ("flow:to_server,to_client;", "conflicting directions"),
    ("flow:established,not_established;", "established"),
    ("flow:sideways;", "unsupported option"),
    ("flowbits:frob,x;", "unknown command"),
    ("flowbits:set,a|b;", "only with isset"),
    ("flowbits:set,a b;", "spaces are not allowed"),
    ("xbits:set,x;", "expected"),
    ("threshold:type limit, track by_src, count 1;", "missing seconds"),
    (("threshold:type limit, track by_src, count 1, seconds 1; detection_filter:track by_src, count 1, "
     "seconds 1;"), "only one"),
    ("flags:SX;", "unknown TCP flag"),
    ("dsize:abc;", "expected N"),
    ("dsize:5<>3;", "out of order"),
    ("dsize:1; dsize:2;", "given twice"),
])
def test_rule_option_errors(opts, reason):
    assert reason in reject(opts)


def test_bsize_urilen_tls_version():
    r = rule('http.uri; content:"/a"; bsize:<20; urilen:5<>30,raw;', "alert http any any -> any any")
    assert isinstance(r.buffer("http.uri").matches[1], BufferSize)
    assert r.urilen == IntCompare("<>", 5, 30) and r.urilen_raw
    assert "sticky buffer" in reject("bsize:10;")
    assert rule("tls.version:1.2;", "alert tls any any -> any any").tls_version == 0x0303
    assert "needs http" in reject("urilen:5;", "alert dns any any -> any any")
    assert "needs TCP" in reject("flags:S;", "alert udp any any -> any any")


# ------------------------------------------------------------------------------------------------ identity

def test_identity_fields_and_classification_priority():
    r = rule('msg:"ET TEST"; classtype:trojan-activity; rev:3; gid:1; reference:url,example.com/a,b; '
             'reference:cve,2020-1234; metadata:created_at 2020_01_01, signature_severity Major; '
             'target:dest_ip; tag:session,5,packets;')
    assert (r.msg, r.classtype, r.priority, r.rev, r.gid, r.target) == \
        ("ET TEST", "trojan-activity", 1, 3, 1, "dest_ip")
    assert r.references == (("url", "example.com/a,b"), ("cve", "2020-1234"))
    assert ("signature_severity", "Major") in r.metadata
    assert rule("classtype:trojan-activity; priority:4;").priority == 4
    assert rule("classtype:Trojan-Activity;").classtype == "trojan-activity"
    assert rule("content:\"x\";").priority == 3
    assert reject("classtype:nonsense;") == "unknown classtype: nonsense"
    assert "1..255" in reject("priority:0;")


def test_relative_byte_keywords_follow_the_previous_match_into_its_buffer():
    # Suricata places a relative isdataat/byte_* outside a sticky buffer in the buffer of the match before it
    r = rule('content:"/x.php?id="; http_uri; isdataat:5,relative; byte_test:1,=,0x41,0,relative; '
             'content:"payload";', "alert http any any -> any any")
    uri = r.buffer("http.uri").matches
    assert [type(m).__name__ for m in uri] == ["ContentMatch", "IsDataAt", "ByteTest"]
    assert [type(m).__name__ for m in r.buffer("pkt_data").matches] == ["ContentMatch"]
    # a non-relative one stays on the payload
    r = rule('content:"a"; http_uri; isdataat:5;', "alert http any any -> any any")
    assert isinstance(r.buffer("pkt_data").matches[0], IsDataAt)


def test_relative_pcre_needs_a_previous_match_in_its_buffer_outside_sticky_buffers():
    assert "needs a preceding content" in reject('pcre:"/x/R";')
    assert "needs a preceding content" in reject('content:"a"; http_uri; pcre:"/x/R";',
                                                 "alert http any any -> any any")
    r = rule('http.uri; pcre:"/^x/R";', "alert http any any -> any any")    # sticky: from the buffer start
    assert r.buffer("http.uri").matches[0].relative


def test_metadata_pairs():
    r = rule("metadata:former_category MALWARE, signature_severity Major; metadata:tag Ransomware;")
    assert r.metadata == (("former_category", "MALWARE"), ("signature_severity", "Major"), ("tag", "Ransomware"))


def test_suricata7_spellings():
    r = rule("pcre:/one/U;", "alert http1 any any -> any any")       # unquoted pcre, http1 protocol
    assert r.app_proto == "http" and r.buffer("http.uri").matches[0].source == "one"
    r = rule('tls.cert_fingerprint; content:"4a:a3"; tls.subjectaltname; content:"example.com";',
             "alert tls any any -> any any")
    assert r.buffer("tls.cert_fingerprint") and r.buffer("tls.subjectaltname")


def test_every_app_layer_buffer_has_a_producer():
    # a buffer the parser accepts but no app-layer parser fills would make its rules silently dead
    from gateway.applayer import DNS_BUFFERS, HTTP_BUFFERS, HTTP_MULTI_BUFFERS
    from gateway.applayer import ssh as ssh_parser
    from gateway.applayer import tls as tls_parser
    from gateway.ids.header import HEADER_BUFFERS
    from gateway.ids.keywords import BUFFERS
    tls_buffers = set(tls_parser._BUFFERS) | {"tls.certs", "tls.subjectaltname"}   # the last two: multi
    for name, spec in BUFFERS.items():
        if spec.app_proto == "http" or name == "file.data":
            assert name in HTTP_BUFFERS or name in HTTP_MULTI_BUFFERS, name
        elif spec.app_proto == "dns":
            assert name in DNS_BUFFERS, name
        elif spec.app_proto == "tls":
            assert name in tls_buffers, name
        elif spec.app_proto == "ssh":
            assert name in ssh_parser._BUFFERS, name
        else:
            assert name == "pkt_data" or name in HEADER_BUFFERS, name   # headers: read from the packet


@pytest.mark.parametrize("pcre, yes, no", [
    (r"/abc\Z/", [b"xabc", b"xabc\n"], [b"xabc\nq"]),          # PCRE \Z: end or before a final newline
    (r"/abc\z/", [b"xabc"], [b"xabc\n"]),                       # PCRE \z: the very end
    (r"/^[[:xdigit:]]{4}$/", [b"0aF9"], [b"0aG9", b"[:x]"]),    # POSIX class, not a set of characters
    (r"/[^[:alpha:][:space:]]/", [b"ab1"], [b"ab c"]),
    (r"/(?<v>\x4)/", [b"\x04"], [b"x4"]),                       # named group, one-digit \x
    (r"/a\\z/", [b"a\\z"], [b"a"]),                             # an escaped backslash stays one
    (r"/(ab)\g{1}c\g1/", [b"xababcab"], [b"ababcac"]),          # back references by number
])
def test_pcre_spellings_keep_pcre_meaning(pcre, yes, no):
    regex = rule(f'pcre:"{pcre}";').buffer("pkt_data").matches[0].regex
    assert all(regex.search(y) for y in yes) and not any(regex.search(n) for n in no)


@pytest.mark.parametrize("source, expected", [
    (r"a.*b", r"a.*?b"), (r"a.*?b", r"a.*b"), (r"(?:x+)+?y", r"(?:x+?)+y"), (r"a{2,}+c", r"a{2,}+c"),
    (r"[*+?]{2,3}", r"[*+?]{2,3}?"), (r"(?i)a\*b?", r"(?i)a\*b??"), (r"[]*]x*", r"[]*]x*?"),
    (r"(a)\g{1}+", r"(a)\g{1}+?"),
])
def test_pcre_ungreedy_flag_swaps_quantifiers(source, expected):
    from gateway.ids.keywords import ungreedy
    assert ungreedy(source) == expected


def test_pcre_ungreedy_moves_the_cursor_of_relative_keywords():
    # /a.+b/ ends after the last b, /a.+b/G after the first: a content right after it tells them apart
    from gateway.ids.match import match_list
    greedy = rule('pcre:"/a.+b/"; content:"2"; within:1;').buffer("pkt_data")
    lazy = rule('pcre:"/a.+b/G"; content:"2"; within:1;').buffer("pkt_data")
    assert match_list(lazy, b"a1b2bX") and not match_list(greedy, b"a1b2bX")


def test_unsupported_posix_class_is_rejected():
    assert "POSIX class" in reject('pcre:"/[[:^alpha:]]/";')


@pytest.mark.parametrize("requires", ["version >= 7", "version >= 7.0.3 < 8", "version < 7 | >= 7.0"])
def test_requires_met_loads_the_rule(requires):
    rule = parse_rule(f'alert tcp any any -> any any (content:"x"; requires: {requires}; sid:1;)')
    assert rule.sid == 1


@pytest.mark.parametrize("requires, reason", [
    ("version >= 8", "requires: version >= 8 (the engine follows Suricata 7.0.3)"),
    ("version >= 7.0.4 < 8 | >= 8.0.3", "requires: version >= 7.0.4 < 8 | >= 8.0.3 (the engine follows Suricata 7.0.3)"),
    ("feature geoip, version >= 7", "requires: feature geoip (not provided)"),
    ("version 7", "requires: bad version expression 'version 7'"),
    ("colour blue", "requires: unknown requirement 'colour' (feature or version)"),
])
def test_requires_unmet_or_malformed_names_the_requirement(requires, reason):
    # checked before the other keywords: a rule for a newer engine is reported by its requirement, not by a
    # keyword this engine lacks (asn1 here)
    with pytest.raises(RuleError) as e:
        parse_rule(f'alert tcp any any -> any any (asn1:oversize_length 10; requires: {requires}; sid:1;)')
    assert e.value.reason == reason


def test_byte_extract_variable_stays_in_its_buffer():
    # each buffer is evaluated on its own: a variable read in another buffer would leave the rule dead, so the
    # rule is refused (Suricata shares them); the same buffer and its base64_data may read it
    parse_rule('alert tcp any any -> any any (content:"a"; byte_extract:1,0,n,relative; '
               'byte_test:1,>,n,0,relative; sid:1;)')
    parse_rule('alert tcp any any -> any any (content:"a"; byte_extract:1,0,n,relative; base64_decode:relative; '
               'base64_data; content:"x"; distance:n; sid:2;)')
    for use in ('byte_test:1,>,n,0,relative;', 'content:"b"; distance:n;', 'isdataat:n,relative;'):
        with pytest.raises(RuleError, match="'n' is used in http.header but extracted in another buffer"):
            parse_rule('alert http any any -> any any (http.uri; content:"a"; byte_extract:1,0,n,relative; '
                       f'http.header; content:"c"; {use} sid:3;)')
