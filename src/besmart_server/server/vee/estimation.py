"""Substitute values for missing intervals: pure functions over one series on a grid.

The order follows the substitute-value rules in field-notes.md (Austria's ElWG §55, the German
MeteringCode): linear interpolation for a gap of at most 2 hours between two readings; beyond,
the same slot on the previous comparable days (workday, Saturday, Sunday — a public holiday
counts as a Sunday); where no comparable day is known, the assigned standard profile. When
register readings bracket a gap of an interval energy series, the gap's substitutes are scaled
so that their sum is the register advance less the measured intervals in between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import numpy as np
import pandas as pd
from numpy.typing import NDArray

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MAX_LINEAR_MS = 2 * HOUR_MS
LIKE_DAYS = 4  # comparable days averaged for a slot
LOOKBACK_DAYS = 56  # how far back comparable days are looked for


class Method(StrEnum):
    """The method code each substitute carries (MSCONS marks interpolation and comparable
    values alike)."""

    LINEAR = "linear"
    LIKE_DAY = "like_day"
    PROFILE = "profile"


@dataclass(frozen=True, slots=True)
class Substitutes:
    """Values for the missing grid times, each with its method; `scaled` marks those scaled
    to a register advance."""

    time: I64
    value: F64
    method: tuple[Method, ...]
    scaled: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.time.shape[0])

    def counts(self) -> dict[str, int]:
        """Substitutes per method."""
        out: dict[str, int] = {}
        for m in self.method:
            out[m.value] = out.get(m.value, 0) + 1
        return out


# A standard profile: values at the given grid times (UTC ms), NaN where it has none.
Profile = Callable[[I64], F64]


def day_types(times: I64, *, timezone: str, holidays: Sequence[date] = ()) -> I64:
    """0 workday, 1 Saturday, 2 Sunday or public holiday, by local date."""
    local = pd.to_datetime(times, unit="ms", utc=True).tz_convert(timezone)
    weekday = np.asarray(local.day_of_week)
    kind = np.where(weekday == 6, 2, np.where(weekday == 5, 1, 0)).astype(np.int64)
    if holidays:
        dates = np.asarray(local.date)
        off = np.isin(dates, np.asarray(list(holidays), dtype=object))
        kind = np.where(off, 2, kind)
    return kind


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def missing_grid(times: I64, *, since: int, till: int, step: int) -> I64:
    """Grid times (multiples of `step` from the epoch) in [since, till) without a reading."""
    first = -(-since // step) * step
    grid = np.arange(first, till, step, dtype=np.int64)
    return grid[~np.isin(grid, times)]


def _like_day(
    times: I64,
    values: F64,
    slots: I64,
    *,
    timezone: str,
    holidays: Sequence[date],
    days: int,
) -> F64:
    """The mean of the slot's value on the previous `days` days of the slot's day type."""
    known = dict(zip(times.tolist(), values.tolist(), strict=True))
    back = slots[:, None] - DAY_MS * np.arange(1, LOOKBACK_DAYS + 1, dtype=np.int64)[None, :]
    want = day_types(slots, timezone=timezone, holidays=holidays)
    types = day_types(back.ravel(), timezone=timezone, holidays=holidays).reshape(back.shape)
    out = np.full(len(slots), np.nan)
    for i in range(len(slots)):
        picked = [
            known[int(t)]
            for t, k in zip(back[i], types[i], strict=True)
            if k == want[i] and int(t) in known
        ][:days]
        if picked:
            out[i] = float(np.mean(picked))
    return out


def estimate(
    times: I64,
    values: F64,
    *,
    since: int,
    till: int,
    step: int,
    timezone: str = "Europe/Warsaw",
    holidays: Sequence[date] = (),
    max_linear_ms: int = MAX_LINEAR_MS,
    like_days: int = LIKE_DAYS,
    profile: Profile | None = None,
    registers: tuple[I64, F64] | None = None,
) -> Substitutes:
    """Substitutes for the grid times of [since, till) that `times` (sorted measured readings,
    before and after the window too) lacks.

    `registers` (times, readings) of the register an interval energy series belongs to: a gap
    bracketed by two readings is scaled to their advance less the measured energy between
    them. Slots no method can fill are left out.
    """
    slots = missing_grid(times, since=since, till=till, step=step)
    if not len(slots):
        return Substitutes(np.empty(0, np.int64), np.empty(0), (), np.zeros(0, bool))
    out = np.full(len(slots), np.nan)
    method: list[Method | None] = [None] * len(slots)
    # consecutive missing slots make one gap; its neighbours are the readings around it
    breaks = np.flatnonzero(np.diff(slots) != step) + 1
    bounds = list(zip([0, *breaks.tolist()], [*breaks.tolist(), len(slots)], strict=True))
    for a, b in bounds:
        t0, t1 = int(slots[a]), int(slots[b - 1])
        li = int(np.searchsorted(times, t0)) - 1
        ri = int(np.searchsorted(times, t1, side="right"))
        if li < 0 or ri >= len(times):
            continue
        tl, tr = int(times[li]), int(times[ri])
        if tr - tl - step <= max_linear_ms:
            frac = (slots[a:b] - tl) / (tr - tl)
            out[a:b] = values[li] + frac * (values[ri] - values[li])
            method[a:b] = [Method.LINEAR] * (b - a)
    rest = np.flatnonzero(np.isnan(out))
    if len(rest):
        liked = _like_day(
            times, values, slots[rest], timezone=timezone, holidays=holidays, days=like_days
        )
        ok = ~np.isnan(liked)
        out[rest[ok]] = liked[ok]
        for i in rest[ok].tolist():
            method[i] = Method.LIKE_DAY
    rest = np.flatnonzero(np.isnan(out))
    if len(rest) and profile is not None:
        shaped = profile(slots[rest])
        ok = ~np.isnan(shaped)
        out[rest[ok]] = shaped[ok]
        for i in rest[ok].tolist():
            method[i] = Method.PROFILE
    scaled = np.zeros(len(slots), dtype=bool)
    if registers is not None:
        _scale_to_registers(times, values, slots, out, scaled, bounds, step, registers)
    keep = ~np.isnan(out)
    return Substitutes(
        slots[keep],
        out[keep],
        tuple(m for m, k in zip(method, keep.tolist(), strict=True) if k and m is not None),
        scaled[keep],
    )


def _scale_to_registers(
    times: I64,
    values: F64,
    slots: I64,
    out: F64,
    scaled: NDArray[np.bool_],
    bounds: list[tuple[int, int]],
    step: int,
    registers: tuple[I64, F64],
) -> None:
    """Scale each bracketed gap (intervals labelled by their start) in place."""
    rt, rv = registers
    if len(rt) < 2:
        return
    for a, b in bounds:
        gap = slice(a, b)
        if np.isnan(out[gap]).any():
            continue
        start, end = int(slots[a]), int(slots[b - 1]) + step
        i = int(np.searchsorted(rt, start, side="right")) - 1  # last reading at or before
        j = int(np.searchsorted(rt, end))  # first reading at or after
        if i < 0 or j >= len(rt):
            continue
        lo, hi = int(rt[i]), int(rt[j])
        measured = values[(times >= lo) & (times < hi)].sum()
        others = (slots >= lo) & (slots < hi)
        others[gap] = False
        if np.isnan(out[others]).any():
            continue  # another unfilled gap shares the bracket: the advance is not this gap's
        target = float(rv[j] - rv[i]) - float(measured) - float(out[others].sum())
        if target < 0:
            continue
        total = float(out[gap].sum())
        out[gap] = out[gap] * (target / total) if total > 0 else target / (b - a)
        scaled[gap] = True
