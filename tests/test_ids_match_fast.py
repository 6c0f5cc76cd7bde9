"""The compiled evaluation of a MatchList (match.compile_list, used by match_list) against the generic
interpreter (match.match_generic, the reference semantics) on random buffers, for ET-style match lists."""
from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ids.match import RECURSION_LIMIT, compile_list, match_generic, match_list
from gateway.ids.model import MatchList
from gateway.ids.rules import parse_rule

# (header proto, options) in the shapes ET Open uses most, plus the corners of each keyword
LISTS = [
    ("tcp", 'content:"abc";'),
    ("tcp", 'content:"ABC"; nocase;'),
    ("tcp", 'content:!"abc";'),
    ("tcp", 'content:!"ABC"; nocase;'),
    ("tcp", 'content:"abc"; offset:2;'),
    ("tcp", 'content:"abc"; depth:5;'),
    ("tcp", 'content:"abc"; offset:1; depth:4;'),
    ("tcp", 'content:"aB"; nocase; offset:3; depth:3;'),
    ("tcp", 'content:"./"; nocase; content:"a"; distance:0; within:2;'),     # nocase without letters
    ("http", 'http.uri; content:"/."; nocase; startswith;'),
    ("tcp", 'content:!"ab"; offset:2; depth:4;'),
    ("http", 'http.uri; content:"/ab"; startswith;'),
    ("http", 'http.uri; content:"/AB"; startswith; nocase;'),
    ("http", 'http.uri; content:".ab"; endswith;'),
    ("http", 'http.uri; content:".AB"; nocase; endswith;'),
    ("http", 'http.uri; content:"ab"; offset:1; endswith;'),
    ("http", 'http.uri; content:!"ab"; endswith;'),
    ("tcp", 'content:!"ab"; depth:3; endswith;'),
    ("tcp", 'content:"ab"; offset:1; depth:3; endswith;'),
    ("tcp", 'content:"a"; content:!"b"; distance:0; within:2; endswith;'),
    ("tcp", 'content:"a"; content:"b"; distance:0; within:2; endswith;'),
    ("http", 'http.uri; content:"/a"; startswith; content:"b"; distance:0;'),
    ("http", 'http.uri; content:"/a"; startswith; content:"b"; endswith;'),
    ("dns", 'dns.query; dotprefix; content:".ab.c"; nocase; endswith;'),
    ("tcp", 'content:"ab"; content:"ca"; distance:0;'),
    ("tcp", 'content:"ab"; content:"ca"; within:4;'),
    ("tcp", 'content:"ab"; content:"c"; distance:1; within:3;'),
    ("tcp", 'content:"ab"; content:"ba"; distance:-3; within:3;'),
    ("tcp", 'content:"b"; content:"a"; distance:-2;'),
    ("tcp", 'content:"ab"; content:"b"; distance:-5; within:2;'),
    ("tcp", 'content:"a"; content:"b"; distance:0; within:2; content:"c"; distance:0; within:2;'),
    ("tcp", 'content:"A"; nocase; content:"b"; distance:0; content:"A"; nocase; distance:0; within:3;'),
    ("tcp", 'content:"ab"; content:!"c"; distance:0; within:2;'),
    ("tcp", 'content:"ab"; content:!"C"; nocase; distance:-3; within:4;'),
    ("tcp", 'content:"a"; content:!"b"; content:"c"; distance:0;'),
    ("tcp", 'content:"a"; content:"bb"; content:"c"; distance:0; within:3;'),
    ("tcp", 'content:"ab"; offset:1; content:"c"; within:3; content:"a"; distance:1;'),
    ("tcp", 'content:"ab"; isdataat:2,relative;'),
    ("tcp", 'content:"ab"; isdataat:!2,relative;'),
    ("tcp", 'content:"ab"; isdataat:5;'),
    ("tcp", 'content:"ab"; isdataat:!5;'),
    ("tcp", 'content:"a"; content:"b"; distance:0; isdataat:!1,relative;'),
    ("http", 'http.uri; content:"ab"; bsize:5;'),
    ("http", 'http.uri; content:"ab"; bsize:>4;'),
    ("http", 'http.uri; bsize:3<>8; content:"b";'),
    ("http", 'http.uri; content:"a"; bsize:<=6; content:"b"; distance:0;'),
    ("tcp", 'pcre:"/a[bc]+a/";'),
    ("tcp", 'content:"a"; pcre:"/^b+/R";'),
    ("tcp", 'content:"a"; pcre:"/b.c/R"; content:"a"; distance:0; within:2;'),
    ("tcp", 'content:"ab"; pcre:!"/c{2}/";'),
    ("tcp", 'content:"ab"; pcre:!"/^c/R";'),
    ("tcp", 'pcre:"/a./"; content:"c"; distance:0; within:1;'),
    ("tcp", 'content:"a"; pcre:"/b*/R"; isdataat:!1,relative;'),   # an empty match at the end counts
    ("tcp", 'content:"a"; pcre:"/b|$/R"; content:"c"; distance:-2; within:2;'),
    ("tcp", 'content:"ab"; byte_test:1,>,0x61,0,relative;'),
    ("tcp", 'content:"a"; byte_jump:1,0,relative; content:"b"; within:2;'),
    ("tcp", 'byte_extract:1,0,n; content:"a"; distance:n;'),    # byte_extract: the interpreter runs it
    ("http", ('http.uri; content:"/a"; startswith; content:"b"; distance:0; content:"c"; distance:0; '
              'content:!"ba"; distance:-4; within:4; isdataat:!1,relative;')),
]


