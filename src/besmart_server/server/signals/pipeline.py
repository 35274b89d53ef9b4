"""The read pipeline of a signal, pure and vectorised: versions, origin, multiply, stitch, buckets.

Everything here works on a `Frame` of numpy columns and knows nothing of the database or HTTP.
Times are UTC unix milliseconds (int64); windows are half-open, `since <= time < till`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from besmart_server.server.signals.calendar import Buckets, label_points
from besmart_server.server.signals.catalog import SeriesKind, Unit, convert

# Re-exported (`X as X`) while signals/store.py imports them from here; besmart_server.wire
# is their home.
from besmart_server.wire import TYPE_DBL as TYPE_DBL
from besmart_server.wire import TYPE_INT as TYPE_INT
from besmart_server.wire import TYPE_RM, TYPE_STR

MS_PER_MINUTE: Final = 60_000
HOUR_MS: Final = 3_600_000
MS_PER_DAY: Final = 86_400_000
# Computed values (unit conversions, multipliers, stitching, aggregates) keep this many
# significant decimal digits: a double carries 15 exactly, and the 16th and 17th are the noise
# of binary arithmetic (0.7083 kW is 708.3000000000001 W unrounded).
SIGNIFICANT_DIGITS: Final = 15
_EXACT_POW10: Final = 22  # 10**k is an exact double for 0 <= k <= 22
_OPEN_END: Final = np.iinfo(np.int64).max  # `till` of a period that is still open

I64 = NDArray[np.int64]
I8 = NDArray[np.int8]
F64 = NDArray[np.float64]
Selector = NDArray[np.bool_] | NDArray[np.intp] | NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Frame:
    """Points as parallel columns; `text` is given only when STR points exist."""

    time: I64  # capture time, UTC ms
    origin: I64  # 1..5
    acq: I64  # version stamp: opaque, strictly ordered
    type: I8  # TYPE_* codes
    value: F64  # NaN for RM and STR
    text: tuple[str | None, ...] | None = None

    def __post_init__(self) -> None:
        n = self.time.shape[0]
        lengths = (self.origin.shape[0], self.acq.shape[0], self.type.shape[0])
        if any(m != n for m in (*lengths, self.value.shape[0])):
            raise ValueError("Frame columns differ in length")
        if self.text is not None and len(self.text) != n:
            raise ValueError("Frame text differs in length from the other columns")

    def __len__(self) -> int:
        return int(self.time.shape[0])

    @classmethod
    def empty(cls) -> Frame:
        """A frame without points."""
        return cls(
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.int8),
            np.empty(0, np.float64),
        )

    @classmethod
    def from_columns(
        cls,
        time: ArrayLike,
        origin: ArrayLike,
        acq: ArrayLike,
        type: ArrayLike,  # the column's name on the wire and in the store
        value: ArrayLike,
        text: Sequence[str | None] | None = None,
    ) -> Frame:
        """Build a frame from array-likes, coercing each column to its dtype."""
        return cls(
            np.asarray(time, dtype=np.int64).reshape(-1),
            np.asarray(origin, dtype=np.int64).reshape(-1),
            np.asarray(acq, dtype=np.int64).reshape(-1),
            np.asarray(type, dtype=np.int8).reshape(-1),
            np.asarray(value, dtype=np.float64).reshape(-1),
            None if text is None else tuple(text),
        )

    def take(self, selector: Selector) -> Frame:
        """The points picked by a boolean mask or an index array, in that order."""
        if selector.dtype == np.bool_ and bool(selector.all()):
            return self  # frames are never changed in place; a copy of 500,000 points is 5 ms
        idx = np.flatnonzero(selector) if selector.dtype == np.bool_ else selector
        kind = self.type[idx]
        text: tuple[str | None, ...] | None = None
        if self.text is not None and bool(np.any(kind == TYPE_STR)):
            texts = np.empty(len(self.text), dtype=object)
            texts[:] = self.text
            text = tuple(texts[idx].tolist())
        return Frame(self.time[idx], self.origin[idx], self.acq[idx], kind, self.value[idx], text)


@dataclass(frozen=True, slots=True)
class StatePeriod:
    """A sensor state as the pipeline sees it: its span, factor and the signal state's readings."""

    since: int
    till: int | None  # None: still installed
    # current_ratio x voltage_ratio (or multiplier), as the signal type asks; 1.0 when not asked
    factor: float
    value_for_since: float | None = None  # None: no signal state for this signal
    value_for_till: float | None = None


