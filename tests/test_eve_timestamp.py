"""eve_timestamp keeps the last second's date and time: it must give exactly what datetime gives, including the
microsecond rounding at a second's edge and timestamps that go back in time (pcaps out of order)."""
from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from gateway.events import eve_timestamp


def _reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


@pytest.mark.parametrize("ts", [0.0, 1e-7, 0.9999995, 0.9999994, 1_700_000_000.0, 1_700_000_000.9999995,
                                1_700_000_000.0000005, 1_700_000_000.4999995, 86_399.9999999, 1_711_929_600.5])
def test_edges_match_datetime(ts):
    assert eve_timestamp(ts) == _reference(ts)


def test_runs_back_and_forth_match_datetime():
    rnd = random.Random(7)
    stamps = [1_700_000_000 + i * 0.137 for i in range(2000)]          # a capture, seconds rolling over
    stamps += [1_700_000_000 + rnd.random() * 5e5 for _ in range(5000)]  # out of order, days apart
    stamps += [1_700_000_000.5, 1_699_999_999.5, 1_700_000_000.5]          # back one second and forward again
    assert [eve_timestamp(t) for t in stamps] == [_reference(t) for t in stamps]
