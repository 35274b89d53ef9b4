"""Forecast metrics against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from besmart_server.server.metrics import evaluate, mae, persistence, rmae, skill

DAY = pd.Timedelta(days=1)


def hourly(values: list[float] | np.ndarray, start: str = "2024-01-01") -> pd.Series:
    arr = np.asarray(values, dtype=float)
    return pd.Series(arr, index=pd.date_range(start, periods=len(arr), freq="h", tz="UTC"))


def test_mae_only_over_common_times() -> None:
    actual = hourly([1.0, 2.0, 3.0, 4.0])
    forecast = hourly([2.0, 2.0, 1.0], start="2024-01-01T01:00")  # vs 2, 3, 4
    assert mae(actual, forecast) == pytest.approx((0 + 1 + 3) / 3)
    assert math.isnan(mae(actual, hourly([1.0], start="2025-01-01")))


def test_rmae_divides_by_the_p1_to_p99_range() -> None:
    actual = hourly(np.arange(101.0))  # P1 = 1, P99 = 99 (linear percentiles)
    forecast = actual + 4.9
    assert rmae(actual, forecast) == pytest.approx(4.9 / 98.0)
    assert math.isnan(rmae(hourly([5.0] * 10), hourly([6.0] * 10)))  # no spread


def test_persistence_is_the_actual_a_lag_earlier() -> None:
    actual = hourly([1.0, 2.0, 3.0])
    naive = persistence(actual, pd.Timedelta(hours=1))
    assert naive.index[0] == actual.index[1]
    assert naive.tolist() == [1.0, 2.0, 3.0]


def test_skill_one_day_by_hand() -> None:
    day1 = [1.0] * 24
    day2 = [3.0] * 24
    actual = hourly(day1 + day2)
    target = actual[actual.index >= actual.index[24]]
    # persistence for day 2 is day 1 (MAE 2); a forecast off by 0.5 has skill 1 - 0.5/2
    assert skill(target, target + 0.5, actual, DAY) == pytest.approx(0.75)
    assert skill(target, target, actual, DAY) == pytest.approx(1.0)
    assert skill(target, hourly(day1, start="2024-01-02"), actual, DAY) == pytest.approx(0.0)


def test_evaluate_reports_all_four() -> None:
    rng = np.random.default_rng(0)
    weeks = np.tile(np.sin(np.arange(24) / 24 * 2 * np.pi), 15) + rng.normal(0, 0.1, 360)
    actual = hourly(weeks)
    last = actual[-24:]
    scores = evaluate(last, last * 0 + last.mean(), history=actual[:-24])
    assert set(scores) == {"mae", "rmae", "skill_1d", "skill_7d"}
    assert scores["skill_1d"] < 0  # a flat line loses to yesterday's shape
    perfect = evaluate(last, last, history=actual[:-24])
    assert perfect["mae"] == 0.0
    assert perfect["skill_1d"] == perfect["skill_7d"] == 1.0