def concat(frames: Sequence[Frame]) -> Frame:
    """The points of several frames, one after the other."""
    if not frames:
        return Frame.empty()
    text: tuple[str | None, ...] | None = None
    if any(fr.text is not None for fr in frames):
        text = tuple(t for fr in frames for t in (fr.text or (None,) * len(fr)))
    return Frame(
        np.concatenate([fr.time for fr in frames]),
        np.concatenate([fr.origin for fr in frames]),
        np.concatenate([fr.acq for fr in frames]),
        np.concatenate([fr.type for fr in frames]),
        np.concatenate([fr.value for fr in frames]),
        text,
    )


def round_significant(values: F64, digits: int = SIGNIFICANT_DIGITS) -> F64:
    """`values` rounded to `digits` significant decimal digits: each is the double nearest a
    decimal of that many digits, as if printed so and read back (708.3000000000001 is 708.3;
    a near-tie in the digit after may go the other way). NaN, infinities and zero pass
    unchanged, and so do magnitudes whose scaling by a power of ten would not be exact (below
    about 1e-8 or above about 1e36 for 15 digits), where binary noise is far below any
    reading's resolution anyway."""
    out = np.array(values, dtype=np.float64)  # a copy: callers may keep their input
    mag = np.abs(out)
    ok = np.isfinite(out) & (mag > 0)
    if not bool(ok.any()):
        return out
    exponent = np.floor(np.log10(np.where(ok, mag, 1.0)))
    k = (digits - 1 - exponent).astype(np.int64)  # decimals to keep: scale by 10**k
    up = ok & (k >= 0) & (k <= _EXACT_POW10)
    down = ok & (k < 0) & (k >= -_EXACT_POW10)
    if bool(up.any()):
        scale = 10.0 ** k[up]
        out[up] = np.round(out[up] * scale) / scale
    if bool(down.any()):
        scale = 10.0 ** -k[down]
        out[down] = np.round(out[down] / scale) * scale
    return out


def subtract_rounded(a: F64, b: F64) -> F64:
    """a - b keeping 15 significant digits of the larger operand: the subtraction cancels
    leading digits but not the operands' float noise (3.5361 - 3.4456 is 0.0905, not
    0.09050000000000014, which 15 digits of the result itself would keep)."""
    d = a - b
    scale = np.maximum(np.abs(a), np.abs(b))
    ok = np.isfinite(d) & (scale > 0)
    exponent = np.floor(np.log10(np.where(ok, scale, 1.0)))
    k = (SIGNIFICANT_DIGITS - 1 - exponent).astype(np.int64)  # decimals kept: scale by 10**k
    out = d.copy()
    up = ok & (k >= 0) & (k <= _EXACT_POW10)
    down = ok & (k < 0) & (k >= -_EXACT_POW10)
    out[up] = np.round(d[up] * 10.0 ** k[up]) / 10.0 ** k[up]
    out[down] = np.round(d[down] / 10.0 ** -k[down]) * 10.0 ** -k[down]
    return out + 0.0  # no -0.0


def last_of_runs(*keys: NDArray[np.int64]) -> NDArray[np.bool_]:
    """True for the last row of each run of equal keys (rows sorted by them): the newest
    version where the last key is the one versions are ordered by."""
    n = keys[0].shape[0]
    last = np.ones(n, dtype=np.bool_)
    if n > 1:
        changed = np.zeros(n - 1, dtype=np.bool_)
        for k in keys:
            changed |= k[1:] != k[:-1]
        last[:-1] = changed
    return last


def sort_versions(f: Frame) -> Frame:
    """Every version, sorted by (time, origin, acq)."""
    if _is_sorted(f):
        return f  # what the store returns: a comparison pass instead of a 3-key sort
    return f.take(np.lexsort((f.acq, f.origin, f.time)))


