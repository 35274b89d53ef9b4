"""Forecast quality as OpenSTEF reports it: MAE, rMAE and skill against persistence."""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import pandas as pd

Series: TypeAlias = "pd.Series[float]"


DAY = pd.Timedelta(days=1)
WEEK = pd.Timedelta(days=7)


def _aligned(actual: Series, forecast: Series) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    both = pd.concat([actual, forecast], axis=1, join="inner").dropna()
    return both.iloc[:, 0].to_numpy(dtype=float), both.iloc[:, 1].to_numpy(dtype=float)


def mae(actual: Series, forecast: Series) -> float:
    """Mean absolute error over the times both series have; NaN if none."""
    a, f = _aligned(actual, forecast)
    return float(np.mean(np.abs(a - f))) if len(a) else float("nan")


def rmae(actual: Series, forecast: Series) -> float:
    """MAE / (P99 - P1) of the actuals at the compared times; NaN when that range is 0."""
    a, f = _aligned(actual, forecast)
    if not len(a):
        return float("nan")
    spread = float(np.percentile(a, 99) - np.percentile(a, 1))
    return float(np.mean(np.abs(a - f))) / spread if spread > 0 else float("nan")


def persistence(actual: Series, lag: pd.Timedelta) -> Series:
    """The naive forecast: the actual value `lag` earlier."""
    shifted = actual.copy()
    shifted.index = shifted.index + lag
    return shifted


def skill(actual: Series, forecast: Series, history: Series, lag: pd.Timedelta) -> float:
    """1 - MAE(forecast) / MAE(persistence at `lag`), both over the times persistence covers.

    `history` holds the actuals the persistence forecast may use (at least `lag` before).
    """
    naive = persistence(history, lag)
    frame = pd.concat([actual, forecast, naive], axis=1, join="inner").dropna()
    if not len(frame):
        return float("nan")
    a, f, n = (frame.iloc[:, i].to_numpy(dtype=float) for i in range(3))
    base = float(np.mean(np.abs(a - n)))
    return 1.0 - float(np.mean(np.abs(a - f))) / base if base > 0 else float("nan")


def evaluate(actual: Series, forecast: Series, history: Series | None = None) -> dict[str, float]:
    """MAE, rMAE and skill against persistence one day and one week earlier."""
    hist = actual if history is None else pd.concat([history, actual]).sort_index()
    hist = hist[~hist.index.duplicated(keep="last")]
    return {
        "mae": mae(actual, forecast),
        "rmae": rmae(actual, forecast),
        "skill_1d": skill(actual, forecast, hist, DAY),
        "skill_7d": skill(actual, forecast, hist, WEEK),
    }
