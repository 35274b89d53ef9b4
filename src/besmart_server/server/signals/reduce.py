"""Pure reductions of one origin's points for drawing: min/max per bucket, counter energy.

A chart is at most a few thousand pixels wide, so a window of 525,600 points is sent as the
minimum and the maximum of each of about `max_points / 2` equal buckets, each at the time it
occurred: every peak and dip survives, and the line drawn through them covers exactly the
pixels the raw points would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from besmart_server.server.signals.pipeline import HOUR_MS, subtract_rounded

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Reduced:
    """Points to draw: times (UTC ms) and values, in time order."""

    time: I64
    value: F64


def minmax(
    time: I64, value: F64, *, since: int, till: int, max_points: int, edges: I64 | None = None
) -> Reduced:
    """The points as given when they are at most `max_points`; otherwise the min and the max of
    each bucket, each at its own time, in time order (one point for a bucket whose min and max
    are the same point). The buckets: `edges` (sorted, from at or before `since` to after
    `till`), else `max_points // 2` equal buckets of [since, till). NaNs are dropped.

    `time` must be sorted ascending and lie within [since, till)."""
    keep = ~np.isnan(value)
    t, v = (time, value) if keep.all() else (time[keep], value[keep])
    if len(t) <= max_points:
        return Reduced(t, v)
    if edges is None:
        edges = equal_edges(since, till, max(max_points // 2, 1))
    return minmax_pieces(t, v, t, v, t, edges)


def equal_edges(since: int, till: int, buckets: int) -> I64:
    """The edges of `buckets` equal buckets of [since, till) (to the ms, rounded down)."""
    # In Python ints where k * (till - since) would leave int64 (windows of decades at 10,000
    # buckets).
    span = till - since
    if span <= (2**63 - 1) // buckets:
        return since + (np.arange(buckets + 1, dtype=np.int64) * span) // buckets
    return np.array([since + k * span // buckets for k in range(buckets + 1)], np.int64)


def hour_edges(since: int, till: int, max_buckets: int) -> I64 | None:
    """Buckets of a whole number of UTC hours for a min/max reduction to at most `max_buckets`
    buckets, from the hour at or before `since` to the first edge at or after `till`; None when
    equal buckets of [since, till) would be shorter than an hour. Their edges are those of the
    blocks' hour summaries, so a long window's buckets come from them without decoding."""
    if (till - since) < HOUR_MS * max(max_buckets, 1):
        return None
    first = since - since % HOUR_MS
    hours = -(-(till - first) // HOUR_MS)
    size = -(-hours // max(max_buckets, 1))  # whole hours a bucket: at most max_buckets
    count = -(-hours // size)
    if first < -(2**63) or max(first + count * size * HOUR_MS, size * HOUR_MS) > 2**63 - 1:
        return None  # windows near or beyond the ends of time: equal buckets (or the 422)
    return first + np.arange(count + 1, dtype=np.int64) * (size * HOUR_MS)


def segment_extremes(low: F64, high: F64, starts: I64) -> tuple[F64, I64, F64, I64]:
    """Per segment of the rows (`starts`: ascending, the first at 0 or after rows no segment
    holds; each segment runs to the next start, the last to the end) the min of `low` and the
    first row reaching it, and the max of `high` and the first row reaching it. No NaNs."""
    n = low.shape[0]
    counts = np.diff(np.append(starts, n))
    vmin = np.minimum.reduceat(low, starts)
    vmax = np.maximum.reduceat(high, starts)
    index = np.arange(n)
    imin = np.minimum.reduceat(np.where(low == np.repeat(vmin, counts), index, n), starts)
    imax = np.minimum.reduceat(np.where(high == np.repeat(vmax, counts), index, n), starts)
    return vmin, imin, vmax, imax


def minmax_pieces(at: I64, low: F64, t_low: I64, high: F64, t_high: I64, edges: I64) -> Reduced:
    """minmax over pieces of a series in time order (`at`: each piece's start): points (low and
    high the value, both times its time) or summaries of whole hours or days (their min and max
    and the first time each is reached), each within one bucket of `edges`. The min of a
    bucket is reached first in the first piece that reaches it, so the answer is the points'
    whether the pieces are points or summaries of them."""
    # Bucket edges found by binary search in the sorted starts: O(buckets log n), no per-piece
    # division; the non-empty buckets' starts partition the pieces for reduceat.
    starts = np.searchsorted(at, edges[:-1])
    ends = np.searchsorted(at, edges[1:])
    starts = starts[ends > starts]
    vmin, imin, vmax, imax = segment_extremes(low, high, starts)
    tmin, tmax = t_low[imin], t_high[imax]
    low_first = tmin <= tmax
    times = np.stack([np.where(low_first, tmin, tmax), np.where(low_first, tmax, tmin)], 1)
    values = np.stack([np.where(low_first, vmin, vmax), np.where(low_first, vmax, vmin)], 1)
    keep_pair = np.stack([np.ones(len(tmin), bool), tmin != tmax], 1)
    return Reduced(times[keep_pair], values[keep_pair])


# Bucket sizes a counter's energy may be shown in, minutes: calendar-friendly steps.
ENERGY_STEPS_MIN = (1, 5, 15, 30, 60, 120, 180, 360, 720, 1440, 10_080)


def energy_step_ms(time: I64, *, since: int, till: int, max_buckets: int) -> int:
    """The bucket for a counter's interval energy: no finer than the readings (the median gap
    between them), no more than `max_buckets` across the window, from ENERGY_STEPS_MIN."""
    native = float(np.median(np.diff(time))) if len(time) > 1 else 0.0
    want = max(native, (till - since) / max(max_buckets, 1))
    for step in ENERGY_STEPS_MIN:
        if step * 60_000 >= want:
            return step * 60_000
    week = ENERGY_STEPS_MIN[-1] * 60_000  # beyond it whole weeks: still at most max_buckets
    return math.ceil(want / week) * week


def interval_energy(time: I64, register: F64, *, since: int, till: int, step_ms: int) -> Reduced:
    """A counter's energy per bucket of `step_ms` from `since`: the register interpolated at
    both edges of a bucket, differenced; only buckets whose both edges lie within the readings
    (no extrapolation). Each value is stamped at its bucket's start, and keeps 15 significant
    digits of the registers it is the difference of (0.2, not 0.19999999999999998)."""
    keep = ~np.isnan(register)
    t, r = time[keep], register[keep]
    if len(t) < 2:
        return Reduced(np.empty(0, np.int64), np.empty(0, np.float64))
    # The bucket edges since + k * step_ms up to the first at or after till, of them only
    # those within the readings: counted in Python ints, as a step may be most of 2**63.
    last = -(-(till - since) // step_ms)
    k0 = max(0, -(-(int(t[0]) - since) // step_ms))
    k1 = min(last, (int(t[-1]) - since) // step_ms)
    if k1 - k0 < 1:
        return Reduced(np.empty(0, np.int64), np.empty(0, np.float64))
    edges = since + step_ms * np.arange(k0, k1 + 1, dtype=np.int64)
    at_edges = np.interp(edges.astype(np.float64), t.astype(np.float64), r)
    return Reduced(edges[:-1], subtract_rounded(at_edges[1:], at_edges[:-1]))
