"""The read pipeline against hand-computed cases and a plain-loop reference implementation."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from besmart_server.server.signals.calendar import Buckets
from besmart_server.server.signals.catalog import SeriesKind, unit_by_symbol
from besmart_server.server.signals.pipeline import (
    Frame,
    Overflow,
    Plan,
    StatePeriod,
    aggregate,
    apply_multiplier,
    clip_window,
    concat,
    latest_versions,
    missing_swap_ends,
    round_significant,
    run,
    sort_versions,
    stitch,
    stitch_shifts,
)
from besmart_server.wire import TYPE_CODES, TYPE_DBL, TYPE_INT, TYPE_NAMES, TYPE_RM, TYPE_STR

M = 60_000  # one minute in ms
NAN = math.nan
FAST = settings(max_examples=200, deadline=None)


class P(NamedTuple):
    """One point as plain Python values."""

    time: int
    origin: int
    acq: int
    type: int
    value: float


def frame(points: Sequence[P], text: Sequence[str | None] | None = None) -> Frame:
    return Frame.from_columns(
        [p.time for p in points],
        [p.origin for p in points],
        [p.acq for p in points],
        [p.type for p in points],
        [p.value for p in points],
        text,
    )


def rows(f: Frame) -> list[P]:
    return [
        P(int(t), int(o), int(a), int(k), float(v))
        for t, o, a, k, v in zip(f.time, f.origin, f.acq, f.type, f.value, strict=True)
    ]


def assert_same_points(got: Sequence[P], want: Sequence[P]) -> None:
    """Same keys exactly, values equal within float rounding (NaN equals NaN)."""
    assert [(p.time, p.origin, p.acq, p.type) for p in got] == [
        (p.time, p.origin, p.acq, p.type) for p in want
    ]
    for g, w in zip(got, want, strict=True):
        if math.isnan(w.value):
            assert math.isnan(g.value), (g, w)
        else:
            assert math.isclose(g.value, w.value, rel_tol=1e-9, abs_tol=1e-6), (g, w)


# ---------------------------------------------------------------- reference implementations


def ref_latest(points: Sequence[P]) -> list[P]:
    newest: dict[tuple[int, int], P] = {}
    for p in points:
        key = (p.time, p.origin)
        if key not in newest or p.acq > newest[key].acq:
            newest[key] = p
    kept = [p for p in newest.values() if p.type != TYPE_RM]
    return sorted(kept, key=lambda p: (p.time, p.origin))


def ref_period(t: int, periods: Sequence[StatePeriod]) -> StatePeriod | None:
    for p in periods:
        if p.since <= t and (p.till is None or t < p.till):
            return p
    return None


def ref_shift(period: StatePeriod, periods: Sequence[StatePeriod]) -> float:
    """offset - f*vfs, the offset summed explicitly over the earlier meters with a signal state."""
    if period.value_for_since is None:
        return 0.0
    known = sorted((p for p in periods if p.value_for_since is not None), key=lambda p: p.since)
    first = known[0]
    assert first.value_for_since is not None
    offset = first.factor * first.value_for_since
    for q in known:
        if q.since >= period.since:
            break
        assert q.value_for_since is not None
        end = q.value_for_till if q.value_for_till is not None else q.value_for_since
        offset += q.factor * (end - q.value_for_since)
    return offset - period.factor * period.value_for_since


def ref_multiply_and_stitch(points: Sequence[P], periods: Sequence[StatePeriod]) -> list[P]:
    out = []
    for p in points:
        period = ref_period(p.time, periods)
        if period is None:
            out.append(p)
        else:
            value = p.value * period.factor + ref_shift(period, periods)
            out.append(p._replace(value=value))
    return out


def ref_aggregate(
    points: Sequence[P], *, delta_t_minutes: int, kind: SeriesKind, since: int, till: int
) -> list[P]:
    step = delta_t_minutes * M
    numeric = [p for p in points if p.type in (TYPE_DBL, TYPE_INT)]
    out: list[P] = []
    if kind == SeriesKind.CUMULATIVE:
        for origin in sorted({p.origin for p in numeric}):
            readings: dict[int, P] = {}
            for p in numeric:
                if p.origin == origin and (p.time not in readings or p.acq > readings[p.time].acq):
                    readings[p.time] = p
            g = since
            while g % step != 0:
                g += 1
            while g < till:
                before = [t for t in readings if t <= g]
                after = [t for t in readings if t >= g]
                if before and after:
                    a, b = readings[max(before)], readings[min(after)]
                    if a.time == b.time:
                        value = a.value
                    else:
                        value = a.value + (b.value - a.value) * (g - a.time) / (b.time - a.time)
                    out.append(P(g, origin, max(a.acq, b.acq), TYPE_DBL, value))
                g += step
        return sorted(out, key=lambda p: (p.time, p.origin))
    buckets: dict[tuple[int, int], list[P]] = defaultdict(list)
    for p in numeric:
        if since <= p.time < till:
            g = p.time - p.time % step  # Python's % floors, also before the epoch
            buckets[(g, p.origin)].append(p)
    for (g, origin), members in sorted(buckets.items()):
        total = sum(p.value for p in members)
        value = total / len(members) if kind == SeriesKind.INSTANTANEOUS else total
        out.append(P(g, origin, max(p.acq for p in members), TYPE_DBL, value))
    return out


# ---------------------------------------------------------------- strategies

values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def version_points(draw: st.DrawFn, times: st.SearchStrategy[int] | None = None) -> list[P]:
    """Points with unique acq (versions are strictly ordered), repeated (time, origin) pairs."""
    keys = draw(
        st.lists(
            st.tuples(st.integers(0, 6) if times is None else times, st.integers(1, 3)),
            min_size=0,
            max_size=30,
        )
    )
    acqs = draw(
        st.lists(st.integers(0, 10**9), min_size=len(keys), max_size=len(keys), unique=True)
    )
    out = []
    for (t, o), a in zip(keys, acqs, strict=True):
        kind = draw(st.sampled_from([TYPE_DBL, TYPE_INT, TYPE_STR, TYPE_RM]))
        value = NAN if kind in (TYPE_STR, TYPE_RM) else float(draw(st.integers(-100, 100)))
        out.append(P(t, o, a, kind, value))
    return out


@st.composite
def periods_strategy(draw: st.DrawFn) -> list[StatePeriod]:
    """Non-overlapping sensor states, maybe with gaps, missing signal states and open ends."""
    k = draw(st.integers(0, 4))
    bounds = sorted(
        draw(st.lists(st.integers(0, 100), min_size=k + 1, max_size=k + 1, unique=True))
    )
    out = []
    for i in range(k):
        till: int | None = max(bounds[i] + 1, bounds[i + 1] - draw(st.sampled_from([0, 0, 1, 3])))
        if i == k - 1 and draw(st.booleans()):
            till = None
        factor = draw(st.sampled_from([1.0, 40.0, 0.5, 2.5]) | st.floats(0.01, 1000))
        vfs = draw(st.none() | values)
        vft = draw(st.none() | values)
        out.append(StatePeriod(bounds[i], till, factor, vfs, vft))
    return draw(st.permutations(out))


# ---------------------------------------------------------------- Frame


def test_frame_take_mask_and_index_carry_text() -> None:
    f = frame(
        [P(1, 1, 1, TYPE_DBL, 1.0), P(2, 1, 1, TYPE_STR, NAN), P(3, 1, 1, TYPE_DBL, 3.0)],
        text=[None, "door open", None],
    )
    by_mask = f.take(np.array([False, True, True]))
    assert by_mask.time.tolist() == [2, 3]
    assert by_mask.text == ("door open", None)
    by_index = f.take(np.array([2, 0], dtype=np.intp))
    assert by_index.value.tolist() == [3.0, 1.0]
    assert by_index.text is None  # no STR point left: no text column


def test_frame_rejects_columns_of_unequal_length() -> None:
    with pytest.raises(ValueError, match="length"):
        Frame.from_columns([1, 2], [1], [1, 2], [0, 0], [1.0, 2.0])
    with pytest.raises(ValueError, match="text"):
        Frame.from_columns([1], [1], [1], [TYPE_STR], [NAN], text=["a", "b"])


def test_frame_empty_and_concat() -> None:
    assert len(Frame.empty()) == 0
    a = frame([P(1, 1, 1, TYPE_DBL, 1.0)])
    b = frame([P(2, 1, 1, TYPE_STR, NAN)], text=["x"])
    both = concat([a, Frame.empty(), b])
    assert both.time.tolist() == [1, 2]
    assert both.text == (None, "x")
    assert len(concat([])) == 0


def test_type_names_round_trip() -> None:
    assert [TYPE_CODES[n] for n in TYPE_NAMES] == [TYPE_DBL, TYPE_INT, TYPE_STR, TYPE_RM]
    assert TYPE_NAMES[TYPE_RM] == "RM"


# ---------------------------------------------------------------- versions, origin, window


@pytest.mark.parametrize(
    ("points", "want"),
    [
        pytest.param([], [], id="empty"),
        pytest.param([P(1000, 1, 5, TYPE_DBL, 1.5)], [P(1000, 1, 5, TYPE_DBL, 1.5)], id="single"),
        pytest.param(
            [P(1000, 1, 1, TYPE_DBL, 1.0), P(1000, 1, 2, TYPE_RM, NAN)],
            [],
            id="rm-newest-removes-pair",
        ),
        pytest.param(
            [P(1000, 1, 2, TYPE_DBL, 3.0), P(1000, 1, 1, TYPE_RM, NAN)],
            [P(1000, 1, 2, TYPE_DBL, 3.0)],
            id="rm-older-is-superseded",
        ),
        pytest.param(
            [P(1000, 1, 3, TYPE_RM, NAN), P(1000, 2, 1, TYPE_DBL, 7.0)],
            [P(1000, 2, 1, TYPE_DBL, 7.0)],
            id="rm-only-hits-its-origin",
        ),
        pytest.param(
            [
                P(2000, 1, 9, TYPE_DBL, 20.0),
                P(1000, 1, 4, TYPE_DBL, 11.0),
                P(1000, 1, 8, TYPE_INT, 12.0),
                P(1000, 1, 6, TYPE_DBL, 13.0),
            ],
            [P(1000, 1, 8, TYPE_INT, 12.0), P(2000, 1, 9, TYPE_DBL, 20.0)],
            id="unsorted-newest-wins",
        ),
    ],
)
def test_latest_versions_cases(points: list[P], want: list[P]) -> None:
    assert_same_points(rows(latest_versions(frame(points))), want)


def test_latest_versions_keeps_text_of_newest_str() -> None:
    f = frame(
        [P(1, 1, 1, TYPE_STR, NAN), P(1, 1, 2, TYPE_STR, NAN), P(2, 1, 1, TYPE_DBL, 1.0)],
        text=["old", "new", None],
    )
    assert latest_versions(f).text == ("new", None)


@FAST
@given(version_points())
def test_latest_versions_matches_reference(points: list[P]) -> None:
    assert_same_points(rows(latest_versions(frame(points))), ref_latest(points))


@FAST
@given(version_points())
def test_sort_versions_orders_by_time_origin_acq(points: list[P]) -> None:
    got = rows(sort_versions(frame(points)))
    assert [(p.time, p.origin, p.acq) for p in got] == sorted(
        (p.time, p.origin, p.acq) for p in points
    )


def test_clip_window() -> None:
    f = frame([P(t, 1 + t % 2, 0, TYPE_DBL, float(t)) for t in range(10)])
    assert clip_window(f, 3, 6).time.tolist() == [3, 4, 5]  # half-open: 6 is out


# ---------------------------------------------------------------- multiplier and stitching

SWAP = [  # meter A (CT 40) ends at 1500; meter B (ratio 1) starts at 0
    StatePeriod(0, 10_000, 40.0, 1000.0, 1500.0),
    StatePeriod(10_000, None, 1.0, 0.0, None),
]
SWAP_READINGS = [(0, 1000.0), (5000, 1200.0), (9000, 1500.0), (10_000, 0.0), (12_000, 10.0)]


@pytest.mark.parametrize(
    ("periods", "readings", "want"),
    [
        pytest.param(
            SWAP,
            SWAP_READINGS,
            [40_000.0, 48_000.0, 60_000.0, 60_000.0, 60_010.0],
            id="swap-1500-to-0-ratios-40-and-1",
        ),
        pytest.param(
            SWAP[::-1],
            SWAP_READINGS,
            [40_000.0, 48_000.0, 60_000.0, 60_000.0, 60_010.0],
            id="periods-in-any-order",
        ),
        pytest.param(
            [StatePeriod(0, 10_000, 1.0, 1000.0, 1500.0), StatePeriod(10_000, None, 1.0, 0.0)],
            SWAP_READINGS,
            [1000.0, 1200.0, 1500.0, 1500.0, 1510.0],
            id="swap-without-multiplier",
        ),
        pytest.param(
            [StatePeriod(0, None, 1.0, 5000.0)],
            [(1, 5000.0), (2, 5003.5)],
            [5000.0, 5003.5],
            id="first-meter-stays-as-stored",
        ),
        pytest.param(
            [
                StatePeriod(0, 10, 1.0, 100.0, 200.0),
                StatePeriod(10, 20, 1.0),
                StatePeriod(20, None, 1.0, 5.0),
            ],
            [(5, 150.0), (15, 7.0), (20, 5.0), (25, 9.0)],
            [150.0, 7.0, 200.0, 204.0],
            id="state-without-signal-state-not-shifted",
        ),
        pytest.param(
            [StatePeriod(0, 10, 2.0, 100.0), StatePeriod(10, None, 1.0, 0.0)],
            [(5, 150.0), (12, 3.0)],
            [300.0, 203.0],
            id="missing-value-for-till-adds-nothing",
        ),
        pytest.param(
            [StatePeriod(10, 20, 3.0, 0.0, 10.0), StatePeriod(30, None, 1.0, 50.0)],
            [(5, 1.0), (10, 2.0), (20, 4.0), (25, 5.0), (30, 50.0), (40, 51.0)],
            [1.0, 6.0, 4.0, 5.0, 30.0, 31.0],
            id="outside-and-gap-untouched-half-open",
        ),
        pytest.param([], [(5, 1.0)], [1.0], id="no-periods"),
        pytest.param(SWAP, [], [], id="empty-frame"),
    ],
)
def test_multiply_and_stitch_cases(
    periods: list[StatePeriod], readings: list[tuple[int, float]], want: list[float]
) -> None:
    f = frame([P(t, 1, 0, TYPE_DBL, v) for t, v in readings])
    got = stitch(apply_multiplier(f, periods), periods)
    assert got.value.tolist() == pytest.approx(want)
    assert got.time.tolist() == [t for t, _ in readings]


def test_stitch_shifts_per_period() -> None:
    assert stitch_shifts(SWAP) == [0.0, 60_000.0]
    assert stitch_shifts([]) == []


def test_multiplier_leaves_tombstones_nan() -> None:
    f = frame([P(1, 1, 0, TYPE_RM, NAN), P(1, 1, 1, TYPE_DBL, 2.0)])
    got = apply_multiplier(f, [StatePeriod(0, None, 40.0)])
    assert math.isnan(got.value[0])
    assert got.value[1] == 80.0


@FAST
@given(
    periods=periods_strategy(),
    readings=st.lists(st.tuples(st.integers(-5, 110), values), max_size=25),
)
def test_multiply_and_stitch_match_reference(
    periods: list[StatePeriod], readings: list[tuple[int, float]]
) -> None:
    points = [P(t, 1, i, TYPE_DBL, v) for i, (t, v) in enumerate(readings)]
    got = rows(stitch(apply_multiplier(frame(points), periods), periods))
    assert_same_points(got, ref_multiply_and_stitch(points, periods))


class Meter(NamedTuple):
    since: int
    till: int | None
    ratio: float
    vfs: float
    vft: float
    readings: list[tuple[int, float]]


@st.composite
def meter_swaps(draw: st.DrawFn) -> list[Meter]:
    """1-4 consecutive meters, each with its own ratio, start and end readings, readings between."""
    k = draw(st.integers(1, 4))
    bounds = sorted(
        draw(st.lists(st.integers(0, 10**6), min_size=k + 1, max_size=k + 1, unique=True))
    )
    meters = []
    for i in range(k):
        since, till = bounds[i], bounds[i + 1]
        vfs = draw(st.floats(0, 1e6))
        times = sorted(draw(st.lists(st.integers(since, till - 1), max_size=6, unique=True)))
        level, readings = vfs, []
        for t in times:
            level += draw(st.floats(0, 1e4))
            readings.append((t, level))
        vft = level + draw(st.floats(0, 1e4))
        ratio = draw(st.sampled_from([1.0, 40.0, 0.2]) | st.floats(0.01, 1000))
        open_end = i == k - 1 and draw(st.booleans())
        meters.append(Meter(since, None if open_end else till, ratio, vfs, vft, readings))
    return meters


@FAST
@given(meters=meter_swaps(), window=st.tuples(st.integers(-10, 10**6 + 10), st.integers(1, 10**6)))
def test_stitched_energy_equals_sum_of_meter_increments(
    meters: list[Meter], window: tuple[int, int]
) -> None:
    since, length = window
    periods = [StatePeriod(m.since, m.till, m.ratio, m.vfs, m.vft) for m in meters]
    points = [P(t, 1, 0, TYPE_DBL, v) for m in meters for t, v in m.readings]
    stitched = stitch(apply_multiplier(frame(points), periods), periods)
    inside = clip_window(stitched, since, since + length)
    if len(inside) == 0:
        return
    t_first, t_last = int(inside.time[0]), int(inside.time[-1])
    energy = float(inside.value[-1] - inside.value[0])

    # Each meter's increment between the two points: from its install reading (or the first
    # point) to its removal reading (or the last point), times its own ratio.
    owner = {t: i for i, m in enumerate(meters) for t, _ in m.readings}
    raw = {t: v for m in meters for t, v in m.readings}
    first, last = owner[t_first], owner[t_last]
    expected = 0.0
    for i in range(first, last + 1):
        m = meters[i]
        start = raw[t_first] if i == first else m.vfs
        end = raw[t_last] if i == last else m.vft
        expected += m.ratio * (end - start)
    assert math.isclose(energy, expected, rel_tol=1e-9, abs_tol=1e-3)


# ---------------------------------------------------------------- aggregation

Q = 15 * M  # a 15-minute bucket
INST, CUM, INTV = SeriesKind.INSTANTANEOUS, SeriesKind.CUMULATIVE, SeriesKind.INTERVAL


def dbl(time: int, value: float, acq: int = 0, origin: int = 1) -> P:
    return P(time, origin, acq, TYPE_DBL, value)


@pytest.mark.parametrize(
    ("kind", "since", "till", "points", "want"),
    [
        pytest.param(INST, 0, 2 * Q, [], [], id="inst-empty"),
        pytest.param(CUM, 0, 2 * Q, [], [], id="cum-empty"),
        pytest.param(INTV, 0, 2 * Q, [], [], id="interval-empty"),
        pytest.param(
            INST, 0, 2 * Q, [dbl(5 * M, 4.0, acq=3)], [dbl(0, 4.0, acq=3)], id="inst-single"
        ),
        pytest.param(
            INST,
            0,
            2 * Q,
            [dbl(0, 10.0, 1), dbl(5 * M, 20.0, 7), dbl(Q, 30.0, 2)],
            [dbl(0, 15.0, 7), dbl(Q, 30.0, 2)],
            id="inst-mean-and-max-acq",
        ),
        pytest.param(
            INST,
            7 * M,
            2 * Q,
            [dbl(5 * M, 100.0), dbl(8 * M, 10.0), dbl(14 * M, 20.0), dbl(16 * M, 40.0)],
            [dbl(0, 15.0), dbl(Q, 40.0)],
            id="inst-unaligned-since-labels-aligned-start",
        ),
        pytest.param(
            INST,
            -Q,
            Q,
            [dbl(-1, 3.0), dbl(0, 5.0)],
            [dbl(-Q, 3.0), dbl(0, 5.0)],
            id="inst-before-epoch-floors",
        ),
        pytest.param(
            INTV,
            0,
            2 * Q,
            [dbl(0, 1.0), dbl(5 * M, 2.0), dbl(Q - 1, 3.0), dbl(Q, 4.0), dbl(2 * Q, 99.0)],
            [dbl(0, 6.0), dbl(Q, 4.0)],
            id="interval-sum-half-open",
        ),
        pytest.param(
            INST,
            0,
            Q,
            [dbl(1, 1.0, origin=2), dbl(2, 5.0, origin=1), dbl(3, 3.0, origin=2)],
            [dbl(0, 5.0, origin=1), dbl(0, 2.0, origin=2)],
            id="inst-per-origin",
        ),
        pytest.param(
            INTV,
            0,
            Q,
            [
                dbl(1, 1.0),
                P(2, 1, 9, TYPE_RM, NAN),
                P(3, 1, 9, TYPE_STR, NAN),
                P(4, 1, 0, TYPE_INT, 2),
            ],
            [dbl(0, 3.0)],
            id="rm-and-str-ignored-int-summed",
        ),
        pytest.param(
            CUM,
            0,
            3 * Q,
            [dbl(-5 * M, 100.0, 1), dbl(10 * M, 200.0, 5), dbl(40 * M, 500.0, 2)],
            [dbl(0, 100.0 + 100.0 / 3.0, 5), dbl(Q, 250.0, 5), dbl(2 * Q, 400.0, 5)],
            id="cum-interpolated-with-neighbour-outside",
        ),
        pytest.param(
            CUM,
            0,
            3 * Q,
            [dbl(10 * M, 200.0), dbl(20 * M, 300.0)],
            [dbl(Q, 250.0)],
            id="cum-never-extrapolated",
        ),
        pytest.param(
            CUM,
            0,
            2 * Q,
            [dbl(Q - M, 1.0, 8), dbl(Q, 7.0, 1), dbl(Q + M, 9.0, 9)],
            [dbl(Q, 7.0, 1)],
            id="cum-exact-hit-uses-its-reading",
        ),
        pytest.param(
            CUM,
            7 * M,
            3 * Q,
            [dbl(0, 0.0), dbl(3 * Q, 300.0)],
            [dbl(Q, 100.0), dbl(2 * Q, 200.0)],
            id="cum-unaligned-since-first-grid-after",
        ),
        pytest.param(
            CUM,
            0,
            Q,
            [dbl(0, 5.0)],
            [dbl(0, 5.0)],
            id="cum-single-on-grid",
        ),
        pytest.param(
            CUM,
            0,
            2 * Q,
            [dbl(-M, 0.0, origin=2), dbl(M, 2.0, origin=2), dbl(0, 10.0, origin=1)],
            [dbl(0, 10.0, origin=1), dbl(0, 1.0, origin=2)],
            id="cum-per-origin",
        ),
    ],
)
def test_aggregate_cases(
    kind: SeriesKind, since: int, till: int, points: list[P], want: list[P]
) -> None:
    got = aggregate(frame(points), delta_t_minutes=15, kind=kind, since=since, till=till)
    assert_same_points(rows(got), want)
    assert got.text is None


@pytest.mark.parametrize(
    ("delta", "since", "till"),
    [
        pytest.param(0, 0, Q, id="zero-delta"),
        pytest.param(-15, 0, Q, id="negative-delta"),
        pytest.param(15, Q, Q, id="empty-window"),
        pytest.param(15, Q, 0, id="reversed-window"),
    ],
)
def test_aggregate_rejects_bad_arguments(delta: int, since: int, till: int) -> None:
    with pytest.raises(ValueError, match=r"delta_t|since"):
        aggregate(Frame.empty(), delta_t_minutes=delta, kind=INST, since=since, till=till)


@st.composite
def aggregate_inputs(draw: st.DrawFn) -> tuple[int, SeriesKind, int, int, list[P]]:
    delta = draw(st.sampled_from([1, 5, 15, 60]))
    step = delta * M
    lo, hi = -3 * step, 12 * step
    # Times on the grid often, so exact hits and bucket edges are exercised.
    times = st.integers(lo, hi) | st.integers(lo // step, hi // step).map(lambda k: k * step)
    kind = draw(st.sampled_from(list(SeriesKind)))
    points = draw(version_points(times))
    if kind != SeriesKind.CUMULATIVE:
        points = ref_latest(points)  # the caller resolves versions before aggregating
    since = draw(st.integers(lo, hi - 1))
    till = draw(st.integers(since + 1, hi))
    return delta, kind, since, till, points


@FAST
@given(aggregate_inputs())
def test_aggregate_matches_reference(args: tuple[int, SeriesKind, int, int, list[P]]) -> None:
    delta, kind, since, till, points = args
    got = aggregate(frame(points), delta_t_minutes=delta, kind=kind, since=since, till=till)
    want = ref_aggregate(points, delta_t_minutes=delta, kind=kind, since=since, till=till)
    assert_same_points(rows(got), want)


# --- rounding of computed values --------------------------------------------------------------


def test_round_significant_drops_binary_noise() -> None:
    got = round_significant(
        np.array(
            [
                708.3000000000001,
                18.80000000000001,
                0.1 + 0.2,
                18.799999999999997,
                -0.7082999999999999,
            ]
        )
    )
    assert got.tolist() == [708.3, 18.8, 0.3, 18.8, -0.7083]


def test_round_significant_keeps_15_digits_and_special_values() -> None:
    values = np.array([12345.678901234567, 123456789012345.67, 1e250, 1e-12, 0.0, -0.0])
    got = round_significant(np.append(values, [np.nan, np.inf, -np.inf]))
    assert got[:6].tolist() == [12345.6789012346, 123456789012346.0, 1e250, 1e-12, 0.0, -0.0]
    assert np.isnan(got[6])
    assert got[7] == np.inf
    assert got[8] == -np.inf
    assert round_significant(np.empty(0)).shape == (0,)


@given(
    st.lists(
        st.floats(min_value=-1e30, max_value=1e30, allow_nan=False, allow_subnormal=False),
        max_size=50,
    )
)
def test_round_significant_is_printing_with_15_digits(xs: list[float]) -> None:
    """Each result is the value printed with 15 significant digits (but for a tie broken the
    other way: one unit of the 15th digit), for every magnitude the scaling handles exactly
    (the rest pass unchanged); rounding again changes nothing."""
    got = round_significant(np.array(xs, dtype=np.float64))
    for x, g in zip(xs, got.tolist(), strict=True):
        if 1e-8 <= abs(x) < 1e30:
            unit = 10.0 ** (math.floor(math.log10(abs(x))) - 14)
            assert abs(g - float(f"{x:.15g}")) <= unit + 4 * math.ulp(x), x
            assert float(f"{g:.15g}") == g, x  # at most 15 significant digits
        elif abs(x) < 9e-9:
            assert g == x
    assert round_significant(got).tolist() == got.tolist()


# --- run: one read's steps in order, on plain frames ------------------------------------------

KWH, WH, KW = unit_by_symbol("kWh"), unit_by_symbol("Wh"), unit_by_symbol("kW")
H = 60 * M


def plan(kind: SeriesKind = SeriesKind.INSTANTANEOUS, **steps: Any) -> Plan:
    """A plan over 0..10 h in the kind's usual unit (kW or kWh) with the given steps."""
    unit = KWH if kind != SeriesKind.INSTANTANEOUS else KW
    steps.setdefault("out_unit", unit)
    return Plan(since=0, till=10 * H, kind=kind, unit=unit, **steps)


