"""Validation rules of VEE: pure functions over one series' points, each answering findings.

Every rule takes sorted capture times (UTC ms) and their values (the newest version of each
time, as `get_last` reads them) plus its thresholds, and answers `Finding`s: a stretch
[since, till) of the series, the rule's name, a severity and a detail for the operator.
Consecutive hits make one finding. Thresholds have documented defaults (`Thresholds`); a
client (owner) and a sensor type may override any of them (`Thresholds.merged`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from scipy.ndimage import median_filter  # type: ignore[import-untyped]  # no stubs

from besmart_server.server.signals import completeness

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
B = NDArray[np.bool_]
HOUR_MS = 3_600_000
DAY_MS = completeness.DAY_MS
MAD_TO_SIGMA = 1.4826  # a normal distribution's sigma per median absolute deviation


class Rule(StrEnum):
    """The rules' names, as quality events carry them."""

    GAP = "gap"
    NEGATIVE = "negative"
    REGISTER_DECREASE = "register_decrease"
    SPIKE = "spike"
    FLATLINE = "flatline"
    ZERO_RUN = "zero_run"
    HIGH = "high"
    FUTURE = "future"
    SUM_CHECK = "sum_check"
    REWRITE = "rewrite"


class Severity(StrEnum):
    """How much a finding matters: `error` is wrong data, `warning` is suspect data."""

    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule found: the stretch [since, till) of the series and why."""

    since: int
    till: int
    rule: Rule
    severity: Severity
    detail: dict[str, Any]


# Bounds of an override: finite and within what the rules compute with (a step_ms of 10**30
# left int64 and 10.0**400 overflowed: the client's every validation failed), and a spike
# window whose median costs points x window stays small.
THRESHOLD_MAX = 1e15
THRESHOLD_LIMITS = {"spike_half_window": 1000, "meter_max_digits": 15}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every rule's thresholds. Defaults follow the practice in field-notes.md (VEE)."""

    # gap: the reading interval (ms); None takes the series' median spacing. A reading later
    # than gap_factor steps after the previous one leaves a gap.
    step_ms: int | None = None
    gap_factor: float = 1.5
    # spike (Hampel filter): a point farther from the median of the spike_half_window points
    # each side than spike_sigmas robust sigmas (1.4826 x MAD), and farther than
    # spike_min_abs (in the series' unit; a flat neighbourhood has MAD 0).
    spike_half_window: int = 8
    spike_sigmas: float = 6.0
    spike_min_abs: float = 0.0
    # ... and farther than this fraction of |median| (1: beyond twice the expected, Elexon)
    spike_min_rel: float = 1.0
    # flatline: the same non-zero value (relative tolerance, as OpenSTEF) for this long.
    flatline_hours: float = 24.0
    flatline_rtol: float = 1e-5
    # zero run: exactly 0 for this long (marked outages exempt).
    zero_hours: float = 24.0
    # high: above the historical maximum x high_factor (Elexon: twice the expected), or above
    # the contracted power (kW; for interval energy, kW x the interval in hours).
    high_factor: float = 2.0
    contracted_power_kw: float | None = None
    # future: capture times later than the server's clock plus this skew.
    future_skew_ms: int = 60_000
    # register decrease: a register of this many digits rolls over at 10**digits; a drop from
    # its top part (rollover_top) to its bottom part is a rollover, not a decrease.
    meter_max_digits: int | None = None
    rollover_top: float = 0.9
    # sum check: |register advance - interval sum| above max(abs, rel x advance) per UTC day.
    sum_abs_tolerance: float = 0.01
    sum_rel_tolerance: float = 0.01
    # rewrite: a measured value changed by more than this (absolute) in a newer version.
    rewrite_tolerance: float = 1e-9

    def merged(self, overrides: Mapping[str, Any]) -> Thresholds:
        """These thresholds with `overrides` applied; ValueError names an unknown or bad key."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise ValueError(f"unknown threshold {key!r}")
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(f"threshold {key!r} must be a number")
            if value is not None and value < 0:
                raise ValueError(f"threshold {key!r} must not be negative")
            limit = THRESHOLD_LIMITS.get(key, THRESHOLD_MAX)
            if value is not None and not value <= limit:  # NaN too: JSON bodies may carry it
                raise ValueError(f"threshold {key!r} must be a finite number at most {limit:g}")
            current = getattr(self, key)
            if isinstance(current, int) and not isinstance(value, int) and value is not None:
                if key not in ("contracted_power_kw",) and float(value) != int(value):
                    raise ValueError(f"threshold {key!r} must be a whole number")
                value = int(value)
            changes[key] = value
        return replace(self, **changes)


DEFAULTS = Thresholds()


def _runs(mask: B) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive True values."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1).tolist()
    ends = np.flatnonzero(edges == -1).tolist()
    return list(zip(starts, ends, strict=True))


def series_step(times: I64, th: Thresholds) -> int | None:
    """The reading interval: the thresholds' step, else the median spacing."""
    return th.step_ms if th.step_ms else completeness.reading_step(times)


