"""Content inspection semantics (gateway/ids/match.py) against hand-checked Suricata behaviour."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ids.match import RECURSION_LIMIT, apply_transforms, match_list
from gateway.ids.rules import RuleError, parse_rule


def _ml(opts: str, buffer_index: int = 0):
    rule = parse_rule(f'alert tcp any any -> any any (msg:"t"; {opts} sid:1;)')
    return rule.buffers[buffer_index]


def m(opts: str, buf: bytes) -> bool:
    return match_list(_ml(opts), buf)


@pytest.mark.parametrize("opts,buf,want", [
    ('content:"abc";', b"xxabcxx", True),
    ('content:"abc";', b"xxabxcx", False),
    ('content:"ABC"; nocase;', b"xxabcxx", True),
    ('content:"ABC";', b"xxabcxx", False),
    ('content:"|41 42|43";', b"zAB43", True),
    ('content:"|41 42|43";', b"zABC", False),
    # offset/depth: depth counts from offset
    ('content:"abc"; offset:2;', b"xxabc", True),
    ('content:"abc"; offset:3;', b"xxabc", False),
    ('content:"abc"; depth:4;', b"xabcx", True),
    ('content:"abc"; depth:3;', b"xabcx", False),
    ('content:"abc"; offset:1; depth:3;', b"xabcx", True),
    ('content:"abc"; offset:1; depth:3;', b"xxabc", False),
    ('content:"abc"; startswith;', b"abcd", True),
    ('content:"abc"; startswith;', b"xabc", False),
    ('content:"abc"; endswith;', b"xxabc", True),
    ('content:"abc"; endswith;', b"abcx", False),
    # distance/within relative to the end of the previous match
    ('content:"ab"; content:"cd"; distance:0;', b"abcd", True),
    ('content:"ab"; content:"cd"; distance:1;', b"abcd", False),
    ('content:"ab"; content:"cd"; within:2;', b"abcd", True),
    ('content:"ab"; content:"cd"; within:2;', b"abxcd", False),
    ('content:"ab"; content:"cd"; distance:1; within:3;', b"abxcd", True),
    ('content:"cd"; content:"ab"; distance:-4; within:2;', b"abcd", True),
    # negation
    ('content:"abc"; content:!"xyz";', b"abc", True),
    ('content:"abc"; content:!"xyz";', b"abcxyz", False),
    ('content:"abc"; content:!"xyz"; distance:0; within:3;', b"abc___xyz", True),
    ('content:"abc"; content:!"xyz"; distance:0; within:3;', b"abcxyz", False),
])
def test_content_modifiers(opts, buf, want):
    assert m(opts, buf) is want


def test_backtracking_retries_earlier_content_at_next_occurrence():
    # the first "thus" is not followed by "is" within 6; the second one is (Suricata UriTestSig20)
    opts = 'content:"thus"; offset:8; content:"is"; within:6; content:"big"; within:8;'
    assert m(opts, b"/_________thus_thus_is_a_big")
    assert not m(opts, b"/_________thus_thus_xx_a_big")


def test_no_backtracking_through_an_absolute_content():
    # "b" is absolute: moving "a" cannot help, and "b" is simply present or not
    assert m('content:"a"; content:"b"; content:"c"; distance:0;', b"a..b..c")
    assert not m('content:"a"; content:"zz"; content:"c"; distance:0;', b"a..b..c")


def test_isdataat():
    assert m('content:"ab"; isdataat:2,relative;', b"abxx")
    assert not m('content:"ab"; isdataat:3,relative;', b"abxx")
    assert m('content:"ab"; isdataat:!3,relative;', b"abxx")
    assert m('content:"ab"; isdataat:3;', b"abxx")
    assert not m('content:"ab"; isdataat:4;', b"abxx")
    # backtracking to the occurrence that leaves no data after it
    assert m('content:"fix"; isdataat:!4,relative;', b"fix_long_tail fix_x")


def test_pcre_plain_relative_and_negated():
    assert m('pcre:"/a[0-9]+b/";', b"xxa123b")
    assert not m('pcre:"/a[0-9]+b/";', b"xxab")
    assert m('pcre:"/A1B/i";', b"a1b")
    assert m('content:"GET"; pcre:"/^ \\/x/R";', b"GET /x")
    assert not m('content:"GET"; pcre:"/^\\/x/R";', b"GET /x")
    assert m('content:"a"; pcre:!"/zz/";', b"a")
    assert not m('content:"a"; pcre:!"/zz/";', b"azz")


def test_byte_test_binary_string_bitmask_and_relative():
    assert m('byte_test:2,=,258,0;', b"\x01\x02")
    assert m('byte_test:2,=,513,0,little;', b"\x01\x02")
    assert m('byte_test:2,>,10,1,relative; content:"x";', b"x\x00\x00\x00\x20") is False
    assert m('content:"x"; byte_test:2,>,10,1,relative;', b"x\x00\x00\x20")
    assert m('byte_test:3,=,123,0,string,dec;', b"123")
    assert m('byte_test:2,=,0x1f,0,string,hex;', b"1f")
    assert not m('byte_test:3,=,123,0,string,dec;', b"12x")
    assert m('byte_test:1,=,0x07,0,bitmask 0xF8;', b"\x38")     # (0x38 & 0xf8) >> 3 == 7
    assert m('byte_test:1,!=,5,0;', b"\x06")
    assert m('byte_test:1,&,4,0;', b"\x06") and not m('byte_test:1,&,1,0;', b"\x06")
    assert not m('byte_test:4,=,1,0;', b"\x00\x01")            # not enough data


def test_byte_jump_and_extract():
    # length byte 3 at offset 0: jump over 3 bytes after it, then "X" must follow directly
    assert m('byte_jump:1,0; content:"X"; within:1;', b"\x03abcX")
    assert not m('byte_jump:1,0; content:"X"; within:1;', b"\x02abcX")
    assert m('byte_jump:1,0,from_beginning; content:"X"; within:1;', b"\x04abcX")
    assert m('byte_jump:1,0,multiplier 2; content:"X"; within:1;', b"\x02abcdX")
    assert m('byte_jump:1,0,align; content:"X"; within:1;', b"\x01abcdX")   # 1 -> 4
    assert not m('byte_jump:1,0;', b"\x09ab")                               # beyond the buffer
    assert m('byte_extract:1,0,len; content:"X"; distance:len; within:1;', b"\x02abX")
    assert not m('byte_extract:1,0,len; content:"X"; distance:len; within:1;', b"\x01abX")
    # the digit read right after "this_" sets the distance for "ring" (11 = 6 + 5)
    opts = 'content:"this"; byte_extract:1,1,one,string,dec,relative; content:"ring"; distance:one; within:4;'
    assert m(opts, b"this_5_a_string")
    assert not m(opts, b"this_4_a_string")


def test_bsize():
    rule = parse_rule('alert http any any -> any any (http.uri; bsize:4; sid:1;)')
    assert match_list(rule.buffers[0], b"/abc")
    assert not match_list(rule.buffers[0], b"/abcd")


def test_transforms():
    assert apply_transforms(b"Ex.COM", ("dotprefix", "to_lowercase")) == b".ex.com"
    assert apply_transforms(b" a\tb\r\n", ("strip_whitespace",)) == b"ab"


def test_work_is_bounded():
    # every "a" is a candidate and nothing ever completes: the retry budget must stop it
    opts = 'content:"a"; content:"a"; distance:0; content:"a"; distance:0; content:"b"; distance:0; within:1;'
    assert RECURSION_LIMIT <= 10000
    assert not m(opts, b"a" * 5000)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_never_raises_on_arbitrary_buffers(buf):
    for opts in ('content:"ab"; byte_jump:2,0,relative,little; isdataat:1,relative;',
                 'byte_extract:2,1,n; content:"x"; distance:n; byte_test:1,>,3,0,relative;',
                 'pcre:"/a.b/s"; content:!"zz"; distance:0;'):
        m(opts, buf)


def test_content_search_agrees_with_python_find():
    # single content with offset/depth: the engine must agree with a plain slice search
    import random
    rnd = random.Random(7)
    for _ in range(300):
        buf = bytes(rnd.choice(b"abc") for _ in range(rnd.randint(0, 30)))
        pat = bytes(rnd.choice(b"abc") for _ in range(rnd.randint(1, 3)))
        off = rnd.randint(0, 10)
        depth = rnd.randint(len(pat), 15)
        opts = f'content:"{pat.decode()}"; offset:{off}; depth:{depth};'
        assert m(opts, buf) is (pat in buf[off:off + depth]), (opts, buf)


def test_byte_test_and_byte_jump_take_their_byte_count_from_byte_extract():
    # suricata-verify detect-bytetest-04 / detect-bytejump-02: nbytes named by a byte_extract variable
    r = parse_rule('alert tcp any any -> any any (byte_extract:1,0,n; byte_test:n,=,0x0102,1; sid:1;)')
    (ml,) = r.buffers
    assert match_list(ml, b"\x02\x01\x02")                 # reads 2 bytes at 1: 0x0102
    assert not match_list(ml, b"\x01\x01\x02")             # reads 1 byte: 0x01
    assert not match_list(ml, b"\x09" + bytes(9))          # 9 bytes: more than byte_test reads, no match
    r = parse_rule('alert tcp any any -> any any (byte_extract:1,0,n; byte_jump:n,1; content:"Z"; within:1; '
               'sid:2;)')
    (ml,) = r.buffers
    assert match_list(ml, b"\x01\x02..Z")                  # jumps 2 after the 1-byte count at 1
    assert match_list(ml, b"\x00Z")                       # a count of 0 reads nothing and jumps 0
    assert not match_list(ml, b"\x01\x02.Z.")
    with pytest.raises(RuleError, match="unknown byte_extract variable"):
        parse_rule('alert tcp any any -> any any (byte_test:n,=,1,0; sid:3;)')
