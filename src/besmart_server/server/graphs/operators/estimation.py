"""`estimation`: a 15-minute profile for a meter with coarse readings, reconciled to them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import Field

from besmart_server.server.graphs.operator_api import (
    ENERGY_PER_INTERVAL,
    MAX_STEP_MINUTES,
    Env,
    Operator,
    Series,
    Windowed,
    empty_series,
    grid,
    min_step,
    ns,
    operator,
    produces,
)

F64 = NDArray[np.float64]
NEGLIGIBLE_KWH = 1e-12  # a period's shape summing to less is flat: scaling it would overflow
I64 = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Reconciled:
    """Values whose sum per period equals its target, and how each period was treated."""

    values: F64  # NaN in rejected periods and outside every period
    even: NDArray[np.bool_]  # per period: the shape summed to 0, so the energy was spread evenly
    rejected: NDArray[np.bool_]  # per period: a negative target beyond the tolerance


def reconcile(shape: F64, period: I64, targets: F64, tolerance: float = 0.0) -> Reconciled:
    """Scale `shape` within each period so its sum equals that period's target.

    `period[i]` is the period of interval i (-1: none). Negative shape values count as 0. A
    period whose shape sums to (practically) 0 gets its energy evenly; a target below 0 but within
    `tolerance` is taken as 0 (a counter's rounding), beyond it the period is rejected.
    """
    n_periods = len(targets)
    shape = np.clip(np.nan_to_num(np.asarray(shape, dtype=float)), 0.0, None)
    inside = period >= 0
    p = period[inside]
    sums = np.bincount(p, weights=shape[inside], minlength=n_periods)
    counts = np.bincount(p, minlength=n_periods)
    targets = np.asarray(targets, dtype=float)
    rejected = targets < -tolerance
    goal = np.where(targets < 0, 0.0, targets)
    shaped = sums > NEGLIGIBLE_KWH
    even = ~shaped & (counts > 0)
    factor = np.divide(goal, sums, out=np.zeros(n_periods), where=shaped)
    each = np.divide(goal, counts, out=np.zeros(n_periods), where=counts > 0)
    values = np.full(len(shape), np.nan)
    values[inside] = np.where(even[p], each[p], shape[inside] * factor[p])
    values[inside] = np.where(rejected[p], np.nan, values[inside])
    return Reconciled(values, even, rejected)


def energy_on_grid(series: Series, index: pd.DatetimeIndex, *, is_power: bool) -> F64:
    """kW or kWh-per-interval values as kWh per interval of `index` (0 where unknown)."""
    if len(series.dropna()) == 0 or len(index) == 0:
        return np.zeros(len(index))
    s = series.dropna()
    dst_h = (index[1] - index[0]) / pd.Timedelta(hours=1) if len(index) > 1 else 0.25
    src_step = min_step(s.index)
    src_h = src_step / pd.Timedelta(hours=1) if src_step is not None else dst_h
    rate = s.to_numpy(dtype=float) if is_power else s.to_numpy(dtype=float) / src_h
    # rates at interval centres, interpolated to the target intervals' centres
    x = ns(s.index) + src_h * 1.8e12
    xq = ns(index) + dst_h * 1.8e12
    out = np.interp(xq, x, rate, left=np.nan, right=np.nan) * dst_h
    return np.asarray(np.nan_to_num(out), dtype=np.float64)


Mode = Literal["load", "generation", "net_import", "net_export", "gross"]


def estimate(
    readings: Series,
    load: Series | None,
    generation_kw: Series | None,
    *,
    mode: Mode = "net_import",
    freq_minutes: int = 15,
    tolerance_kwh: float = 0.0,
    readings_kind: Literal["cumulative", "interval"] = "cumulative",
    zone_freq_minutes: int | None = None,
) -> tuple[Series, dict[str, Any]]:
    """The reconciled profile (kWh per interval) over the periods the readings close.

    Shapes by mode, with L the load profile scaled to the readings' level and G generation:
    load: L; generation: G; net_import (an import register behind which a plant runs):
    max(L - G, 0); net_export: max(G - L, 0); gross: L + G. Reading times are snapped to the
    nearest interval boundary.
    """
    step = pd.Timedelta(minutes=freq_minutes)
    r = readings.dropna()
    if readings_kind == "cumulative":
        times = pd.DatetimeIndex(r.index).round(step)
        keep = ~times.duplicated(keep="last")
        times, counter = times[keep], r.to_numpy(dtype=float)[keep]
        starts, ends = times[:-1], times[1:]
        targets: F64 = np.asarray(counter[1:] - counter[:-1], dtype=np.float64)
    else:
        assert zone_freq_minutes is not None
        starts = pd.DatetimeIndex(r.index).round(step)
        ends = starts + pd.Timedelta(minutes=zone_freq_minutes)
        targets = np.asarray(r.to_numpy(dtype=float), dtype=np.float64)
    metrics: dict[str, Any] = {"periods": len(targets)}
    if len(targets) == 0:
        metrics["warning"] = "fewer than two readings: nothing to estimate"
        return empty_series(), metrics
    index = grid(starts[0], ends.max(), freq_minutes)
    period = np.full(len(index), -1, dtype=np.int64)
    for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
        period[(index >= a) & (index < b)] = j
    covered = period >= 0
    lo = np.zeros(len(index)) if load is None else energy_on_grid(load, index, is_power=False)
    gen = np.zeros(len(index))
    if generation_kw is not None:
        gen = energy_on_grid(generation_kw, index, is_power=True)
    total = float(np.clip(targets, 0.0, None).sum())
    sum_l, sum_g = float(lo[covered].sum()), float(gen[covered].sum())
    # scale the load profile to the readings' level first, so L and G are comparable
    if mode == "net_import":
        k = (total + sum_g) / sum_l if sum_l > 0 else 0.0
        shape = np.clip(k * lo - gen, 0.0, None)
    elif mode == "net_export":
        k = max(sum_g - total, 0.0) / sum_l if sum_l > 0 else 0.0
        shape = np.clip(gen - k * lo, 0.0, None)
    elif mode == "gross":
        k = max(total - sum_g, 0.0) / sum_l if sum_l > 0 else 0.0
        shape = k * lo + gen
    elif mode == "generation":
        k, shape = 0.0, gen
    else:
        k, shape = 1.0, lo
    rec = reconcile(shape, period, targets, tolerance_kwh)
    ok = ~np.isnan(rec.values)
    out = pd.Series(rec.values[ok], index=index[ok])
    got = np.bincount(period[ok], weights=rec.values[ok], minlength=len(targets))
    good = ~rec.rejected
    discrepancy = np.abs(got[good] - np.clip(targets[good], 0.0, None))
    metrics |= {
        "periods_even": int(rec.even.sum()),
        "periods_rejected": int(rec.rejected.sum()),
        "max_discrepancy_kWh": float(discrepancy.max()) if discrepancy.size else 0.0,
        "tolerance_kWh": tolerance_kwh,
        "within_tolerance": bool((discrepancy <= tolerance_kwh + 1e-9).all()),
        "load_scale": k,
        "energy_kWh": float(out.sum()),
    }
    return out, metrics


class EstimationParams(Windowed):
    """How coarse readings (input 0) become a profile from a load shape (input 1) and,
    optionally, generation power (input 2, kW)."""

    mode: Mode = "net_import"
    freq_minutes: int = Field(default=15, gt=0, le=MAX_STEP_MINUTES)
    signal_discrepancy_tolerance_kWh: float = Field(default=0.0, ge=0)
    readings: Literal["cumulative", "interval"] = Field(
        default="cumulative",
        description="register readings (periods between consecutive readings) or energies "
        "per period starting at each point",
    )
    zone_freq_minutes: int | None = Field(
        default=None, gt=0, le=MAX_STEP_MINUTES, description="period of interval readings"
    )


def _check(p: EstimationParams, n_inputs: int) -> tuple[str, str] | None:
    if p.readings == "interval" and p.zone_freq_minutes is None:
        return ("zone_freq_minutes", "interval readings need zone_freq_minutes")
    if p.mode not in ("load",) and n_inputs < 3:
        return ("mode", f"mode {p.mode!r} needs a generation input (the third)")
    return None


@operator(
    "estimation",
    EstimationParams,
    inputs=(2, 3),
    check=_check,
    output=produces(ENERGY_PER_INTERVAL),
)
def estimation(inputs: Sequence[Series], p: EstimationParams, env: Env) -> Series:
    """A profile (kWh per interval) whose energy in each coarse period equals its reading."""
    out, metrics = estimate(
        inputs[0],
        inputs[1],
        inputs[2] if len(inputs) > 2 else None,
        mode=p.mode,
        freq_minutes=p.freq_minutes,
        tolerance_kwh=p.signal_discrepancy_tolerance_kWh,
        readings_kind=p.readings,
        zone_freq_minutes=p.zone_freq_minutes,
    )
    env.metrics.update(metrics)
    return out


OPERATORS: tuple[Operator[Any], ...] = (estimation,)