def _end(times: I64, i: int, step: int | None) -> int:
    """The exclusive end of the stretch whose last point is times[i]."""
    return int(times[i]) + (step or 1)


def _stretches(
    times: I64, mask: B, step: int | None, rule: Rule, severity: Severity, values: F64
) -> list[Finding]:
    out = []
    for a, b in _runs(mask):
        picked = values[a:b]
        detail = {"points": b - a, "min": float(picked.min()), "max": float(picked.max())}
        out.append(Finding(int(times[a]), _end(times, b - 1, step), rule, severity, detail))
    return out


def gaps(times: I64, *, since: int, till: int, th: Thresholds = DEFAULTS) -> list[Finding]:
    """Missing intervals of [since, till): where the next reading comes later than
    gap_factor steps (the window's edges included), in time order."""
    step = series_step(times, th)
    if step is None:
        return []
    inside = times[(times >= since) & (times < till)]
    edges = np.concatenate(([since - step], inside, [till]))
    idx = np.flatnonzero(np.diff(edges) > step * th.gap_factor)
    out = []
    for i in idx.tolist():
        start, end = int(edges[i]) + step, int(edges[i + 1])
        if end > start:
            missing = (end - start + step - 1) // step
            out.append(Finding(start, end, Rule.GAP, Severity.WARNING, {"missing": missing}))
    return out


def negative(times: I64, values: F64, th: Thresholds = DEFAULTS) -> list[Finding]:
    """Negative interval energy (an interval series never runs backwards)."""
    return _stretches(
        times, values < 0, series_step(times, th), Rule.NEGATIVE, Severity.ERROR, values
    )


def register_decrease(
    times: I64, values: F64, *, swaps: Sequence[int] = (), th: Thresholds = DEFAULTS
) -> list[Finding]:
    """A register reading below the previous one, unless a meter swap (a sensor state's
    start, in `swaps`) lies between them or the register rolled over at 10**meter_max_digits
    (a drop from its top part to a small reading)."""
    if len(times) < 2:
        return []
    drop = values[1:] < values[:-1]
    swap_arr = np.asarray(sorted(swaps), dtype=np.int64)
    if len(swap_arr):  # a swap in (t[i], t[i+1]] explains the drop
        between = np.searchsorted(swap_arr, times[1:], side="right") > np.searchsorted(
            swap_arr, times[:-1], side="right"
        )
        drop &= ~between
    if th.meter_max_digits:
        top = 10.0**th.meter_max_digits
        drop &= ~(
            (values[:-1] >= th.rollover_top * top) & (values[1:] < (1 - th.rollover_top) * top)
        )
    out = []
    for i in np.flatnonzero(drop).tolist():
        detail = {"before": float(values[i]), "after": float(values[i + 1])}
        out.append(
            Finding(
                int(times[i + 1]),
                int(times[i + 1]) + 1,
                Rule.REGISTER_DECREASE,
                Severity.ERROR,
                detail,
            )
        )
    return out


