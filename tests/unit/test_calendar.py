"""Calendar buckets (calendar.py through pipeline.aggregate) against a plain pandas reference:
`resample` in the zone for means and sums, `date_range` + linear interpolation for counters."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from besmart_server.server.signals.calendar import (
    Buckets,
    CalendarError,
    Period,
    parse_delta_t,
    zone,
)
from besmart_server.server.signals.catalog import SeriesKind
from besmart_server.server.signals.pipeline import Frame, aggregate

WAW = ZoneInfo("Europe/Warsaw")
MIN = 60_000
Q = 15 * MIN
H = 60 * MIN


def ms(y: int, m: int, d: int, hh: int = 0, mm: int = 0, tz: dt.tzinfo = WAW) -> int:
    return int(dt.datetime(y, m, d, hh, mm, tzinfo=tz).timestamp() * 1000)


def frame(times: list[int] | np.ndarray, values: list[float] | np.ndarray) -> Frame:
    n = len(times)
    return Frame.from_columns(times, [1] * n, [1] * n, [0] * n, values)


def quarter_hours(since: int, till: int) -> Frame:
    t = np.arange(since, till, Q, dtype=np.int64)
    return frame(t, np.ones(t.shape[0]))


# --- explicit cases: Europe/Warsaw, 2026 ----------------------------------------------------


@pytest.mark.parametrize(
    ("day", "count"),
    [((2026, 3, 29), 92), ((2026, 10, 25), 100), ((2026, 6, 1), 96)],
    ids=["spring-23h", "autumn-25h", "summer-24h"],
)
def test_local_day_counts_its_quarter_hours(day: tuple[int, int, int], count: int) -> None:
    start = ms(*day)
    f = quarter_hours(start - 86_400_000, start + 2 * 86_400_000)
    out = aggregate(
        f,
        kind=SeriesKind.INTERVAL,
        since=start,
        till=ms(*(dt.date(*day) + dt.timedelta(days=1)).timetuple()[:3]),
        buckets=Buckets(1440, WAW),
    )
    assert out.time.tolist() == [start]
    assert out.value.tolist() == [float(count)]


def test_day_edges_across_both_changes_are_local_midnights() -> None:
    b = Buckets(1440, WAW)
    edges = b.edges(ms(2026, 3, 28, 12), ms(2026, 3, 29, 12))
    assert edges.tolist() == [ms(2026, 3, 28), ms(2026, 3, 29), ms(2026, 3, 30)]
    assert np.diff(edges).tolist() == [24 * H, 23 * H]
    autumn = b.edges(ms(2026, 10, 25, 1), ms(2026, 10, 25, 1))
    assert np.diff(autumn).tolist() == [25 * H]


def test_two_local_two_oclock_hours_in_autumn() -> None:
    edges = Buckets(60, WAW).edges(ms(2026, 10, 25, 1), ms(2026, 10, 25, 3, tz=dt.UTC) - 1)
    walls = [dt.datetime.fromtimestamp(e / 1000, WAW).strftime("%H:%M%z") for e in edges]
    assert walls == ["01:00+0200", "02:00+0200", "02:00+0100", "03:00+0100", "04:00+0100"]


def test_spring_gap_starts_its_bucket_at_the_change() -> None:
    # 120-minute buckets: local 02:00 does not exist, the bucket after 00:00 starts at 03:00
    # CEST (the change), and 04:00 is a local multiple again.
    edges = Buckets(120, WAW).edges(ms(2026, 3, 29), ms(2026, 3, 29, 5))
    walls = [dt.datetime.fromtimestamp(e / 1000, WAW).strftime("%H:%M") for e in edges]
    assert walls == ["00:00", "03:00", "04:00", "06:00"]


def test_week_starts_monday_and_month_quarter_year_local_midnight() -> None:
    at = ms(2026, 3, 29, 12)  # a Sunday
    assert Buckets(10080, WAW).edges(at, at)[0] == ms(2026, 3, 23)  # Monday
    assert Buckets("month", WAW).edges(at, at).tolist() == [ms(2026, 3, 1), ms(2026, 4, 1)]
    assert Buckets("quarter", WAW).edges(at, at).tolist() == [ms(2026, 1, 1), ms(2026, 4, 1)]
    assert Buckets("year", WAW).edges(at, at).tolist() == [ms(2026, 1, 1), ms(2027, 1, 1)]
    # Without a zone the periods are UTC ones.
    assert Buckets("month").edges(at, at)[0] == ms(2026, 3, 1, tz=dt.UTC)


def test_half_hour_zone_hours_are_local_not_utc() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    at = ms(2026, 1, 1, 10, 10, tz=kolkata)
    assert Buckets(60, kolkata).edges(at, at)[0] == ms(2026, 1, 1, 10, tz=kolkata)
    assert Buckets(60).edges(at, at)[0] % H == 0  # without tz: UTC hours, as always


def test_register_at_local_midnight_and_23_hour_day_energy() -> None:
    """A register read at local midnight; the spring day's energy is its register difference,
    and the daily differences add up to the window's energy."""
    since, till = ms(2026, 3, 28), ms(2026, 3, 31)
    t = np.arange(since - H, till + H, Q, dtype=np.int64)
    step_energy = 0.25 + (t % 7) / 10  # varying energy per quarter hour
    register = 1000 + np.cumsum(step_energy)
    readings = frame(t, register)
    b = Buckets(1440, WAW)
    at_midnight = aggregate(
        readings, kind=SeriesKind.CUMULATIVE, since=since, till=till + 1, buckets=b
    )
    assert at_midnight.time.tolist() == [ms(2026, 3, d) for d in (28, 29, 30, 31)]
    assert at_midnight.value[1] == register[t == ms(2026, 3, 29)][0]
    # The energy of each quarter hour as interval points labelled with their start: the
    # register rises by step_energy[i + 1] over [t[i], t[i + 1]).
    energy = frame(t[:-1], step_energy[1:])
    daily = aggregate(energy, kind=SeriesKind.INTERVAL, since=since, till=till, buckets=b)
    assert daily.value.tolist() == pytest.approx(np.diff(at_midnight.value).tolist())
    spring = (t[:-1] >= ms(2026, 3, 29)) & (t[:-1] < ms(2026, 3, 30))
    assert int(spring.sum()) == 92
    assert float(daily.value[1]) == pytest.approx(float(step_energy[1:][spring].sum()))
    assert float(daily.value[1]) == pytest.approx(
        float(at_midnight.value[2] - at_midnight.value[1])
    )
    total = float(at_midnight.value[-1] - at_midnight.value[0])
    assert float(daily.value.sum()) == pytest.approx(total)


