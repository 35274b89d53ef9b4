"""Completeness of a series: points per day (UTC, or local in a time zone) against what its
reading interval expects, and the gaps between readings. Pure functions over sorted capture
times (UTC ms)."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from besmart_server.server.signals.calendar import MINUTES_PER_DAY, Buckets

I64 = NDArray[np.int64]
DAY_MS = 86_400_000


def reading_step(times: I64) -> int | None:
    """The series' reading interval: the median gap between consecutive points (None when
    there are fewer than two)."""
    if len(times) < 2:
        return None
    return int(np.median(np.diff(times)))


@dataclass(frozen=True, slots=True)
class Daily:
    """Per day of the window: its start, the points found and the points expected."""

    day: I64
    count: I64
    expected: I64


def daily(times: I64, *, since: int, till: int, step: int, tz: ZoneInfo | None = None) -> Daily:
    """Points per day in [since, till), UTC days or the local days of `tz` (23 or 25 hours
    across a DST change), and the points a day holds at `step` (clipped to the window at its
    ends). `times` lie within the window."""
    edges = Buckets(MINUTES_PER_DAY, tz).edges(since, till - 1)
    days = edges[:-1]
    at = np.searchsorted(edges, times, side="right") - 1
    counts = np.bincount(at, minlength=len(days))[: len(days)]
    lo = np.maximum(days, since)
    hi = np.minimum(edges[1:], till)
    expected = (hi - lo + step - 1) // step
    return Daily(days, counts.astype(np.int64), expected.astype(np.int64))


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch of the window without readings: [since, till) and the readings it misses."""

    since: int
    till: int
    missing: int


def gaps(times: I64, *, since: int, till: int, step: int) -> list[Gap]:
    """Every stretch where the next reading comes later than 1.5 steps, the window's start
    and end included (a window without any reading is one gap), longest first."""
    if step <= 0:
        return []
    edges = np.concatenate(([since - step], times, [till]))
    d = np.diff(edges)
    idx = np.flatnonzero(d > step * 1.5)
    out = []
    for i in idx.tolist():
        start = int(edges[i]) + step
        end = int(edges[i + 1])
        if end > start:
            out.append(Gap(start, end, (end - start + step - 1) // step))
    out.sort(key=lambda g: (-g.missing, g.since))
    return out
