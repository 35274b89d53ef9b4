"""`gap_fill`: the missing intervals of a measured series, and nothing else (VEE's estimation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from besmart_server.server.graphs.operator_api import (
    MAX_STEP_MINUTES,
    Env,
    Operator,
    Params,
    Series,
    TimeZone,
    empty_series,
    grid,
    ns,
    operator,
    same_as_input,
)
from besmart_server.server.graphs.operators.profile import learned_shape
from besmart_server.server.vee import estimation
from besmart_server.server.vee.estimation import Method, Profile


def _level_scaled(
    shape: np.ndarray[Any, np.dtype[np.float64]],
    values: np.ndarray[Any, np.dtype[np.float64]],
    grid_ms: np.ndarray[Any, np.dtype[np.int64]],
    context: int,
) -> Profile:
    """`shape` (on the grid) scaled, gap by gap, to the series' level within `context` grid
    intervals around the gap: the fallback where no comparable day is known."""
    step = int(grid_ms[1] - grid_ms[0]) if len(grid_ms) > 1 else 1

    def at(slots: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
        out = np.full(len(slots), np.nan)
        pos = np.searchsorted(grid_ms, slots)
        breaks = np.flatnonzero(np.diff(slots) != step) + 1
        for a, b in zip([0, *breaks.tolist()], [*breaks.tolist(), len(slots)], strict=True):
            lo, hi = int(pos[a]), int(pos[b - 1]) + 1
            around = np.r_[max(0, lo - context) : lo, hi : min(len(grid_ms), hi + context)]
            known = around[~np.isnan(values[around]) & ~np.isnan(shape[around])]
            gap_shape = shape[lo:hi]
            if len(known) == 0 or np.isnan(gap_shape).any():
                continue
            level, shape_level = values[known].mean(), shape[known].mean()
            out[a:b] = gap_shape * (level / shape_level) if shape_level else level
        return out

    return at


def fill_gaps(
    series: Series,
    since: pd.Timestamp,
    till: pd.Timestamp,
    *,
    freq_minutes: int = 15,
    max_linear_minutes: int = 120,
    shape: Series | None = None,
    context_hours: float = 24.0,
    timezone: str = "Europe/Warsaw",
) -> tuple[Series, dict[str, Any]]:
    """Estimates for the grid intervals of [since, till) that `series` lacks: only those, by
    VEE's substitute rules (vee.estimation, the one implementation): linear up to
    `max_linear_minutes` between two values, the same slot of comparable previous days, else
    `shape` (by default the series' own weekday/time-of-day shape) scaled to the series' level
    within `context_hours` around the gap.
    """
    step = pd.Timedelta(minutes=freq_minutes)
    s = series.dropna()
    start = min(s.index[0].floor(step), since) if len(s) else since
    index = grid(start, till, freq_minutes)
    values = np.asarray(s.reindex(index).to_numpy(dtype=float), dtype=np.float64)
    grid_ms = ns(index) // 1_000_000
    known = ~np.isnan(values)
    metrics: dict[str, Any] = {"gaps": 0, "linear": 0, "like_day": 0, "shaped": 0, "unfilled": 0}
    step_ms = freq_minutes * 60_000
    since_ms = int(ns(pd.DatetimeIndex([since]))[0] // 1_000_000)
    till_ms = int(ns(pd.DatetimeIndex([till]))[0] // 1_000_000)
    missing = estimation.missing_grid(grid_ms[known], since=since_ms, till=till_ms, step=step_ms)
    if not len(missing):
        return empty_series(), metrics
    metrics["gaps"] = int(np.count_nonzero(np.diff(missing) != step_ms)) + 1
    if not known.any():
        metrics["unfilled"] = len(missing)
        return empty_series(), metrics
    if shape is None:
        shape_values = learned_shape([s], index, timezone=timezone).to_numpy()
    else:
        shape_values = shape.reindex(index).interpolate(limit_area="inside").to_numpy(dtype=float)
    context = round(pd.Timedelta(hours=context_hours) / step)
    subs = estimation.estimate(
        grid_ms[known],
        values[known],
        since=since_ms,
        till=till_ms,
        step=step_ms,
        timezone=timezone,
        max_linear_ms=max_linear_minutes * 60_000,
        profile=_level_scaled(np.asarray(shape_values, dtype=float), values, grid_ms, context),
    )
    counts = subs.counts()
    metrics["linear"] = counts.get(Method.LINEAR.value, 0)
    metrics["like_day"] = counts.get(Method.LIKE_DAY.value, 0)
    metrics["shaped"] = counts.get(Method.PROFILE.value, 0)
    metrics["unfilled"] = len(missing) - len(subs)
    out_index = pd.DatetimeIndex(pd.to_datetime(subs.time, unit="ms", utc=True)).as_unit("ns")
    return pd.Series(subs.value, index=out_index), metrics


class GapFillParams(Params):
    """Grid step, the longest gap filled linearly, and the context for long gaps' level."""

    freq_minutes: int = Field(default=15, gt=0, le=MAX_STEP_MINUTES)
    max_linear_minutes: int = Field(default=120, ge=0)
    context_hours: float = Field(default=24.0, gt=0, le=366 * 24)
    timezone: TimeZone = "Europe/Warsaw"


@operator("gap_fill", GapFillParams, inputs=(1, 2), output=same_as_input)
def gap_fill(inputs: Sequence[Series], p: GapFillParams, env: Env) -> Series:
    """Only the estimated points for the missing intervals of input 0 (input 1: a shape)."""
    out, metrics = fill_gaps(
        inputs[0],
        env.since,
        env.till,
        freq_minutes=p.freq_minutes,
        max_linear_minutes=p.max_linear_minutes,
        shape=inputs[1] if len(inputs) > 1 else None,
        context_hours=p.context_hours,
        timezone=p.timezone,
    )
    env.metrics.update(metrics)
    return out


OPERATORS: tuple[Operator[Any], ...] = (gap_fill,)
