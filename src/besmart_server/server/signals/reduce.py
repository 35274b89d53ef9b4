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

from besmart_server.server.signals.pipeline import subtract_rounded

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Reduced:
    """Points to draw: times (UTC ms) and values, in time order."""

    time: I64
    value: F64


def minmax(time: I64, value: F64, *, since: int, till: int, max_points: int) -> Reduced:
    """The points as given when they are at most `max_points`; otherwise the min and the max of
    each of `max_points // 2` equal buckets of [since, till), each at its own time, in time
    order (one point for a bucket whose min and max are the same point). NaNs are dropped.

    `time` must be sorted ascending and lie within [since, till)."""
    keep = ~np.isnan(value)
    t, v = (time, value) if keep.all() else (time[keep], value[keep])
    if len(t) <= max_points:
        return Reduced(t, v)
    buckets = max(max_points // 2, 1)
    # Bucket edges, found by binary search in the sorted times: O(buckets log n), no per-point
    # division; the non-empty buckets' starts partition the points for reduceat. In Python ints
    # where k * (till - since) would leave int64 (windows of decades at 10,000 buckets).
    span = till - since
    if span <= (2**63 - 1) // buckets:
        edges = since + (np.arange(buckets + 1, dtype=np.int64) * span) // buckets
    else:
        edges = np.array([since + k * span // buckets for k in range(buckets + 1)], np.int64)
    starts = np.searchsorted(t, edges[:-1])
    ends = np.searchsorted(t, edges[1:])
    nonempty = ends > starts
    starts, counts = starts[nonempty], (ends - starts)[nonempty]
    vmin = np.minimum.reduceat(v, starts)
    vmax = np.maximum.reduceat(v, starts)
    index = np.arange(len(v))
    # The first index at which each bucket reaches its min and its max.
    imin = np.minimum.reduceat(np.where(v == np.repeat(vmin, counts), index, len(v)), starts)
    imax = np.minimum.reduceat(np.where(v == np.repeat(vmax, counts), index, len(v)), starts)
    first = np.minimum(imin, imax)
    second = np.maximum(imin, imax)
    pick = np.stack([first, second], 1)
    keep_pair = np.stack([np.ones(len(first), bool), second != first], 1)
    at = pick[keep_pair]
    return Reduced(t[at], v[at])


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