def _is_sorted(f: Frame) -> bool:
    """Whether the points are in (time, origin, acq) order already."""
    if len(f) < 2:
        return True
    dt = np.diff(f.time)
    if bool((dt > 0).all()):
        return True
    do, da = np.diff(f.origin), np.diff(f.acq)
    ok = (dt > 0) | ((dt == 0) & ((do > 0) | ((do == 0) & (da >= 0))))
    return bool(ok.all())


def latest_versions(f: Frame) -> Frame:
    """The newest version per (time, origin), sorted; a pair whose newest version is RM is gone."""
    s = sort_versions(f)
    n = len(s)
    if n == 0:
        return s
    # The newest version is the last of each (time, origin) run; with equal acq (which the store
    # never produces) the later input row wins because lexsort is stable.
    return s.take(last_of_runs(s.time, s.origin) & (s.type != TYPE_RM))


def clip_window(f: Frame, since: int, till: int) -> Frame:
    """Only the points with since <= time < till."""
    return f.take((f.time >= since) & (f.time < till))


def _sorted_periods(periods: Sequence[StatePeriod]) -> list[StatePeriod]:
    return sorted(periods, key=lambda p: p.since)


def _period_index(time: I64, periods: Sequence[StatePeriod]) -> NDArray[np.intp]:
    """Index into the since-sorted `periods` of the one in force at each time; -1 for none.

    Periods are expected not to overlap (sensor states never do); if they did, the one that
    started last at or before the time is used.
    """
    if not periods:
        return np.full(time.shape[0], -1, dtype=np.intp)
    sinces = np.array([p.since for p in periods], dtype=np.int64)
    tills = np.array([_OPEN_END if p.till is None else p.till for p in periods], dtype=np.int64)
    idx = np.searchsorted(sinces, time, side="right") - 1
    covered = (idx >= 0) & (time < tills[np.maximum(idx, 0)])
    return np.where(covered, idx, -1).astype(np.intp)


def apply_multiplier(f: Frame, periods: Sequence[StatePeriod]) -> Frame:
    """Multiply each value by the factor of the period in force at its time (1.0 outside all)."""
    # Type codes stay as stored: an INT reading times a ratio is still that reading, scaled.
    ps = _sorted_periods(periods)
    # The trailing 1.0 is what index -1 (no period) picks.
    factors = np.array([*(p.factor for p in ps), 1.0], dtype=np.float64)
    return replace(f, value=f.value * factors[_period_index(f.time, ps)])


def stitch_shifts(periods: Sequence[StatePeriod]) -> list[float]:
    """What `stitch` adds to the readings of each period, in since order.

    The rules beyond docs/domain.md: a period without a signal state (`value_for_since` None) is not
    shifted and adds no increment, so the chain continues past it from the previous meter; a
    missing `value_for_till` counts as equal to `value_for_since` (no known increment). This
    function never guesses from the readings it is given (they depend on the window); the
    read path fills a missing `value_for_till` from the store first (the meter's last live
    reading before the swap: assume_swap_readings), so the fallback here only holds
    for a period without readings.
    """
    shifts: list[float] = []
    offset: float | None = None  # where the next meter's counter continues
    for p in _sorted_periods(periods):
        if p.value_for_since is None:
            shifts.append(0.0)
            continue
        start = p.factor * p.value_for_since
        if offset is None:
            offset = start  # the first meter's readings stay as stored
        shifts.append(offset - start)
        end = p.value_for_till if p.value_for_till is not None else p.value_for_since
        offset += p.factor * (end - p.value_for_since)
    return shifts


def stitch(f: Frame, periods: Sequence[StatePeriod]) -> Frame:
    """Stitch a counter across meter swaps: `v - f*vfs + offset` per period (see stitch_shifts).

    `f`'s values are expected already multiplied by the same periods' factors; points outside
    every period are not shifted.
    """
    ps = _sorted_periods(periods)
    shifts = np.array([*stitch_shifts(ps), 0.0], dtype=np.float64)
    return replace(f, value=f.value + shifts[_period_index(f.time, ps)])


