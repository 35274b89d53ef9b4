"""Pure rules of sensor states."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from besmart_server.server.states.rules import (
    Period,
    first_overlap,
    is_ordered,
    overlap,
)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(Period(0, 10), Period(10, 20), False, id="touching"),
        pytest.param(Period(0, 10), Period(9, 20), True, id="one-ms-shared"),
        pytest.param(Period(0, 10), Period(20, 30), False, id="apart"),
        pytest.param(Period(0, 30), Period(10, 20), True, id="contains"),
        pytest.param(Period(0, None), Period(100, 200), True, id="open-covers-later"),
        pytest.param(Period(100, None), Period(0, 100), False, id="open-after-closed"),
        pytest.param(Period(100, None), Period(0, 101), True, id="open-starts-inside"),
        pytest.param(Period(0, None), Period(5, None), True, id="two-open"),
        pytest.param(Period(5, 6), Period(5, 6), True, id="same"),
    ],
)
def test_overlap(a: Period, b: Period, expected: bool) -> None:
    assert overlap(a, b) is expected
    assert overlap(b, a) is expected


def _instants(p: Period, horizon: int) -> set[int]:
    return set(range(p.since, horizon if p.till is None else p.till))


periods = st.builds(
    lambda since, length: Period(since, None if length is None else since + length),
    st.integers(0, 40),
    st.one_of(st.none(), st.integers(1, 40)),
)


@given(periods, periods)
def test_overlap_means_a_shared_instant(a: Period, b: Period) -> None:
    # Reference: enumerate the instants; open ends reach past every possible start.
    assert overlap(a, b) == bool(_instants(a, 100) & _instants(b, 100))


def test_first_overlap_is_the_earliest_clash() -> None:
    others = [Period(50, 60, id=3), Period(0, 10, id=1), Period(20, 30, id=2)]
    assert first_overlap(Period(5, 55), others) == Period(0, 10, id=1)
    assert first_overlap(Period(10, 20), others) is None
    assert first_overlap(Period(60, None), others) is None
    assert first_overlap(Period(59, None), others) == Period(50, 60, id=3)


@pytest.mark.parametrize(
    ("since", "till", "ok"),
    [(0, 1, True), (5, 5, False), (6, 5, False), (5, None, True)],
)
def test_is_ordered(since: int, till: int | None, ok: bool) -> None:
    assert is_ordered(since, till) is ok
