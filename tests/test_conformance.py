"""suricata-verify conformance, replay mode: every test copied into tests/data/suricata-verify/ must pass.

The copied tests are the ones the engine passes (`python -m tests.conformance CORPUS --copy-passing
tests/data/suricata-verify`); the ones it does not pass yet are listed with reasons in
tests/data/suricata-verify/EXPECTED_FAILURES.md. Replays run in-process (no subprocess per test).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance import event_matches, find_tests, run_test

DATA = Path(__file__).parent / "data" / "suricata-verify"
TESTS = find_tests([str(DATA)]) if DATA.is_dir() else []


@pytest.fixture(autouse=True, scope="module")
def _no_hs_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GATEWAY_HS_CACHE", str(tmp_path_factory.mktemp("hs")))
    yield
    mp.undo()


def test_corpus_copied():
    assert len(TESTS) >= 250, "the copied suricata-verify subset is missing"
    assert (DATA / "LICENSE.txt").is_file()


@pytest.mark.parametrize("test_dir", TESTS, ids=[t.name for t in TESTS])
def test_suricata_verify(test_dir):
    ok, failures = run_test(test_dir)
    assert ok, "\n".join(failures)


def test_check_matching_semantics():
    ev = {"event_type": "alert", "alert": {"signature_id": 3}, "vlan": [5], "files": [{"filename": "a.jpg"}]}
    assert event_matches(ev, {"event_type": "alert", "alert.signature_id": 3})
    assert not event_matches(ev, {"alert.signature_id": 4})
    assert event_matches(ev, {"vlan[0]": 5, "files[0].filename": "a.jpg"})
    assert event_matches(ev, {"has-key": "alert"}) and not event_matches(ev, {"has-key": "http"})
    assert event_matches(ev, {"not-has-key": "http"}) and not event_matches(ev, {"not-has-key": "alert"})
    assert not event_matches(ev, {"vlan[1]": 5})