@dataclass(frozen=True, slots=True)
class HourSums:
    """Sums of points per (origin, UTC hour), or per (origin, UTC day), sorted by (origin,
    hour). A bucket whose edges are hour edges is added up in three steps — the points of
    each hour, the hours of each UTC day within the bucket (in hour order), those days (in
    day order) — whether the points are decoded or summed already: day blocks keep the sums
    of their hours, or of their whole day (blocks.hour_summaries), and a read adds them up
    instead of decoding, bit for bit as decoding would."""

    hour: I64  # the hour's start, UTC ms
    origin: I64
    n: I64  # points summed
    total: F64  # their sum, np.add.reduceat over the hour's points in time order
    acq: I64  # the newest acq among them
    # The extremes of the points (charts' min/max per bucket, blocks.hour_summaries): their
    # min and max and the first time each is reached; None where not kept (sums alone), NaN
    # for a summary written before they were (a read decodes instead).
    low: F64 | None = None
    t_low: I64 | None = None
    high: F64 | None = None
    t_high: I64 | None = None

    def __len__(self) -> int:
        return int(self.hour.shape[0])

    @classmethod
    def empty(cls) -> HourSums:
        """No hours."""
        z = np.empty(0, dtype=np.int64)
        return cls(z, z, z, np.empty(0, dtype=np.float64), z)


def hour_sums(time: I64, group: I64, value: F64, acq: I64) -> HourSums:
    """The sums per (group, UTC hour) of points sorted by time within each group (group: the
    origin, or at write time a block's index), sorted by (group, hour)."""
    n = time.shape[0]
    if n == 0:
        return HourSums.empty()
    hour = time - time % HOUR_MS
    if n > 1 and not bool((group == group[0]).all()):
        dg = np.diff(group)
        if not bool(((dg > 0) | ((dg == 0) & (np.diff(hour) >= 0))).all()):
            order = np.lexsort((hour, group))  # stable: time order within each hour
            hour, group, value, acq = hour[order], group[order], value[order], acq[order]
    first = np.ones(n, dtype=np.bool_)
    first[1:] = (hour[1:] != hour[:-1]) | (group[1:] != group[:-1])
    starts = np.flatnonzero(first)
    # A sum beyond the double's range is inf (a write keeps it; a read reports Overflow).
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduceat(value, starts)
    return HourSums(
        hour[starts],
        group[starts],
        np.diff(np.append(starts, n)),
        total,
        np.maximum.reduceat(acq, starts),
    )


def _merge_hours(a: HourSums, b: HourSums) -> HourSums:
    """Hour sums of disjoint hours, as one sorted by (origin, hour)."""
    if not len(b):
        return a
    if not len(a):
        return b
    hour, origin = np.concatenate([a.hour, b.hour]), np.concatenate([a.origin, b.origin])
    order = np.lexsort((hour, origin))
    return HourSums(
        hour[order],
        origin[order],
        np.concatenate([a.n, b.n])[order],
        np.concatenate([a.total, b.total])[order],
        np.concatenate([a.acq, b.acq])[order],
    )


@dataclass(frozen=True, slots=True)
class Sums:
    """What a read took from the blocks' summaries instead of decoding points: hour sums, and
    sums of whole UTC days that no bucket edge cuts (`hour` the day's start)."""

    hours: HourSums
    days: HourSums

    def __len__(self) -> int:
        return len(self.hours) + len(self.days)


def aggregate(
    f: Frame,
    *,
    delta_t_minutes: int = 0,
    kind: SeriesKind,
    since: int,
    till: int,
    buckets: Buckets | None = None,
    sums: Sums | None = None,
) -> Frame:
    """Buckets of `delta_t_minutes` aligned to the epoch (or `buckets`: calendar buckets in a
    zone, see calendar.py), per origin, as DBL points labelled with their start.

    INSTANTANEOUS: mean and INTERVAL: sum of the points with since <= time < till, in buckets
    [g, next g) labelled g — the first label may precede an unaligned `since`; a bucket keeps
    that meaning over its true length (a local day of 23 or 25 hours averages or sums its own
    points). CUMULATIVE: the counter at each bucket start g with since <= g < till, linearly
    interpolated between the readings at/before and at/after g (which may lie outside the
    window), never extrapolated. acq is the newest acq among the points used. RM and STR
    points are ignored.

    When the bucket edges are hour edges (Buckets.on_hours), a mean or sum adds up sums
    (HourSums), not points: `sums` are those of the window's points the caller did not
    decode (whole days inside the window, from the blocks' summaries; INSTANTANEOUS and
    INTERVAL only), `f` the rest.
    """
    if buckets is None:
        buckets = Buckets(delta_t_minutes)  # ValueError for a size that is not positive
    if since >= till:
        raise ValueError("since must be before till")
    numeric = ((f.type == TYPE_DBL) | (f.type == TYPE_INT)) & np.isfinite(f.value)
    points = f.take(numeric)
    if kind == SeriesKind.CUMULATIVE:
        return _counter_at_grid(points, buckets, since, till)
    mean = kind == SeriesKind.INSTANTANEOUS
    if sums is None and not buckets.on_hours(since, till):
        return _bucket_reduce(clip_window(points, since, till), buckets, mean=mean)
    inside = clip_window(points, since, till)
    own = hour_sums(inside.time, inside.origin, inside.value, inside.acq)
    if sums is None:
        return _hours_reduce(own, HourSums.empty(), buckets, mean=mean)
    return _hours_reduce(_merge_hours(own, sums.hours), sums.days, buckets, mean=mean)