def test_without_tz_buckets_stay_epoch_aligned() -> None:
    b = Buckets(10080)
    # The UTC epoch was a Thursday: weeks without tz keep starting on Thursdays.
    at = ms(2026, 3, 29, tz=dt.UTC)
    assert dt.datetime.fromtimestamp(int(b.edges(at, at)[0]) / 1000, dt.UTC).weekday() == 3


@pytest.mark.parametrize(
    "name", ["Mars/Base", "", "../etc/passwd", "/etc/localtime", "UTC+1", "localtime", "posixrules"]
)
def test_unknown_zones_are_rejected(name: str) -> None:
    with pytest.raises(CalendarError) as err:
        zone(name)
    assert err.value.field == "tz"


def test_sizes_a_zone_cannot_use() -> None:
    with pytest.raises(CalendarError, match="whole number of days"):
        Buckets(7, WAW)
    with pytest.raises(CalendarError, match="positive"):
        Buckets(0)
    Buckets(7)  # without tz any positive size, as before
    assert parse_delta_t("month") == "month"
    assert parse_delta_t("15") == 15
    with pytest.raises(CalendarError):
        parse_delta_t("fortnight")


# --- property: the pipeline against pandas --------------------------------------------------

ZONES = [
    "Europe/Warsaw",  # whole hours, both changes
    "Asia/Kolkata",  # half hour, no DST
    "Australia/Adelaide",  # half hour with DST (southern: April and October)
    "America/St_Johns",  # half hour with DST (northern)
    "UTC",
]
# delta_t → the pandas rule; weeks as Monday-to-Monday bins.
RULES: dict[int | str, tuple[str, dict[str, str]]] = {
    15: ("15min", {}),
    60: ("h", {}),
    1440: ("D", {}),
    10080: ("W-MON", {"closed": "left", "label": "left"}),
    "month": ("MS", {}),
    "quarter": ("QS-JAN", {}),
    "year": ("YS", {}),
}
SPAN_START = ms(2025, 1, 1, tz=dt.UTC)
SPAN = 2 * 365 * 86_400_000
# DST changes of the zones above (UTC dates): windows around them are drawn as often as others.
CHANGES = [
    ms(y, m, d, tz=dt.UTC)
    for y in (2025, 2026)
    for m, d in ((3, 9), (3, 30), (4, 6), (10, 5), (10, 26), (11, 2), (3, 29), (10, 25))
]


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, int | Period, np.ndarray, np.ndarray, int, int]:
    name = draw(st.sampled_from(ZONES))
    size = draw(st.sampled_from(list(RULES)))
    # Short sub-day series, long calendar ones: each stays a few hundred points.
    reach = 10 * 86_400_000 if size in (15, 60) else SPAN
    uniform = st.integers(SPAN_START, SPAN_START + SPAN - reach)
    near_change = st.sampled_from(CHANGES).flatmap(lambda c: st.integers(c - reach, c))
    base = draw(st.one_of(uniform, near_change))
    # Points near DST changes as often as elsewhere: minute offsets from a random base.
    offsets = draw(st.lists(st.integers(0, reach // MIN), min_size=1, max_size=300, unique=True))
    t = np.sort(np.array(offsets, dtype=np.int64) * MIN + base)
    values = np.array(
        draw(st.lists(st.integers(0, 1000), min_size=t.shape[0], max_size=t.shape[0])),
        dtype=np.float64,
    )
    a = draw(st.integers(base - reach // 10, base + reach))
    b = draw(st.integers(a + 1, a + reach + reach // 10))
    return name, size, t, values, a, b  # type: ignore[return-value]  # size is a Period or int


def _local_index(t: np.ndarray, name: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(t, unit="ms", utc=True)).tz_convert(name)


def _utc_ms(index: pd.DatetimeIndex) -> list[int]:
    return [int(x.value // 1_000_000) for x in index.tz_convert("UTC").as_unit("ns")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from([SeriesKind.INTERVAL, SeriesKind.INSTANTANEOUS]))
def test_means_and_sums_match_pandas_resample(
    case: tuple[str, int | Period, np.ndarray, np.ndarray, int, int], kind: SeriesKind
) -> None:
    name, size, t, values, since, till = case
    ours = aggregate(
        frame(t, values), kind=kind, since=since, till=till, buckets=Buckets(size, zone(name))
    )
    inside = (t >= since) & (t < till)
    if not inside.any():
        assert len(ours) == 0
        return
    rule, kw = RULES[size]
    s = pd.Series(values[inside], index=_local_index(t[inside], name))
    res = s.resample(rule, **kw)  # type: ignore[arg-type]  # pandas' stubs want literals
    count = res.count()
    ref = (res.sum() if kind == SeriesKind.INTERVAL else res.mean())[count > 0]
    assert ours.time.tolist() == _utc_ms(pd.DatetimeIndex(ref.index))
    assert ours.value.tolist() == pytest.approx(ref.to_numpy().tolist())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_counters_match_interpolation_at_pandas_bucket_starts(
    case: tuple[str, int | Period, np.ndarray, np.ndarray, int, int],
) -> None:
    name, size, t, increments, since, till = case
    register = np.cumsum(increments)
    ours = aggregate(
        frame(t, register),
        kind=SeriesKind.CUMULATIVE,
        since=since,
        till=till,
        buckets=Buckets(size, zone(name)),
    )
    rule, kw = RULES[size]
    # Every bucket start of the zone around the window: resample over two dummy points.
    lo, hi = min(since, int(t[0])), max(till, int(t[-1]))
    span = pd.Series([0.0, 0.0], index=_local_index(np.array([lo, hi]), name))
    starts = np.array(_utc_ms(pd.DatetimeIndex(span.resample(rule, **kw).sum().index)))  # type: ignore[arg-type]
    grid = starts[(starts >= max(since, t[0])) & (starts <= min(till - 1, t[-1]))]
    assert ours.time.tolist() == grid.tolist()
    expected = np.interp(grid.astype(np.float64), t.astype(np.float64), register)
    assert ours.value.tolist() == pytest.approx(expected.tolist())


@pytest.mark.parametrize("size", [1440 * 10**12, 10080 * 10**9, "year"])
def test_buckets_beyond_the_calendar_end_at_its_years(size: int | Period) -> None:
    """Sizes or windows past years 1..9999 still answer: the buckets end at those years."""
    b = Buckets(size, WAW)
    for lo, hi in ((0, 1), (-(2**62), 2**62), (2**62 - 10, 2**62)):
        edges = b.edges(lo, hi)
        assert edges[0] <= lo < hi < edges[-1]
        assert bool((np.diff(edges) > 0).all())
    out = aggregate(
        frame([-(2**61), 0, 2**61], [1.0, 2.0, 3.0]),
        kind=SeriesKind.INTERVAL,
        since=-(2**62),
        till=2**62,
        buckets=b,
    )
    assert float(out.value.sum()) == 6.0


def test_origins_keep_their_own_local_buckets() -> None:
    """Two origins interleaved in time: each gets its own local days, as without tz."""
    start = ms(2026, 10, 25)
    t = np.repeat(np.arange(start, start + 25 * H, Q, dtype=np.int64), 2)
    n = t.shape[0]
    f = Frame.from_columns(
        t, np.tile([1, 2], n // 2), [1] * n, [0] * n, np.tile([1.0, 3.0], n // 2)
    )
    out = aggregate(
        f, kind=SeriesKind.INTERVAL, since=start, till=start + 25 * H, buckets=Buckets(1440, WAW)
    )
    assert out.time.tolist() == [start, start]
    assert out.origin.tolist() == [1, 2]
    assert out.value.tolist() == [100.0, 300.0]


def test_nominal_lengths_estimate_bucket_counts() -> None:
    assert Buckets(15, WAW).nominal_ms == Q
    assert Buckets("month").nominal_ms == 28 * 86_400_000
