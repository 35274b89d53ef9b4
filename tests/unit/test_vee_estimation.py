"""vee.estimation: linear exactness, like-day by day type (holidays as Sundays), the standard
profile without history, and scaling to the register advance."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from besmart_server.server.vee import estimation as e

Q = 900_000
H = 3_600_000
DAY = 86_400_000
MONDAY = 1_704_067_200_000 - 0  # 2024-01-01 00:00 UTC, a Monday (and New Year's Day)


def test_linear_is_exact_on_linear_data_up_to_two_hours() -> None:
    t = np.arange(0, 40 * Q, Q, dtype=np.int64)
    v = 3.0 + 0.5 * np.arange(40)
    keep = (t < 10 * Q) | (t >= 18 * Q)  # 8 quarter-hours = 2 h missing
    s = e.estimate(t[keep], v[keep], since=0, till=40 * Q, step=Q, timezone="UTC")
    assert s.time.tolist() == t[~keep].tolist()
    assert s.value == pytest.approx(v[~keep])
    assert set(s.method) == {e.Method.LINEAR}
    # one slot longer than 2 h is not interpolated (no history: nothing else fills it)
    keep = (t < 10 * Q) | (t >= 19 * Q)
    s = e.estimate(t[keep], v[keep], since=0, till=40 * Q, step=Q, timezone="UTC")
    assert len(s) == 0


def _daily_series(days: int, start: int) -> tuple[e.I64, e.F64]:
    t = np.arange(start, start + days * DAY, Q, dtype=np.int64)
    slot = (t // Q) % 96
    weekday = ((t // DAY) + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    level = np.where(weekday >= 5, 2.0, 1.0)  # weekends double
    return t, level + np.sin(2 * np.pi * slot / 96)


def test_like_day_takes_the_same_slot_of_the_same_day_type() -> None:
    start = MONDAY - 28 * DAY
    t, v = _daily_series(35, start)
    hole = (t >= MONDAY + 2 * DAY) & (t < MONDAY + 3 * DAY)  # Wednesday missing, 24 h
    s = e.estimate(t[~hole], v[~hole], since=MONDAY, till=MONDAY + 7 * DAY, step=Q, timezone="UTC")
    assert set(s.method) == {e.Method.LIKE_DAY}
    assert s.value == pytest.approx(v[hole])
    # a Saturday is filled from Saturdays
    hole = (t >= MONDAY + 5 * DAY) & (t < MONDAY + 6 * DAY)
    s = e.estimate(t[~hole], v[~hole], since=MONDAY, till=MONDAY + 7 * DAY, step=Q, timezone="UTC")
    assert s.value == pytest.approx(v[hole])


def test_a_holiday_is_filled_like_a_sunday() -> None:
    start = MONDAY - 28 * DAY
    t, v = _daily_series(29, start)
    hole = t >= MONDAY  # New Year's Day, a Monday
    kw = {"since": MONDAY, "till": MONDAY + DAY, "step": Q, "timezone": "UTC"}
    sunday = e.estimate(t[~hole], v[~hole], holidays=[date(2024, 1, 1)], **kw)  # type: ignore[arg-type]
    workday = e.estimate(t[~hole], v[~hole], **kw)  # type: ignore[arg-type]
    assert sunday.value.mean() == pytest.approx(2.0)  # the weekend level
    assert workday.value.mean() == pytest.approx(1.0)


def test_profile_where_there_is_no_history() -> None:
    t = np.array([], dtype=np.int64)

    def flat(slots: e.I64) -> e.F64:
        return np.full(len(slots), 0.25)

    s = e.estimate(t, np.array([]), since=0, till=4 * Q, step=Q, profile=flat, timezone="UTC")
    assert s.value.tolist() == [0.25] * 4
    assert set(s.method) == {e.Method.PROFILE}


def test_substitutes_are_scaled_to_the_register_advance() -> None:
    t = np.arange(0, 96 * Q, Q, dtype=np.int64)
    v = np.full(96, 1.0)
    keep = (t < 20 * Q) | (t >= 40 * Q)  # 5 h missing: like-day would say 20 kWh
    prev_t = t - DAY
    history_t = np.concatenate([prev_t, t[keep]])
    history_v = np.concatenate([np.full(96, 1.0), v[keep]])
    # registers every 6 h: the advance between 18:00 (index 16) and 12:00 (48) says 50 kWh
    reg_t = np.array([16 * Q, 48 * Q], dtype=np.int64)
    reg_v = np.array([100.0, 150.0])
    s = e.estimate(
        history_t,
        history_v,
        since=0,
        till=96 * Q,
        step=Q,
        timezone="UTC",
        registers=(reg_t, reg_v),
    )
    assert set(s.method) == {e.Method.LIKE_DAY}
    assert s.scaled.all()
    measured = float(v[(t >= 16 * Q) & (t < 48 * Q) & keep].sum())  # 12 intervals
    assert s.value.sum() == pytest.approx(50.0 - measured)
    assert s.value == pytest.approx(np.full(20, (50.0 - measured) / 20))
    # readings that do not bracket the gap leave it unscaled
    s = e.estimate(
        history_t,
        history_v,
        since=0,
        till=96 * Q,
        step=Q,
        timezone="UTC",
        registers=(reg_t[:1], reg_v[:1]),
    )
    assert not s.scaled.any()
    assert s.value.sum() == pytest.approx(20.0)


def test_day_types() -> None:
    days = MONDAY + DAY * np.arange(7, dtype=np.int64)
    assert e.day_types(days, timezone="UTC").tolist() == [0, 0, 0, 0, 0, 1, 2]
    hol = e.day_types(days, timezone="UTC", holidays=[date(2024, 1, 1)])
    assert hol.tolist() == [2, 0, 0, 0, 0, 1, 2]