def _lists():
    out = []
    for proto, opts in LISTS:
        rule = parse_rule(f'alert {proto} any any -> any any (msg:"t"; {opts} sid:1;)')
        out.append((opts, rule.buffers[0]))
    return out


PARSED = _lists()
# buffers over a small alphabet (so patterns occur, several times, in both cases) plus random bytes
SMALL = st.lists(st.sampled_from(b"abcABC./"), max_size=40).map(bytes)
BUFFERS = st.one_of(SMALL, st.binary(max_size=40), SMALL.map(lambda b: b * 3))


@settings(max_examples=400, deadline=None)
@given(buf=BUFFERS)
def test_compiled_agrees_with_interpreter(buf):
    for opts, ml in PARSED:
        want = match_generic(ml, buf)
        assert match_list(ml, buf) is want, (opts, buf)
        assert match_list(ml, buf, buf.lower()) is want, (opts, buf)      # lowering passed in


def _all_strings(alphabet: bytes, max_len: int):
    out = [b""]
    level = [b""]
    for _ in range(max_len):
        level = [s + bytes((c,)) for s in level for c in alphabet]
        out.extend(level)
    return out


def test_compiled_agrees_with_interpreter_on_every_short_buffer():
    # exhaustive over small alphabets: every placement of the patterns up to these lengths
    bufs = _all_strings(b"abc", 6) + _all_strings(b"aAbC/.", 4)
    for opts, ml in PARSED:
        fn = compile_list(ml.matches)
        for buf in bufs:
            assert fn(buf, None) is match_generic(ml, buf), (opts, buf)


@settings(max_examples=100, deadline=None)
@given(buf=SMALL)
def test_compiled_agrees_on_bytearray_and_after_other_buffers(buf):
    # the remembered lowering is keyed by the buffer object: a mutable buffer or another buffer in between
    # must not reuse a stale one
    mutable = bytearray(buf)
    for opts, ml in PARSED:
        assert match_list(ml, mutable) is match_generic(ml, mutable), (opts, buf)
        assert match_list(ml, b"ABCABC") is match_generic(ml, b"ABCABC"), opts
        mutable[:] = mutable.swapcase()
        assert match_list(ml, mutable) is match_generic(ml, mutable), (opts, buf)


