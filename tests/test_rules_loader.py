"""Rule files -> RuleSet, and `gateway rules check` (gateway/ids/rules.py load_rules, gateway/ids/check.py)."""
import json
from pathlib import Path

import pytest

from gateway.cli import main as cli_main
from gateway.ids import RuleFileError, Variables, load_rules
from gateway.ids.classification import ClassificationError, parse_classifications
from gateway.ids.keywords import BUFFERS
from gateway.ids.model import Base64Decode, ContentMatch

DATA = Path(__file__).parent / "data" / "rules"
ET_SAMPLE = DATA / "et-open-sample"
ET_FULL = Path(__file__).resolve().parents[1].parent / "shared" / "rulesets" / "et-open-2024"

GOOD = 'alert tcp any any -> any any (msg:"good {n}"; content:"x{n}"; sid:{n}; rev:1;)'


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_file_loading_comments_continuations_duplicates(tmp_path):
    f = write(tmp_path, "a.rules", "\n".join([
        "# a plain comment",
        "",
        GOOD.format(n=1),
        '# alert tcp any any -> any any (msg:"disabled"; content:"y"; sid:2;)',
        '#alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"disabled too"; sid:3;)',
        'alert tcp any any -> any any (msg:"multi"; \\',
        '    content:"abc"; \\',
        '    sid:4;)',
        'alert tcp any any -> any any (msg:"broken"; frobnicate; sid:5;)',
        GOOD.format(n=6),
        'alert tcp any any -> any any (msg:"dup of 1"; content:"z"; sid:1;)',
        'alert tcp any any -> any any (msg:"same sid, other gid"; content:"z"; sid:1; gid:3;)',
        "not a rule at all",
    ]) + "\n")
    rs = load_rules([f])
    assert [r.sid for r in rs.rules] == [1, 4, 6, 1]
    assert rs.rules[1].line == 6 and rs.rules[1].msg == "multi"
    assert rs.commented == 2
    rej = {(r.line, r.sid): r for r in rs.rejected}
    assert rej[(9, 5)].reason == "unsupported keyword: frobnicate"
    assert rej[(11, 1)].reason == "duplicate sid" and "a.rules:3" in rej[(11, 1)].detail
    assert rej[(13, None)].file == str(f)
    assert rs.reasons() == {"duplicate sid": 1, "rule must be 'header (options)'": 1,
                            "unsupported keyword: frobnicate": 1}


def test_a_single_path_is_one_file(tmp_path):
    f = write(tmp_path, "one.rules", GOOD.format(n=9) + "\n")
    assert [r.sid for r in load_rules(f).rules] == [9]
    assert [r.sid for r in load_rules(str(f)).rules] == [9]


def test_duplicates_across_files(tmp_path):
    a = write(tmp_path, "a.rules", GOOD.format(n=7) + "\n")
    b = write(tmp_path, "b.rules", GOOD.format(n=7) + "\n")
    rs = load_rules([a, b])
    assert len(rs.rules) == 1 and rs.rejected[0].file == str(b)


def test_unreadable_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(RuleFileError, match="missing.rules"):
        load_rules([tmp_path / "missing.rules"])


def test_variables_come_from_config_values(tmp_path):
    f = write(tmp_path, "v.rules", 'alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (content:"x"; sid:1;)\n')
    rs = load_rules([f], Variables({"HOME_NET": "[10.10.0.0/16]"}, {"HTTP_PORTS": "[80,8080]"}))
    r = rs.rules[0]
    assert r.src.contains(bytes([10, 10, 1, 1])) and not r.src.contains(bytes([10, 11, 1, 1]))
    assert r.dst.contains(bytes([10, 11, 1, 1])) and r.dport.contains(8080)


def test_classification_parsing_errors():
    c = parse_classifications("config classification: a-b,Some, thing,2\n# c\n")
    assert c["a-b"].description == "Some, thing" and c["a-b"].priority == 2
    with pytest.raises(ClassificationError, match="x.config:1"):
        parse_classifications("config classification: a,b,high\n", "x.config")
    with pytest.raises(ClassificationError, match="expected"):
        parse_classifications("classification a,b,1\n")


# ---------------------------------------------------------------------------------------- ET Open sample

def test_et_sample_loads_everything_but_the_known_rejections():
    files = sorted(ET_SAMPLE.glob("emerging-*.rules"))
    rs = load_rules(files)
    assert len(rs.rules) >= 300 and rs.commented > 0
    assert rs.rejected == [], rs.rejected[:5]
    # the sample covers the parts detection needs
    buffers = {ml.buffer for r in rs.rules for ml in r.buffers}
    assert {"pkt_data", "http.uri", "http.host", "dns.query", "tls.sni", "ja3.hash"} <= buffers
    assert all(r.fast_pattern is not None for r in rs.rules if any(ml.matches for ml in r.buffers)
               and any(m.__class__.__name__ == "ContentMatch" for ml in r.buffers for m in ml.matches))


def test_et_rejections_have_reasons():
    rs = load_rules([ET_SAMPLE / "rejected-by-gateway.rules"])
    assert rs.rules == []
    reasons = rs.reasons()
    assert reasons["unsupported protocol: ftp-data"] == 1
    assert not any("smtp" in reason.lower() for reason in reasons)     # SMTP file.data loads now
    assert all(r.sid is not None and r.line > 0 for r in rs.rejected)


