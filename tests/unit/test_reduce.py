"""signals.reduce: min/max per bucket against a plain per-bucket reference, counter energy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from besmart_server.server.signals import reduce


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 9_999), min_size=1, max_size=400, unique=True),
    st.integers(2, 60),
    st.data(),
)
def test_minmax_keeps_each_buckets_extremes_at_their_times(
    times: list[int], max_points: int, data: st.DataObject
) -> None:
    t = np.array(sorted(times), dtype=np.int64)
    v = np.array(
        data.draw(st.lists(st.floats(-1e6, 1e6), min_size=len(t), max_size=len(t))), np.float64
    )
    got = reduce.minmax(t, v, since=0, till=10_000, max_points=max_points)
    assert np.all(np.diff(got.time) >= 0)
    if len(t) <= max_points:
        assert got.time.tolist() == t.tolist()
        return
    assert len(got.time) <= max_points
    pairs = set(zip(t.tolist(), v.tolist(), strict=True))
    assert all(p in pairs for p in zip(got.time.tolist(), got.value.tolist(), strict=True))
    buckets = max_points // 2
    gid = (t * buckets) // 10_000
    for g in np.unique(gid):
        sel = gid == g
        assert v[sel].min() in got.value
        assert v[sel].max() in got.value
    assert got.value.max() == v.max()
    assert got.value.min() == v.min()


def test_minmax_drops_nans() -> None:
    t = np.arange(10, dtype=np.int64)
    v = np.array([1, np.nan, 3, 4, 5, 6, 7, 8, 9, 10], np.float64)
    got = reduce.minmax(t, v, since=0, till=10, max_points=100)
    assert 1 not in got.time.tolist()
    assert not np.isnan(got.value).any()


@pytest.mark.parametrize(
    ("native_min", "window_h", "buckets", "want_min"),
    [
        pytest.param(15, 24, 1000, 15, id="day-of-15-min-readings"),
        pytest.param(1, 24, 1000, 5, id="day-of-1-min-readings-1000-buckets"),
        pytest.param(1, 24 * 365, 1000, 720, id="year-1000-buckets"),
        pytest.param(15, 24 * 7, 2000, 15, id="week"),
    ],
)
def test_energy_step_is_no_finer_than_readings_nor_window(
    native_min: int, window_h: int, buckets: int, want_min: int
) -> None:
    t = np.arange(0, window_h * 3_600_000, native_min * 60_000, dtype=np.int64)
    step = reduce.energy_step_ms(t, since=0, till=window_h * 3_600_000, max_buckets=buckets)
    assert step == want_min * 60_000


def test_interval_energy_differences_the_interpolated_register() -> None:
    t = np.array([0, 30, 60, 120], dtype=np.int64)
    r = np.array([0.0, 3.0, 6.0, 6.0])
    got = reduce.interval_energy(t, r, since=0, till=120, step_ms=60)
    assert got.time.tolist() == [0, 60]
    assert got.value.tolist() == [6.0, 0.0]
    # no extrapolation beyond the readings
    got = reduce.interval_energy(t[:2], r[:2], since=0, till=120, step_ms=60)
    assert len(got.time) == 0


def test_energy_buckets_stay_within_max_buckets_beyond_a_week() -> None:
    """Past the largest step (a week) whole weeks: a century at 1000 buckets is 1000 buckets
    at most, not 5,200 weeks; the whole time range in one bucket is a step near 2**63."""
    week = 10_080 * 60_000
    century = 100 * 365 * 86_400_000
    t = np.array([0, century], dtype=np.int64)
    step = reduce.energy_step_ms(t, since=0, till=century, max_buckets=1000)
    assert step % week == 0
    assert century / step <= 1000
    lo, hi = -(2**62), 2**62
    step = reduce.energy_step_ms(t, since=lo, till=hi, max_buckets=1)
    assert step >= hi - lo
    got = reduce.interval_energy(t, np.array([0.0, 1.0]), since=lo, till=hi, step_ms=step)
    assert len(got.time) == 0  # one bucket, its edges beyond the readings: nothing drawn


def test_interval_energy_reads_only_the_edges_within_the_readings() -> None:
    """Edges are counted from `since` but only those inside the readings are made: a window
    over the whole time range costs what the readings span, not 2**63 / step edges."""
    t = np.array([1_000, 5_000], dtype=np.int64)
    got = reduce.interval_energy(
        t, np.array([0.1, 0.5]), since=-(2**62) + 904, till=2**62, step_ms=1_000
    )  # since a whole second: edges at whole seconds
    assert got.time.tolist() == [1_000, 2_000, 3_000, 4_000]
    assert got.value.tolist() == [0.1, 0.1, 0.1, 0.1]  # rounded: 0.2 - 0.1 is not 0.1 in binary


def test_minmax_buckets_of_the_whole_time_range() -> None:
    """Bucket edges of a window of centuries (k * (till - since) beyond int64) are exact."""
    t = np.array([-(2**61), -5, 0, 5, 2**61], dtype=np.int64)
    v = np.array([1.0, 5.0, -3.0, 2.0, 4.0])
    got = reduce.minmax(t, v, since=-(2**62), till=2**62, max_points=4)
    # Two buckets, [-2**62, 0) and [0, 2**62): each one's min and max at their own times.
    assert got.time.tolist() == [-(2**61), -5, 0, 2**61]
    assert got.value.tolist() == [1.0, 5.0, -3.0, 4.0]


def test_hour_edges_are_whole_hours_from_the_hour_at_or_before_since() -> None:
    hour = 3_600_000
    edges = reduce.hour_edges(hour + 5, 11 * hour, 4)
    assert edges is not None
    assert edges.tolist() == [hour, 4 * hour, 7 * hour, 10 * hour, 13 * hour]
    assert reduce.hour_edges(0, 3 * hour, 4) is None  # buckets under an hour: equal ones


@pytest.mark.parametrize(
    ("since", "till"),
    [(-(2**71), 2**55), (-(2**63), 0), (0, 2**63 + 1), (-(2**62), 2**62)],
)
def test_hour_edges_beyond_int64_fall_back_to_equal_buckets(since: int, till: int) -> None:
    """A window beyond what int64 holds (the route answers 422 when it reads) gets no hour
    edges instead of an overflow (a fuzzed `since` of -2.5e21 once answered 500)."""
    edges = reduce.hour_edges(since, till, 1000)
    assert edges is None or (edges[0] >= -(2**63) and edges[-1] >= till)