def test_the_common_shapes_are_compiled_not_interpreted():
    # a single content must not go through the interpreter (that is the point of compiling)
    for opts, ml in PARSED:
        fn = compile_list(ml.matches)
        interpreted = fn.__name__ == "generic"
        assert interpreted is ("byte_extract" in opts), opts


@pytest.mark.parametrize("tail", ["", ' content:"c"; distance:0;'])
def test_retry_budget_is_the_interpreters(tail):
    # every "a" is a candidate for each content: the compiled loops must stop where the interpreter stops,
    # whether its budget runs out at a retry or at the visit of the last keyword (the tail)
    opts = ('content:"a"; content:"a"; distance:0; content:"a"; distance:0; '
            'content:"b"; distance:0; within:1;' + tail)
    ml = parse_rule(f'alert tcp any any -> any any (msg:"t"; {opts} sid:1;)').buffers[0]
    assert compile_list(ml.matches).__name__ != "generic"

    def buf(n: int) -> bytes:
        return b"a" * n + b"bc"

    assert match_list(ml, buf(5)) and match_generic(ml, buf(5))
    # the first length at which the interpreter's budget runs out (about half the limit: each "a" costs a
    # visit and a retry); found by bisection, the answer only turns from True to False as the "a"s grow
    lo, hi = 5, RECURSION_LIMIT
    assert not match_generic(ml, buf(hi))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if match_generic(ml, buf(mid)) else (lo, mid)
    for n in range(hi - 3, hi + 4):
        assert match_list(ml, buf(n)) is match_generic(ml, buf(n)) is (n < hi), n


def test_empty_list_matches_everything():
    ml = MatchList("pkt_data")
    assert match_list(ml, b"") and match_list(ml, b"x") and match_generic(ml, b"")


def test_a_matchlist_with_its_compiled_form_still_pickles_and_compares():
    ml = parse_rule('alert tcp any any -> any any (msg:"t"; content:"a"; nocase; sid:1;)').buffers[0]
    other = parse_rule('alert tcp any any -> any any (msg:"t"; content:"a"; nocase; sid:1;)').buffers[0]
    assert match_list(ml, b"A")
    assert ml.compiled is not None and other.compiled is None
    assert ml == other                       # the compiled form is not part of the identity
    back = pickle.loads(pickle.dumps(ml))
    assert back.compiled is None and back == ml and match_list(back, b"xA")


@pytest.mark.parametrize("opts", [o for o, _ in PARSED])
def test_known_answers(opts):
    # each list is matched by at least one buffer and missed by another: the differential test above
    # compares something that can differ
    ml = dict(PARSED)[opts]
    seen = {match_list(ml, b) for b in (b"", b"abca", b"xabcabx", b"/ab", b"/abcba.ab", b"aab\x62\x61c",
                                          b"a\x02bcb", b"/a.ab.c", b"ABCab", b"abcabcab", b"a" * 8,
                                          b"/abcbac", b"ab", b"/ba", b"ab.ab", b".ab.c", b"abxxxxx",
                                          b"\x01aab", b"cab", b"abccd", b"abcxbac", b"/abcbxa", b"bab",
                                          b"ac", b"abxca", b"./a", b"/.x")}
    assert seen == {True, False}, opts


def test_benchmark_agrees_on_the_et_sample(tmp_path):
    # benchmarks/match_eval on the ET Open sample shipped with the tests: real rules, both evaluators, the
    # same number of matches on every buffer (and it runs)
    from benchmarks import match_eval
    out = tmp_path / "m.json"
    args = [str(match_eval.ET_SAMPLE), "--limit", "400", "--repeats", "1", "--out", str(out)]
    assert match_eval.main(args) == 0
    res = json.loads(out.read_text())
    assert "warning" not in res and res["match_lists"] > 100
    for name, entry in res["match_list"]["buffers"].items():
        assert entry["matched"] == res["match_generic"]["buffers"][name]["matched"], name
    assert res["match_list"]["buffers"]["candidate"]["matched"] > 0