def spikes(times: I64, values: F64, th: Thresholds = DEFAULTS) -> list[Finding]:
    """Hampel filter: points far from the median of their neighbourhood in robust sigmas (and
    in proportion to it); a neighbourhood that spans a gap is not judged."""
    k = th.spike_half_window
    n = len(values)
    if n < 2 * k + 1 or k < 1:
        return []
    windows = sliding_window_view(np.pad(values, k, mode="reflect"), 2 * k + 1)
    if np.isfinite(values).all():  # the filter's selection is undefined for NaN
        # the same middle value as np.median of each window (an odd count, `mirror` being
        # np.pad's `reflect`), at a tenth of its cost: the rule ran on every validated window
        med: F64 = median_filter(values, size=2 * k + 1, mode="mirror")
    else:
        med = np.median(windows, axis=1)
    dev = np.abs(values - med)
    floor = np.maximum(th.spike_min_abs, th.spike_min_rel * np.abs(med))
    # A spike is beyond the floor and beyond its sigmas: the robust sigma (a second median
    # per window) is only computed where the first holds, which is rare.
    hit = dev > floor
    mad = np.zeros_like(values)
    near = np.flatnonzero(hit)
    if near.size:
        spread = np.abs(windows[near] - med[near, None])
        mad[near] = np.median(spread, axis=1) * MAD_TO_SIGMA
    hit &= dev > th.spike_sigmas * mad
    step = series_step(times, th)
    if step:  # a neighbourhood across a gap compares other hours of the day: not judged
        tpad = np.pad(times, k, mode="edge")
        hit &= tpad[2 * k :] - tpad[: -2 * k] <= 2 * k * step * th.gap_factor
    out = []
    for i in np.flatnonzero(hit).tolist():
        detail = {"value": float(values[i]), "median": float(med[i]), "sigma": float(mad[i])}
        out.append(
            Finding(int(times[i]), _end(times, i, step), Rule.SPIKE, Severity.WARNING, detail)
        )
    return out


def _long_runs(
    times: I64, mask: B, values: F64, hours: float, step: int | None, rule: Rule
) -> list[Finding]:
    out = []
    for a, b in _runs(mask):
        end = _end(times, b - 1, step)
        if end - int(times[a]) >= hours * HOUR_MS:
            detail = {
                "points": b - a,
                "value": float(values[a]),
                "hours": (end - int(times[a])) / HOUR_MS,
            }
            out.append(Finding(int(times[a]), end, rule, Severity.WARNING, detail))
    return out


def flatlines(times: I64, values: F64, th: Thresholds = DEFAULTS) -> list[Finding]:
    """The same non-zero value for flatline_hours or longer (a stuck meter or a repeated
    last value)."""
    if len(values) < 2:
        return []
    same = np.abs(np.diff(values)) <= th.flatline_rtol * np.abs(values[:-1])
    # point i belongs to a run when it equals its predecessor or its successor
    mask = np.zeros(len(values), dtype=bool)
    mask[1:] |= same
    mask[:-1] |= same
    mask &= values != 0
    return _long_runs(times, mask, values, th.flatline_hours, series_step(times, th), Rule.FLATLINE)


def zero_runs(
    times: I64, values: F64, *, outages: Sequence[tuple[int, int]] = (), th: Thresholds = DEFAULTS
) -> list[Finding]:
    """Exactly zero for zero_hours or longer; zeros inside a marked outage [since, till) are
    exempt."""
    mask = values == 0
    for lo, hi in outages:
        mask &= ~((times >= lo) & (times < hi))
    return _long_runs(times, mask, values, th.zero_hours, series_step(times, th), Rule.ZERO_RUN)


