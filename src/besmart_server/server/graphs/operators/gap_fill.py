"""`gap_fill`: the missing intervals of a measured series, and nothing else."""

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
    operator,
    same_as_input,
)
from besmart_server.server.graphs.operators.profile import learned_shape


def _runs(missing: np.ndarray[Any, np.dtype[np.bool_]]) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive True values."""
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def fill_gaps(
    series: Series,
    since: pd.Timestamp,
    till: pd.Timestamp,
    *,
    freq_minutes: int = 15,
    max_linear_minutes: int = 60,
    shape: Series | None = None,
    context_hours: float = 24.0,
    timezone: str = "Europe/Warsaw",
) -> tuple[Series, dict[str, Any]]:
    """Estimates for the grid intervals of [since, till) that `series` lacks: only those.

    A gap of at most `max_linear_minutes` between two values is interpolated linearly; a longer
    one (or one at an edge) follows `shape` (by default the series' own weekday/time-of-day
    shape) scaled to the series' level within `context_hours` around the gap.
    """
    step = pd.Timedelta(minutes=freq_minutes)
    s = series.dropna()
    start = min(s.index[0].floor(step), since) if len(s) else since
    index = grid(start, till, freq_minutes)
    values = s.reindex(index).to_numpy(dtype=float)
    missing = np.isnan(values) & (index >= since)
    metrics: dict[str, Any] = {"gaps": 0, "linear": 0, "shaped": 0, "unfilled": 0}
    if not missing.any():
        return empty_series(), metrics
    if np.isnan(values).all():
        metrics |= {"gaps": len(_runs(missing)), "unfilled": int(missing.sum())}
        return empty_series(), metrics
    if shape is None:
        shape_values = learned_shape([s], index, timezone=timezone).to_numpy()
    else:
        shape_values = shape.reindex(index).interpolate(limit_area="inside").to_numpy(dtype=float)
    filled = np.full(len(index), np.nan)
    context = round(pd.Timedelta(hours=context_hours) / step)
    for a, b in _runs(missing):
        metrics["gaps"] += 1
        left, right = a - 1, b
        has_left = left >= 0 and not np.isnan(values[left])
        has_right = right < len(index) and not np.isnan(values[right])
        if has_left and has_right and (b - a) * freq_minutes <= max_linear_minutes:
            frac = (np.arange(a, b) - left) / (right - left)
            filled[a:b] = values[left] + frac * (values[right] - values[left])
            metrics["linear"] += b - a
            continue
        around = np.r_[max(0, a - context) : a, b : min(len(index), b + context)]
        known = around[~np.isnan(values[around]) & ~np.isnan(shape_values[around])]
        gap_shape = shape_values[a:b]
        if len(known) == 0 or np.isnan(gap_shape).any():
            metrics["unfilled"] += b - a
            continue
        level, shape_level = values[known].mean(), shape_values[known].mean()
        filled[a:b] = gap_shape * (level / shape_level) if shape_level else level
        metrics["shaped"] += b - a
    ok = missing & ~np.isnan(filled)
    return pd.Series(filled[ok], index=index[ok]), metrics


class GapFillParams(Params):
    """Grid step, the longest gap filled linearly, and the context for long gaps' level."""

    freq_minutes: int = Field(default=15, gt=0, le=MAX_STEP_MINUTES)
    max_linear_minutes: int = Field(default=60, ge=0)
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
