"""Pure rules of sensor states and the sensor tree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from besmart_server.server.states.rules import (
    Period,
    creates_cycle,
    first_overlap,
    in_force,
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


@pytest.mark.parametrize(
    ("period", "at", "expected"),
    [
        (Period(10, 20), 10, True),
        (Period(10, 20), 19, True),
        (Period(10, 20), 20, False),
        (Period(10, 20), 9, False),
        (Period(10, None), 10**15, True),
    ],
)
def test_in_force_is_half_open(period: Period, at: int, expected: bool) -> None:
    assert in_force(period, at) is expected


# A tree: 1 is the root; 2 and 3 below it; 4 below 2.
TREE = {1: None, 2: 1, 3: 1, 4: 2}


@pytest.mark.parametrize(
    ("node", "parent", "expected"),
    [
        pytest.param(1, 4, True, id="root-under-grandchild"),
        pytest.param(2, 4, True, id="under-own-child"),
        pytest.param(2, 2, True, id="self"),
        pytest.param(4, 3, False, id="move-to-sibling-branch"),
        pytest.param(3, 4, False, id="under-cousin"),
        pytest.param(5, 4, False, id="new-leaf"),
    ],
)
def test_creates_cycle(node: int, parent: int, expected: bool) -> None:
    assert creates_cycle(node, parent, TREE.get) is expected


def test_existing_loop_above_does_not_hang() -> None:
    broken = {1: 2, 2: 1, 3: None}
    assert creates_cycle(3, 1, broken.get) is False
    assert creates_cycle(1, 2, broken.get) is True