def high(
    times: I64,
    values: F64,
    *,
    historical_max: float | None,
    energy_per_interval: bool,
    th: Thresholds = DEFAULTS,
) -> list[Finding]:
    """Values above the historical maximum x high_factor, or above the contracted power
    (kW; an interval energy series compares kWh per interval with kW x its hours)."""
    step = series_step(times, th)
    limit = np.inf
    why: dict[str, Any] = {}
    if historical_max is not None and historical_max > 0:
        limit = historical_max * th.high_factor
        why = {"historical_max": historical_max, "factor": th.high_factor}
    if th.contracted_power_kw is not None:
        cap = th.contracted_power_kw
        if energy_per_interval:
            cap *= (step or HOUR_MS) / HOUR_MS
        if cap < limit:
            limit, why = cap, {"contracted": cap}
    if not np.isfinite(limit):
        return []
    found = _stretches(times, values > limit, step, Rule.HIGH, Severity.WARNING, values)
    return [replace(f, detail=f.detail | why | {"limit": float(limit)}) for f in found]


def future(times: I64, *, now_ms: int, th: Thresholds = DEFAULTS) -> list[Finding]:
    """Capture times later than the server's clock (plus future_skew_ms)."""
    late = times > now_ms + th.future_skew_ms
    if not late.any():
        return []
    first = int(times[late][0])
    return [
        Finding(
            first,
            int(times[late][-1]) + 1,
            Rule.FUTURE,
            Severity.ERROR,
            {"points": int(late.sum()), "now": now_ms},
        )
    ]


def sum_check(
    reg_times: I64,
    reg_values: F64,
    int_times: I64,
    int_values: F64,
    th: Thresholds = DEFAULTS,
) -> list[Finding]:
    """Per UTC day: the register's advance between its first and last reading of the day
    against the interval energy labelled in [first, last) (intervals are labelled by their
    start). Days with fewer than two register readings are not judged."""
    if len(reg_times) < 2:
        return []
    day = reg_times // DAY_MS
    out = []
    for d in np.unique(day).tolist():
        idx = np.flatnonzero(day == d)
        if len(idx) < 2:
            continue
        a, b = int(idx[0]), int(idx[-1])
        t0, t1 = int(reg_times[a]), int(reg_times[b])
        advance = float(reg_values[b] - reg_values[a])
        inside = (int_times >= t0) & (int_times < t1)
        if not inside.any():
            continue
        total = float(int_values[inside].sum())
        tol = max(th.sum_abs_tolerance, th.sum_rel_tolerance * abs(advance))
        if abs(advance - total) > tol:
            detail = {"register_advance": advance, "interval_sum": total, "tolerance": tol}
            out.append(Finding(t0, t1, Rule.SUM_CHECK, Severity.WARNING, detail))
    return out


def rewrites(times: I64, acq: I64, values: F64, th: Thresholds = DEFAULTS) -> list[Finding]:
    """Measured data re-written with another value: every version of origin 1 (times, their
    version stamps, values; tombstones as NaN are left out) where a newer version of a time
    differs from the one before it."""
    keep = ~np.isnan(values)
    times, acq, values = times[keep], acq[keep], values[keep]
    if len(times) < 2:
        return []
    order = np.lexsort((acq, times))
    t, v = times[order], values[order]
    changed = (t[1:] == t[:-1]) & (np.abs(v[1:] - v[:-1]) > th.rewrite_tolerance)
    hits = np.flatnonzero(changed)
    if not len(hits):
        return []
    out = []
    at = t[1:][hits]
    step = completeness.reading_step(np.unique(t))
    # hits on consecutive reading times make one stretch
    starts = [0, *(np.flatnonzero(np.diff(at) > (step or 1)) + 1).tolist()]
    ends = [*starts[1:], len(hits)]
    for a, b in zip(starts, ends, strict=True):
        i = int(hits[a])
        detail = {"points": b - a, "before": float(v[i]), "after": float(v[i + 1])}
        out.append(
            Finding(
                int(at[a]), int(at[b - 1]) + (step or 1), Rule.REWRITE, Severity.WARNING, detail
            )
        )
    return out