@pytest.mark.parametrize(
    ("the_plan", "newest_only", "widens", "stitches", "needs_periods", "converts"),
    [
        pytest.param(plan(), False, False, False, False, False, id="raw-instantaneous"),
        pytest.param(plan(get_last=True), True, False, False, False, False, id="get_last"),
        pytest.param(plan(buckets=Buckets(60)), True, False, False, False, False, id="buckets"),
        pytest.param(plan(SeriesKind.CUMULATIVE), False, False, True, True, False, id="counter"),
        pytest.param(
            plan(SeriesKind.CUMULATIVE, raw=True), False, False, False, False, False, id="raw"
        ),
        pytest.param(
            plan(SeriesKind.CUMULATIVE, buckets=Buckets(60)),
            True,
            True,
            True,
            True,
            False,
            id="counter-buckets",
        ),
        pytest.param(plan(multiply=True), False, False, False, True, False, id="multiply"),
        pytest.param(plan(out_unit=unit_by_symbol("W")), False, False, False, False, True),
    ],
)
def test_plan_decides_what_the_read_needs(
    the_plan: Plan,
    newest_only: bool,
    widens: bool,
    stitches: bool,
    needs_periods: bool,
    converts: bool,
) -> None:
    assert the_plan.newest_only is newest_only
    assert the_plan.widens is widens
    assert the_plan.stitches is stitches
    assert the_plan.needs_periods is needs_periods
    assert the_plan.converts is converts