def _labels(time: I64, buckets: Buckets) -> I64:
    if buckets.epoch_aligned:
        step = int(buckets.size) * MS_PER_MINUTE
        return (time // step) * step  # floor division: aligned also before the epoch
    lo, hi = int(time.min()), int(time.max())
    edges = buckets.edges(lo, hi)
    if time.shape[0] > 4 * edges.shape[0] and bool((time[1:] >= time[:-1]).all()):
        # Sorted points (as the store gives them): a search per bucket, not per point.
        first = np.searchsorted(time, edges)  # edges[0] <= lo, edges[-1] > hi: covers all
        return np.repeat(edges[:-1], np.diff(first))
    return label_points(time, edges)


def _bucket_reduce(f: Frame, buckets: Buckets, *, mean: bool) -> Frame:
    n = len(f)
    if n == 0:
        return Frame.empty()
    return _reduce_runs(_labels(f.time, buckets), f.origin, f.acq, f.value, None, mean=mean)


def _reduce_runs(
    label: I64, origin: I64, acq: I64, total: F64, count: I64 | None, *, mean: bool
) -> Frame:
    """One DBL point per (bucket label, origin), in that order (a stable sort when the rows
    are not in it already, so each bucket adds up in time order): the sum of `total`, or
    (`mean`) that sum over the bucket's `count` (its number of rows when None), with the
    newest acq."""
    if not (bool((origin == origin[0]).all()) and bool((np.diff(label) >= 0).all())):
        order = np.lexsort((origin, label))
        label, origin, acq, total = label[order], origin[order], acq[order], total[order]
        count = None if count is None else count[order]
    first = np.ones(label.shape[0], dtype=np.bool_)
    first[1:] = (label[1:] != label[:-1]) | (origin[1:] != origin[:-1])
    starts = np.flatnonzero(first)
    result = np.add.reduceat(total, starts)
    if mean:
        runs = np.diff(np.append(starts, label.shape[0]))
        result = result / (runs if count is None else np.add.reduceat(count, starts))
    return Frame(
        label[starts],
        origin[starts],
        np.maximum.reduceat(acq, starts),
        np.full(starts.shape[0], TYPE_DBL, dtype=np.int8),
        result.astype(np.float64),
    )


def _hours_reduce(h: HourSums, days: HourSums, buckets: Buckets, *, mean: bool) -> Frame:
    """_bucket_reduce over sums (HourSums): the hours `h` of each UTC day within a bucket
    added up in hour order, with `days` (whole days within one bucket) the pieces of each
    bucket, added up in time order."""
    if len(h):
        label = _labels(h.hour, buckets)
        day = h.hour - h.hour % MS_PER_DAY
        first = np.ones(len(h), dtype=np.bool_)
        first[1:] = (
            (day[1:] != day[:-1]) | (label[1:] != label[:-1]) | (h.origin[1:] != h.origin[:-1])
        )
        at = np.flatnonzero(first)
        pieces = HourSums(
            h.hour[at],
            h.origin[at],
            np.add.reduceat(h.n, at),
            np.add.reduceat(h.total, at),
            np.maximum.reduceat(h.acq, at),
        )
        piece_label = label[at]
    else:
        pieces, piece_label = h, np.empty(0, dtype=np.int64)
    if len(days):
        pieces = _merge_hours(pieces, days)
        piece_label = _labels(pieces.hour, buckets)  # a piece lies within its bucket
    if not len(pieces):
        return Frame.empty()
    return _reduce_runs(piece_label, pieces.origin, pieces.acq, pieces.total, pieces.n, mean=mean)


def _counter_at_grid(f: Frame, buckets: Buckets, since: int, till: int) -> Frame:
    n = len(f)
    if n == 0:
        return Frame.empty()
    order = np.lexsort((f.acq, f.time, f.origin))
    time, origin, acq, value = f.time[order], f.origin[order], f.acq[order], f.value[order]
    # One reading per (origin, time): the newest, should the caller not have resolved versions.
    last = last_of_runs(origin, time)
    time, origin, acq, value = time[last], origin[last], acq[last], value[last]
    bounds = [0, *(np.flatnonzero(origin[1:] != origin[:-1]) + 1).tolist(), origin.shape[0]]
    pieces: list[Frame] = []
    for lo_i, hi_i in itertools.pairwise(bounds):
        t, v, a = time[lo_i:hi_i], value[lo_i:hi_i], acq[lo_i:hi_i]
        # Grid points with a reading at/before and at/after them, inside the window.
        lo = max(since, int(t[0]))
        hi = min(till - 1, int(t[-1]))
        if lo > hi:
            continue
        grid = _grid(buckets, lo, hi)
        if grid.shape[0] == 0:
            continue
        after = np.searchsorted(t, grid, side="left")  # first reading at/after g
        exact = t[after] == grid
        before = np.where(exact, after, after - 1)  # last reading at/before g
        t0, t1 = t[before], t[after]
        span = (t1 - t0).astype(np.float64)
        weight = np.divide(
            (grid - t0).astype(np.float64), span, out=np.zeros(grid.shape[0]), where=span != 0
        )
        pieces.append(
            Frame(
                grid,
                np.full(grid.shape[0], int(origin[lo_i]), dtype=np.int64),
                np.maximum(a[before], a[after]),
                np.full(grid.shape[0], TYPE_DBL, dtype=np.int8),
                v[before] + (v[after] - v[before]) * weight,
            )
        )
    out = concat(pieces)
    return out.take(np.lexsort((out.origin, out.time)))


def _grid(buckets: Buckets, lo: int, hi: int) -> I64:
    """The bucket starts g with lo <= g <= hi."""
    if buckets.epoch_aligned:
        step = int(buckets.size) * MS_PER_MINUTE
        return np.arange(-(-lo // step) * step, (hi // step) * step + 1, step, dtype=np.int64)
    edges = buckets.edges(lo, hi)
    return edges[(edges >= lo) & (edges <= hi)]


# --- one read, step by step -------------------------------------------------------------------


class Overflow(ArithmeticError):
    """A multiplied, stitched, aggregated or converted value beyond the double's range."""

    def __init__(self, time: int, unit: Unit, *, converted: bool) -> None:
        super().__init__(
            f"The value at time {time} overflows in {unit.symbol} (multiplied, aggregated or "
            "converted beyond ±1.8e308)"
        )
        self.converted = converted  # whether the conversion to the output unit is to blame


@dataclass(frozen=True, slots=True)
class Plan:
    """What one read asks of `run`: its window and which steps apply. The service fills it in
    from the query and the signal type; what follows from it (which versions the store returns,
    whether the read widens to the readings around the window, which meter periods and swap
    readings it needs) is decided here."""

    since: int
    till: int
    kind: SeriesKind
    unit: Unit  # the stored unit
    out_unit: Unit  # 6. the unit asked for
    get_last: bool = False  # 1. the newest version of each (time, origin) only
    acq_before: int | None = None  # 1. only versions acquired before this (µs): `as_of`
    multiply: bool = False  # 3. the states' ratios (the caller asked and the type has ratios)
    raw: bool = False  # 4. a counter's readings as its meters read them, not stitched
    buckets: Buckets | None = None  # 5. delta_t or calendar aggregation

    @property
    def newest_only(self) -> bool:
        """Whether the store is to return only the newest version of each (time, origin), as of
        `acq_before` (an aggregate uses nothing else); otherwise it returns every version."""
        return self.get_last or self.buckets is not None

    @property
    def widens(self) -> bool:
        """Whether the read needs the live readings just outside the window (store.neighbours):
        a counter at a bucket start interpolates between the readings around it, however far
        outside the window they lie (those alone, not the days between them)."""
        return self.buckets is not None and self.kind == SeriesKind.CUMULATIVE

    @property
    def stitches(self) -> bool:
        """Whether a counter is stitched across meter swaps (step 4)."""
        return self.kind == SeriesKind.CUMULATIVE and not self.raw

    @property
    def needs_periods(self) -> bool:
        """Whether the sensor's states (StatePeriods) are needed: for steps 3 and 4."""
        return self.multiply or self.stitches

    @property
    def converts(self) -> bool:
        """Whether the values change unit (step 6)."""
        return self.out_unit.unit_id != self.unit.unit_id


@dataclass(frozen=True, slots=True)
class Result:
    """One read's points after every step, and what had to be assumed on the way."""

    frame: Frame
    warnings: tuple[str, ...] = ()


def missing_swap_ends(periods: Sequence[StatePeriod], newest: int) -> list[StatePeriod]:
    """The ended periods whose meter's last reading `run` needs and the states do not give: a
    stitched period without value_for_till that shifts a later stitched period, up to the
    read's newest point. For each the caller hands `run` the readings at or before its `till`
    (store.neighbours), keyed by the period's `since`."""
    last_stitched = max((p.since for p in periods if p.value_for_since is not None), default=0)
    return [
        p
        for p in periods
        if p.value_for_since is not None
        and p.till is not None
        and p.value_for_till is None
        and p.till <= min(newest, last_stitched)
    ]


def assume_swap_readings(
    periods: Sequence[StatePeriod],
    f: Frame,
    swap_edges: Mapping[int, Frame],
    warnings: list[str],
) -> list[StatePeriod]:
    """The periods with what a meter swap lacks filled in, and a warning for each assumption
    that shifts a point of `f` (README, "Meter swaps").

    An ended period whose signal state has no value_for_till: its meter is taken to have
    stopped at its last live reading before the swap (newest in time of `swap_edges[since]`,
    the readings the store holds at/before its till), so the next meter continues from there
    instead of dropping back by what the previous one counted (negative consumption). With no
    reading in the period it counted nothing (value_for_till = value_for_since). The reading
    comes from the store, not from the window, so a stitched value does not depend on the
    window it is read in.
    """
    missing = {p.since for p in missing_swap_ends(periods, int(f.time.max()))} if len(f) else set()
    stitched = any(p.value_for_since is not None for p in periods)
    out: list[StatePeriod] = []
    for p in _sorted_periods(periods):
        span = f"{p.since}..{'' if p.till is None else p.till}"
        if p.value_for_since is None:
            inside = (f.time >= p.since) & (p.till is None or f.time < p.till)
            if stitched and bool(np.any(inside)):
                warnings.append(
                    f"installation period {span} has no value_for_since for this signal: its "
                    "readings are not stitched (as its meter reads them)"
                )
        elif p.since in missing:
            edge = swap_edges[p.since]
            edge = edge.take(edge.time >= p.since)
            if len(edge):
                i = int(np.argmax(edge.time))
                at, value = int(edge.time[i]), float(edge.value[i])
                p = replace(p, value_for_till=value)
                warnings.append(
                    f"installation period {span} has no value_for_till for this signal: the "
                    f"next meter is assumed to continue from the last reading before the swap "
                    f"({value:g} at {at})"
                )
            else:
                warnings.append(
                    f"installation period {span} has no value_for_till for this signal and no "
                    "reading: its meter is assumed to have counted nothing (value_for_since)"
                )
        out.append(p)
    return out


# A multiplier (a state's ratios are any number) can take a value beyond the double's range:
# the steps let it become inf/NaN quietly and Overflow is raised for it at the end.
@np.errstate(over="ignore", invalid="ignore")
def run(
    points: Frame,
    plan: Plan,
    *,
    neighbours: Frame | None = None,
    periods: Sequence[StatePeriod] = (),
    swap_edges: Mapping[int, Frame] | None = None,
    sums: Sums | None = None,
) -> Result:
    """One read's steps, in order (the numbers of docs/domain.md):

    1. versions: every version acquired before `plan.acq_before`, or (`plan.newest_only`) the
       newest of each (time, origin), a pair whose newest version is RM gone; 2. origin (the
       store read one origin when asked); 3. multiplier; 4. stitching across meter swaps;
    5. delta_t or calendar aggregation; 6. output unit. Computed values keep 15 significant
    digits (round_significant); Overflow for one beyond the double's range.

    `points` are what the store holds for the window (newest versions only when
    `plan.newest_only`), `neighbours` the readings around it (`plan.widens`), `periods` the
    sensor's states (`plan.needs_periods`) and `swap_edges` the readings before each swap of
    `missing_swap_ends`, by period since. `sums`: sums of the window's points that
    `points` leaves out (`summable`), which the buckets add up with those of `points`.
    """
    f = concat([points, neighbours]) if neighbours is not None and len(neighbours) else points
    if plan.acq_before is not None and len(f) and not plan.newest_only:
        f = f.take(f.acq < plan.acq_before)  # acq is µs, a whole ms (store.py)
    if not len(f) and not (sums is not None and len(sums)):
        return Result(f)
    if plan.newest_only:
        # The store returned the newest of each (time, origin): this drops those that are RM
        # (idempotent on resolved points).
        f = latest_versions(f)
    stored = f.value  # values the steps below leave as they are are not rounded
    warnings: list[str] = []
    if plan.multiply:
        f = apply_multiplier(f, periods)
    if plan.stitches:
        f = stitch(f, assume_swap_readings(periods, f, swap_edges or {}, warnings))
    if plan.buckets is not None:
        if plan.needs_periods:  # the aggregate would leave an overflowed point out
            _check_finite(f, f.value, plan.unit, converted=False)
        f = aggregate(
            f,
            kind=plan.kind,
            since=plan.since,
            till=plan.till,
            buckets=plan.buckets,
            sums=sums,
        )
    if plan.converts:
        numeric = (f.type == TYPE_DBL) | (f.type == TYPE_INT)
        value = np.where(numeric, convert(f.value, plan.unit, plan.out_unit), f.value)
        f = Frame(f.time, f.origin, f.acq, f.type, value, f.text)
    if plan.needs_periods or plan.buckets is not None or plan.converts:
        f = _computed(f, None if plan.buckets is not None else stored, plan)
    return Result(f, tuple(warnings))


def summable(plan: Plan, periods: Sequence[StatePeriod] | None) -> bool:
    """Whether a read may take the sums of whole days from the blocks' hour summaries
    (HourSums) instead of decoding them, with exactly the numbers decoding gives: a mean or
    sum over buckets whose edges are hour edges, of the newest versions (no as_of), each value
    as stored (`periods`: the sensor's states when the plan multiplies; a factor other than 1
    changes each point before it is summed)."""
    if plan.buckets is None or plan.acq_before is not None or plan.kind == SeriesKind.CUMULATIVE:
        return False
    if plan.multiply and any(p.factor != 1.0 for p in periods or ()):
        return False
    return plan.buckets.on_hours(plan.since, plan.till)


def _computed(f: Frame, before: F64 | None, plan: Plan) -> Frame:
    """Computed values rounded (round_significant): every value, or those that differ from
    `before` (the stored ones, point for point); Overflow for one beyond the double's range."""
    value = round_significant(f.value)
    if before is not None:
        value = np.where(f.value != before, value, f.value)
    _check_finite(f, value, plan.out_unit, converted=plan.converts)
    return Frame(f.time, f.origin, f.acq, f.type, value, f.text)


def _check_finite(f: Frame, value: F64, unit: Unit, *, converted: bool) -> None:
    """Overflow for a numeric point of `f` whose `value` is not finite."""
    bad = ((f.type == TYPE_DBL) | (f.type == TYPE_INT)) & ~np.isfinite(value)
    if bool(bad.any()):
        raise Overflow(int(f.time[int(np.flatnonzero(bad)[0])]), unit, converted=converted)
