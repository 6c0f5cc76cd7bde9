"""Fuzzing the rule parser: whatever the text, parse_rule returns a Rule or raises RuleError - nothing else."""
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ids import RuleError, parse_rule
from gateway.ids.model import Rule
from gateway.ids.rules import iter_rule_lines
from tests.test_rules_loader import check_invariants

ET_SAMPLE = Path(__file__).parent / "data" / "rules" / "et-open-sample"
SEEDS = [text for f in sorted(ET_SAMPLE.glob("*.rules"))
         for _, text, commented in iter_rule_lines(f.read_text(errors="surrogateescape")) if not commented][:400]

FRAGMENTS = ['content:"', '|', '"', ";", ":", "\\", "!", ",", "(", ")", "[", "]", "$HOME_NET", "any", "->", "<>",
             "http.uri;", "http_uri;", "pcre:\"/", "/Ri\";", "byte_test:4,>,1,0,relative;", "distance:",
             "within:", "depth:", "offset:", "fast_pattern:", "only", "nocase;", "flowbits:", "dotprefix;",
             "byte_extract:2,0,v;", "isdataat:!", "requires:", "version", "feature", ">=", "<", "7.0.3", "|",
             "base64_decode:", "base64_decode;", "base64_data;", "bytes 10,", "offset 0,", "relative",
             "sid:", "1", "0", "-1", "65536", "999999999999999999999",
             "\x00", "\xff", " ", "\t", "\n", "é"]


def check(text: str) -> None:
    try:
        result = parse_rule(text, file="fuzz.rules", line=1)
    except RuleError as e:
        assert e.reason and isinstance(e.reason, str)
        return
    assert isinstance(result, Rule)
    check_invariants(result)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text(text):
    check(text)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_rule_shaped_fragments(body):
    check(f"alert tcp any any -> any any ({body}")
    check(f"alert http any any -> any any ({body} sid:1;)")


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_et_rules(seed, data):
    text = seed
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        frag = data.draw(st.sampled_from(FRAGMENTS) | st.text(max_size=3))
        if op == "insert":
            text = text[:pos] + frag + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 8)):]
        else:
            text = text[:pos] + frag + text[pos + len(frag):]
    check(text)


def test_seeds_parse():
    assert len(SEEDS) >= 300
    for text in SEEDS:
        check(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["version", "feature", " ", ">=", ">", "<=", "<", "=", "==", "7", ".", "0", "3",
                                 "8", "|", ",", "geoip", "x", "99999999999"]), max_size=20).map("".join))
def test_requires_values(value):
    # the requires check answers met (None), unmet (a reason) or malformed (RuleError), whatever the value
    from gateway.ids.requires import unmet
    try:
        why = unmet(value)
    except RuleError as e:
        assert e.reason.startswith("requires:")
        return
    assert why is None or why.startswith("requires:")