def test_run_without_steps_returns_every_version_as_stored() -> None:
    points = [dbl(0, 0.1 + 0.2, acq=1), dbl(0, 2.0, acq=2), P(H, 1, 1, TYPE_RM, NAN)]
    got = run(frame(points), plan())
    assert_same_points(rows(got.frame), points)  # not rounded: nothing was computed
    assert got.warnings == ()


def test_run_as_of_keeps_the_versions_acquired_before() -> None:
    points = [dbl(0, 1.0, acq=1_000), dbl(0, 2.0, acq=2_000), dbl(H, 3.0, acq=3_000)]
    got = run(frame(points), plan(acq_before=2_000))
    assert_same_points(rows(got.frame), [dbl(0, 1.0, acq=1_000)])


def test_run_newest_only_drops_tombstones_the_store_returned() -> None:
    # With newest_only the store has applied acq_before already: run does not filter again.
    points = [dbl(0, 1.0, acq=5_000), P(H, 1, 5_000, TYPE_RM, NAN)]
    got = run(frame(points), plan(get_last=True, acq_before=1_000))
    assert_same_points(rows(got.frame), [dbl(0, 1.0, acq=5_000)])


def test_run_multiplies_stitches_aggregates_and_converts_in_that_order() -> None:
    # Two meters of a counter with ratio 2 then 3, swapped at 2 h: the first counts 10 -> 14
    # (value_for_till 14), the second starts at 100.
    periods = [
        StatePeriod(0, 2 * H, 2.0, value_for_since=10.0, value_for_till=14.0),
        StatePeriod(2 * H, None, 3.0, value_for_since=100.0),
    ]
    points = [dbl(0, 10.0), dbl(H, 12.0), dbl(2 * H, 100.0), dbl(3 * H, 101.0)]
    p = plan(
        SeriesKind.CUMULATIVE,
        get_last=True,
        multiply=True,
        buckets=Buckets(60),
        out_unit=WH,
    )
    got = run(frame(points), p, periods=periods).frame
    # Multiplied: 20, 24, 300, 303; stitched: the second meter continues from 28 (20 + 2*4):
    # 20, 24, 28, 31; one counter value per hour start, in Wh.
    assert got.time.tolist() == [0, H, 2 * H, 3 * H]
    assert got.value.tolist() == [20_000.0, 24_000.0, 28_000.0, 31_000.0]