@pytest.mark.skipif(not ET_FULL.is_dir(), reason="full ET Open ruleset not present (../shared/rulesets)")
def test_full_et_open_loads_at_least_95_percent():
    rs = load_rules(sorted(ET_FULL.glob("*.rules")))
    total = len(rs.rules) + len(rs.rejected)
    assert total > 20000
    assert len(rs.rules) / total >= 0.95, rs.reasons()


# ---------------------------------------------------------------------------------- gateway rules check

def test_check_cli_json(tmp_path, capsys):
    f = write(tmp_path, "c.rules", GOOD.format(n=1) + "\nalert tcp any any -> any any (asn1:x; sid:2;)\n"
              + '# alert tcp any any -> any any (content:"q"; sid:3;)\n')
    assert cli_main(["rules", "check", "--json", str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["loaded"] == 1 and out["rejected"] == 1 and out["commented"] == 1
    assert out["reasons"] == {"unsupported keyword: asn1": 1}
    assert out["rejected_rules"] == [{"file": str(f), "line": 2, "sid": 2,
                                      "reason": "unsupported keyword: asn1", "detail": ""}]


def test_check_cli_text_and_errors(tmp_path, capsys):
    f = write(tmp_path, "c.rules", "alert tcp any any -> any any (asn1:x; sid:2;)\n")
    assert cli_main(["rules", "check", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"{f}:1: sid 2: unsupported keyword: asn1" in out and "loaded 0" in out and "rejected 1" in out
    assert cli_main(["rules", "check", str(tmp_path / "nope.rules")]) == 2
    assert "nope.rules" in capsys.readouterr().err


def test_check_cli_uses_config_vars(tmp_path, capsys):
    cfg = write(tmp_path, "gw.toml", '[vars]\nHOME_NET = "[10.10.0.0/16]"\nMY_PORTS = "[1,2"\n')
    f = write(tmp_path, "c.rules", GOOD.format(n=1) + "\n")
    assert cli_main(["rules", "check", "--config", str(cfg), str(f)]) == 2
    assert "$MY_PORTS" in capsys.readouterr().err
    cfg.write_text('[vars]\nHOME_NET = "[10.10.0.0/16]"\n')
    assert cli_main(["rules", "check", "--config", str(cfg), str(f)]) == 0


def test_continuations_follow_suricata(tmp_path):
    lines = [
        '# a comment ending in a backslash does not swallow the next line \\',
        'alert tcp any any -> any any (msg:"a"; \\   ',
        'content:"x  \\',
        '  y"; sid:1;)',
        '   alert tcp any any -> any any (msg:"indented"; sid:2;)',
    ]
    f = write(tmp_path, "c.rules", "\n".join(lines) + "\n")
    rs = load_rules([f])
    assert [r.sid for r in rs.rules] == [1, 2]
    assert rs.rules[0].buffers[0].matches[0].pattern == b"x    y"     # the next line is appended as it is
    assert rs.rules[0].line == 2


def check_invariants(r) -> None:
    """Structural promises of the model (model.py docstring) that the engine relies on."""
    contents = [(li, mi, m) for li, ml in enumerate(r.buffers) for mi, m in enumerate(ml.matches)
                if isinstance(m, ContentMatch)]
    chosen = [m for _, _, m in contents if m.fast_pattern]
    assert len(chosen) == (1 if contents else 0), r.sid
    for ml in r.buffers:
        assert ml.buffer in BUFFERS and ml.matches, r.sid
        if BUFFERS[ml.buffer].app_proto:
            assert r.app_proto == BUFFERS[ml.buffer].app_proto, r.sid
        # base64_decode ends its list and holds the base64_data matches, which are never a fast pattern
        for m in ml.matches:
            if type(m) is Base64Decode:
                assert m is ml.matches[-1] and m.data.matches, r.sid
                assert not any(type(d) is ContentMatch and d.fast_pattern for d in m.data.matches), r.sid
    fp = r.fast_pattern
    if fp is None:
        return
    m = r.buffers[fp.list_index].matches[fp.match_index]
    assert m is chosen[0]
    assert (fp.buffer, fp.transforms) == (r.buffers[fp.list_index].buffer, r.buffers[fp.list_index].transforms)
    assert fp.pattern in m.pattern and fp.nocase == m.nocase and fp.negated == m.negated
    # nothing at a better priority (or longer at the same priority) was passed over
    if not m.explicit_fast_pattern and not m.negated:
        best = BUFFERS[fp.buffer].priority
        for li, _, c in contents:
            if c.negated:
                continue
            p = BUFFERS[r.buffers[li].buffer].priority
            assert p > best or (p == best and len(c.pattern) <= len(m.pattern)), r.sid


def test_model_invariants_on_the_et_sample():
    rs = load_rules(sorted(ET_SAMPLE.glob("emerging-*.rules")))
    assert len(rs.rules) > 300
    for r in rs.rules:
        check_invariants(r)


def test_undecodable_bytes_keep_content_and_give_printable_text(tmp_path, capsys):
    f = tmp_path / "bin.rules"
    f.write_bytes(b'alert tcp any any -> any any (msg:"caf\xe9"; content:"\xff\xfe"; sid:1;)\n'
                  b'alert tcp any any -> any any (msg:"x"; bad\xff; sid:2;)\n')
    rs = load_rules([f])
    r = rs.rules[0]
    assert r.buffers[0].matches[0].pattern == b"\xff\xfe"          # exact bytes
    assert r.msg == "caf\ufffd" and r.msg.encode("utf-8")
    assert rs.rejected[0].reason == "unsupported keyword: bad\ufffd"
    assert cli_main(["rules", "check", str(f)]) == 0
    assert "bad\ufffd" in capsys.readouterr().out