def test_run_interpolates_a_counter_from_the_neighbours_around_the_window() -> None:
    p = Plan(
        since=H,
        till=2 * H,
        kind=SeriesKind.CUMULATIVE,
        unit=KWH,
        out_unit=KWH,
        raw=True,
        buckets=Buckets(60),
    )
    neighbours = frame([dbl(0, 0.0), dbl(4 * H, 4.0)])
    got = run(Frame.empty(), p, neighbours=neighbours).frame
    assert got.time.tolist() == [H]
    assert got.value.tolist() == [1.0]


def test_run_fills_a_missing_swap_reading_from_the_store_and_says_so() -> None:
    periods = [
        StatePeriod(0, 2 * H, 1.0, value_for_since=10.0),  # no value_for_till
        StatePeriod(2 * H, None, 1.0, value_for_since=0.0),
    ]
    points = frame([dbl(3 * H, 5.0)])  # the window holds only the second meter
    assert missing_swap_ends(periods, 3 * H) == [periods[0]]
    assert missing_swap_ends(periods, H) == []  # the read ends before the swap
    edges = {0: frame([dbl(H, 13.0), dbl(H + 30 * M, 14.0)])}  # readings before 2 h
    got = run(points, plan(SeriesKind.CUMULATIVE), periods=periods, swap_edges=edges)
    assert got.frame.value.tolist() == [19.0]  # continues from 14: 14 + 5
    assert len(got.warnings) == 1
    assert "last reading before the swap (14 at" in got.warnings[0]


def test_run_of_a_counter_whose_points_are_all_removed_is_empty() -> None:
    # Regression: the newest versions all RM left nothing to take the newest time of (a 500).
    periods = [StatePeriod(0, H, 1.0, value_for_since=1.0), StatePeriod(H, None, 1.0, 0.0)]
    points = frame([P(0, 1, 1, TYPE_RM, NAN)])
    got = run(points, plan(SeriesKind.CUMULATIVE, get_last=True), periods=periods)
    assert len(got.frame) == 0


@pytest.mark.parametrize("converted", [False, True])
def test_run_raises_overflow_for_a_value_beyond_the_double(converted: bool) -> None:
    points = frame([dbl(0, 1e300), dbl(H, 1.0)])
    periods = [StatePeriod(0, None, 1e10)]
    if converted:
        p = Plan(
            since=0,
            till=10 * H,
            kind=SeriesKind.INSTANTANEOUS,
            unit=unit_by_symbol("MW"),
            out_unit=unit_by_symbol("W"),
        )
        points = frame([dbl(0, 1e305)])
        periods = []
    else:
        p = plan(multiply=True)
    with pytest.raises(Overflow, match="The value at time 0 overflows") as exc:
        run(points, p, periods=periods)
    assert exc.value.converted is converted
