"""Chart reads: one signal's window through the read pipeline, split by origin and reduced to
about `max_points` per origin (min/max per bucket), with the window's summary figures.

The web pages draw from this route, and scripts can call it the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sqlalchemy import Connection

from besmart_server.server import metrics
from besmart_server.server.access import Principal
from besmart_server.server.db import now_ms
from besmart_server.server.errors import Invalid
from besmart_server.server.signals import calendar, reduce
from besmart_server.server.signals import completeness as completeness_mod
from besmart_server.server.signals.catalog import SeriesKind, SignalType, Unit, signal_type_by_moid
from besmart_server.server.signals.pipeline import (
    Frame,
    HourSums,
    Overflow,
    Sums,
    round_significant,
    run,
)
from besmart_server.server.signals.service import (
    FrameRead,
    ReadBudget,
    ReadQuery,
    check_query,
    load_periods,
    read_frame,
    read_plan,
    readable_series,
)
from besmart_server.server.signals.store import SeriesStore
from besmart_server.wire import ORIGIN_NAMES, TIME_MAX, TIME_MIN, TYPE_DBL, TYPE_INT

KIND_NAMES = {
    SeriesKind.INSTANTANEOUS: "instantaneous",
    SeriesKind.CUMULATIVE: "cumulative",
    SeriesKind.INTERVAL: "interval",
}
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
MAX_POINTS_LIMIT = 20_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ChartQuery:
    """One chart's read: the window, the drawing budget, and how to show a counter."""

    client_cid: int
    sensor_mid: int
    signal_type_moid: int
    since: int
    till: int
    max_points: int = 2000
    as_of: int | None = None
    register: bool = False  # counters: the register itself instead of energy per bucket
    apply_multiplier: bool = True


def _query(
    q: ChartQuery,
    *,
    since: int | None = None,
    till: int | None = None,
    origin: int | None = None,
    raw: bool = False,
) -> ReadQuery:
    """The read of `q`'s series over [since, till) (`q`'s window by default), newest versions
    as of `q.as_of`: in the chart unit with the installation ratios as `q` asks, or `raw`."""
    return ReadQuery(
        client_cid=q.client_cid,
        sensor_mid=q.sensor_mid,
        signal_type_moid=q.signal_type_moid,
        since=q.since if since is None else since,
        till=q.till if till is None else till,
        get_last=True,
        raw=raw,
        signal_origin_id=origin,
        apply_multiplier=q.apply_multiplier and not raw,
        is_chart=not raw,
        as_of=q.as_of,
    )


def _read(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    q: ChartQuery,
    budget: ReadBudget,
    *,
    since: int | None = None,
    till: int | None = None,
    origin: int | None = None,
    raw: bool = False,
) -> FrameRead:
    """The newest versions (as of `q.as_of`) of `q`'s series over [since, till) (`q`'s window
    by default): in the chart unit with the installation ratios as `q` asks, or `raw`."""
    rq = _query(q, since=since, till=till, origin=origin, raw=raw)
    return read_frame(conn, store, principal, rq, budget=budget)


@dataclass(frozen=True, slots=True)
class _Summed:
    """A chart's window as the blocks' summaries give it (store.read_sums): the points of the
    blocks it decoded, through the read pipeline, and the summaries of the others."""

    frame: Frame
    sums: Sums
    unit: Unit
    storage_s: float
    warnings: tuple[str, ...]


_LOC = ("query",)


def _read_summed(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    q: ChartQuery,
    budget: ReadBudget,
    t: SignalType,
    edges: I64,
) -> _Summed | None:
    """`q`'s window (no as_of) from the blocks' hour summaries where `edges` (whole hours)
    leave whole days, decoding the rest, checked as read_frame checks a read; None where the
    summaries cannot give what decoding gives: a unit conversion or a ratio other than 1
    (each changes the points first), or no series."""
    rq = _query(q)
    check_query(rq, _LOC)
    budget.check_window(rq.since, rq.till, rq.window_delta_t())
    sid = readable_series(conn, principal, rq).get((q.sensor_mid, t.moid))
    plan = read_plan(rq, t, _LOC)
    if plan.converts:
        return None
    s0 = time.perf_counter()
    if sid is None:
        return None
    periods = load_periods(conn, q.sensor_mid, t, multiply=True) if plan.multiply else []
    if any(p.factor != 1.0 for p in periods):
        return None
    points, sums = store.read_sums(
        conn, sid, q.since, q.till, origin=None, limit=budget.left, edges=edges, whole_days=False
    )
    storage_s = time.perf_counter() - s0
    budget.take(len(points) + len(sums))
    try:
        out = run(points, plan, periods=periods)
    except Overflow as exc:
        raise Invalid(str(exc), loc=_LOC) from exc
    return _Summed(out.frame, sums, plan.out_unit, storage_s, out.warnings)


def _summary(values: np.ndarray[Any, np.dtype[np.float64]], *, energy: bool) -> dict[str, Any]:
    """count, mean, min, max (and sum) of a counter's energy per bucket."""
    v = values[~np.isnan(values)]
    if not len(v):
        return {"count": 0}
    # The mean and the sum are computed: 15 significant digits, as every computed value.
    mean, total = round_significant(np.array([v.mean(), v.sum()]))
    out: dict[str, Any] = {
        "count": len(v),
        "mean": float(mean),
        "min": float(v.min()),
        "max": float(v.max()),
    }
    if energy:
        out["sum"] = float(total)
    return out


@dataclass(frozen=True, slots=True)
class _Totals:
    """One origin's points over the window as sums: per UTC hour (`hours`, of points or from
    the blocks' summaries) and per whole UTC day (`days`, sparse blocks' summaries), with
    the least and the greatest value."""

    hours: HourSums
    days: HourSums
    low: float
    high: float


def _points_totals(ts: I64, vs: F64, origin: int) -> _Totals:
    """_Totals of one origin's points (sorted by time, without NaN): the hours' sums as
    pipeline.hour_sums adds them up (one reduceat over each hour's points in time order),
    the hours found by binary search, not per point."""
    if not len(ts):
        return _Totals(HourSums.empty(), HourSums.empty(), np.inf, -np.inf)
    first = int(ts[0]) - int(ts[0]) % HOUR_MS
    edges = np.arange(first, int(ts[-1]) + 1, HOUR_MS, dtype=np.int64)
    at = np.searchsorted(ts, edges)
    nonempty = np.diff(np.append(at, ts.shape[0])) > 0
    starts = at[nonempty]
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduceat(vs, starts)
    n = np.diff(np.append(starts, ts.shape[0]))
    z = np.zeros(starts.shape[0], dtype=np.int64)
    hours = HourSums(edges[nonempty], z + origin, n, total, z)
    return _Totals(hours, HourSums.empty(), float(vs.min()), float(vs.max()))


def _window_total(tot: _Totals) -> tuple[int, float]:
    """The points and the sum of one origin's window, added up as the delta_t reads add up a
    bucket: the hours of each UTC day in hour order, then the days in time order, so the
    sum is the same bit for bit whether the points were decoded or summed by their blocks."""
    h, d = tot.hours, tot.days
    n = int(h.n.sum()) + int(d.n.sum())
    pieces_at: list[I64] = [d.hour]
    pieces: list[F64] = [d.total]
    if len(h):
        day = h.hour - h.hour % DAY_MS
        at = np.flatnonzero(np.diff(day, prepend=day[0] - 1))
        with np.errstate(over="ignore", invalid="ignore"):
            pieces.append(np.add.reduceat(h.total, at))
        pieces_at.append(day[at])
    t = np.concatenate(pieces_at)
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.add.reduce(np.concatenate(pieces)[np.argsort(t, kind="stable")]))
    return n, total


def _totals_summary(chosen: list[_Totals], *, energy: bool) -> dict[str, Any]:
    """count, mean, min, max (and sum) over the origins `chosen`, in origin order."""
    n, total = 0, 0.0
    for tot in chosen:
        k, s = _window_total(tot)
        if k:
            n, total = n + k, (total + s if n else s)
    if not n:
        return {"count": 0}
    with np.errstate(over="ignore", invalid="ignore"):
        mean, rounded = round_significant(np.array([total / n, total]))
    out: dict[str, Any] = {
        "count": n,
        "mean": float(mean),
        "min": float(min(t.low for t in chosen)),
        "max": float(max(t.high for t in chosen)),
    }
    if energy:
        out["sum"] = float(rounded)
    return out


def chart(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    q: ChartQuery,
    *,
    budget: ReadBudget,
) -> dict[str, Any]:
    """The chart body: per origin the points to draw, the mode they are in, and the summary
    (of the measured origin when there is one, else of all) over the whole window.

    Buckets of an hour or more are whole hours (reduce.hour_edges); then, without as_of,
    the whole days of the window come from the blocks' hour summaries (min, max and the
    time each is first reached, count and sum per hour) and only the other blocks are
    decoded — with the same answer, as the tests check against the decoding path."""
    t0 = time.perf_counter()
    if not 2 <= q.max_points <= MAX_POINTS_LIMIT:
        raise Invalid(
            f"max_points must be within 2..{MAX_POINTS_LIMIT}", loc=("query", "max_points")
        )
    t = signal_type_by_moid(q.signal_type_moid)
    counter = t is not None and t.time_series_type == SeriesKind.CUMULATIVE and not q.register
    edges = None if counter else reduce.hour_edges(q.since, q.till, q.max_points // 2)
    # A counter's register is stitched across meter swaps point by point: decoded.
    summed = t is not None and t.time_series_type != SeriesKind.CUMULATIVE
    if edges is not None and t is not None and summed and q.as_of is None:
        left = budget.left
        got = _read_summed(conn, store, principal, q, budget, t, edges)
        body = None if got is None else _chart_summed(q, t, got, edges, t0)
        if body is not None:
            return body
        budget.left = left  # the decoding read below spends the budget itself
    # A counter's energy per bucket interpolates the register at both edges of each bucket:
    # the readings just outside the window are needed too (the first and the last bucket).
    pad = (
        min(max(2 * (q.till - q.since) // q.max_points, 2 * HOUR_MS), 7 * DAY_MS) if counter else 0
    )
    read = _read(
        conn,
        store,
        principal,
        q,
        budget,
        since=max(q.since - pad, TIME_MIN),  # the padding never leaves the time range
        till=min(q.till + pad, TIME_MAX),
    )
    assert t is not None  # read_frame answered 404 for an unknown type
    f = read.frame
    numeric = (f.type == TYPE_DBL) | (f.type == TYPE_INT)
    energy_sum = counter or t.time_series_type == SeriesKind.INTERVAL
    step: int | None = None
    if counter:
        step = reduce.energy_step_ms(
            f.time[numeric], since=q.since, till=q.till, max_buckets=q.max_points // 2
        )
    elif edges is not None:
        step = int(edges[1] - edges[0])
    series = []
    summary_of: dict[int, np.ndarray[Any, np.dtype[np.float64]]] = {}
    totals: dict[int, _Totals] = {}
    compared: dict[int, tuple[Any, Any]] = {}  # origin → (times, values) at full resolution
    mode = "raw"
    present = np.bincount(f.origin[numeric], minlength=6)  # origins are 1..5: no sort
    for origin in (int(o) for o in np.flatnonzero(present)):
        sel = numeric & (f.origin == origin)
        ts, vs = f.time[sel], f.value[sel]
        if counter:
            assert step is not None
            r = reduce.interval_energy(ts, vs, since=q.since, till=q.till, step_ms=step)
            summary_of[origin] = r.value
            compared[origin] = (r.time, r.value)
            mode = "energy"
        else:
            r = reduce.minmax(
                ts, vs, since=q.since, till=q.till, max_points=q.max_points, edges=edges
            )
            keep = ~np.isnan(vs)
            totals[origin] = _points_totals(ts[keep], vs[keep], origin)
            compared[origin] = (ts, vs)
            if len(r.time) < int(np.count_nonzero(keep)):
                mode = "minmax"
        series.append(_series(origin, len(ts), r))
    if counter:
        chosen = summary_of.get(1)
        if chosen is None and summary_of:
            chosen = np.concatenate(list(summary_of.values()))
        summary = _summary(chosen if chosen is not None else np.empty(0), energy=energy_sum)
    else:
        summary = _totals_summary(_chosen(totals), energy=energy_sum)
    forecast = None
    if 1 in compared and 2 in compared:
        history = None
        if not counter:  # persistence needs the measured week before the window
            week = q.since - 7 * DAY_MS
            before = _read(conn, store, principal, q, budget, since=week, origin=1).frame
            history = (before.time, before.value)
        forecast = forecast_quality(compared[1], compared[2], history)
    return _body(
        q,
        t,
        read.unit.symbol,
        mode=mode if not counter else "energy",
        step=step,
        series=series,
        summary=summary,
        forecast=forecast,
        warnings=read.warnings,
        storage_s=read.storage_s,
        t0=t0,
    )


def _chosen(totals: dict[int, _Totals]) -> list[_Totals]:
    """The origins a summary is of: the measured one when there is one, else all."""
    return [totals[1]] if 1 in totals else [totals[o] for o in sorted(totals)]


def _series(origin: int, points: int, r: reduce.Reduced) -> dict[str, Any]:
    return {
        "origin": origin,
        "origin_name": ORIGIN_NAMES.get(origin, str(origin)),
        "points": points,
        "time": r.time,  # numpy: orjson writes it natively
        "value": r.value,
    }


def _body(
    q: ChartQuery,
    t: SignalType,
    unit: str,
    *,
    mode: str,
    step: int | None,
    series: list[dict[str, Any]],
    summary: dict[str, Any],
    forecast: dict[str, Any] | None,
    warnings: tuple[str, ...],
    storage_s: float,
    t0: float,
) -> dict[str, Any]:
    return {
        "client_cid": q.client_cid,
        "sensor_mid": q.sensor_mid,
        "signal_type_moid": q.signal_type_moid,
        "symbol": t.symbol,
        "unit": unit,
        "kind": KIND_NAMES[t.time_series_type],
        "mode": mode,
        "since": q.since,
        "till": q.till,
        "as_of": q.as_of,
        "bucket_ms": step,
        "series": series,
        "summary": summary,
        "forecast": forecast,
        "warnings": list(warnings),  # what the read had to assume (a swap's reading)
        "time_tstorage": storage_s,
        "time_other": max(time.perf_counter() - t0 - storage_s, 0.0),
    }


def _of_origin(h: HourSums, origin: int) -> HourSums:
    """The records of one origin, in time order."""
    sel = np.flatnonzero(h.origin == origin)
    sel = sel[np.argsort(h.hour[sel], kind="stable")]
    low, t_low, high, t_high = _extremes(h)
    return HourSums(
        h.hour[sel],
        h.origin[sel],
        h.n[sel],
        h.total[sel],
        h.acq[sel],
        low[sel],
        t_low[sel],
        high[sel],
        t_high[sel],
    )


def _extremes(h: HourSums) -> tuple[F64, I64, F64, I64]:
    """The extremes of summaries read with them (store.read_sums)."""
    if h.low is None or h.t_low is None or h.high is None or h.t_high is None:
        raise ValueError("summaries without extremes")
    return h.low, h.t_low, h.high, h.t_high


def _chart_summed(
    q: ChartQuery, t: SignalType, got: _Summed, edges: I64, t0: float
) -> dict[str, Any] | None:
    """The chart body from a summed read: per origin the decoded points and the summaries
    as pieces in time order, reduced per bucket of `edges` (reduce.minmax_pieces). None when
    decoding must answer: a summary without extremes (written before migration 0016), an
    origin of at most max_points points (sent as they are), or a measured and a predicted
    origin (the forecast's scores need every point)."""
    f, sums = got.frame, got.sums
    hours, days = sums.hours, sums.days
    for h in (hours, days):
        if len(h) and (h.low is None or bool(np.isnan(h.low).any())):
            return None
    numeric = (f.type == TYPE_DBL) | (f.type == TYPE_INT)
    origins = sorted(
        {int(o) for o in np.unique(f.origin[numeric])}
        | {int(o) for o in np.unique(hours.origin)}
        | {int(o) for o in np.unique(days.origin)}
    )
    if 1 in origins and 2 in origins:
        return None
    series = []
    totals: dict[int, _Totals] = {}
    mode = "raw"
    for origin in origins:
        sel = numeric & (f.origin == origin)
        ts, vs = f.time[sel], f.value[sel]
        keep = ~np.isnan(vs)
        tk, vk = ts[keep], vs[keep]
        own = _points_totals(tk, vk, origin)
        h, d = _of_origin(hours, origin), _of_origin(days, origin)
        summed = int(h.n.sum()) + int(d.n.sum())
        if len(tk) + summed <= q.max_points:
            return None
        parts = [(tk, vk, tk, vk, tk)]
        parts += [(x.hour, *_extremes(x)) for x in (h, d)]
        at, low, t_low, high, t_high = (np.concatenate(c) for c in zip(*parts, strict=True))
        order = np.argsort(at, kind="stable")  # pieces never overlap in time
        r = reduce.minmax_pieces(
            at[order], low[order], t_low[order], high[order], t_high[order], edges
        )
        lows = [own.low, *(float(_extremes(x)[0].min()) for x in (h, d) if len(x))]
        highs = [own.high, *(float(_extremes(x)[2].max()) for x in (h, d) if len(x))]
        merged = own.hours if not len(h) else _merged(own.hours, h)
        totals[origin] = _Totals(merged, d, min(lows), max(highs))
        if len(r.time) < len(tk) + summed:
            mode = "minmax"
        series.append(_series(origin, len(ts) + summed, r))
    energy_sum = t.time_series_type == SeriesKind.INTERVAL
    return _body(
        q,
        t,
        got.unit.symbol,
        mode=mode,
        step=int(edges[1] - edges[0]),
        series=series,
        summary=_totals_summary(_chosen(totals), energy=energy_sum),
        forecast=None,
        warnings=got.warnings,
        storage_s=got.storage_s,
        t0=t0,
    )


def _merged(a: HourSums, b: HourSums) -> HourSums:
    """Hour sums of one origin's disjoint hours, as one in time order."""
    hour = np.concatenate([a.hour, b.hour])
    order = np.argsort(hour, kind="stable")
    return HourSums(
        hour[order],
        np.concatenate([a.origin, b.origin])[order],
        np.concatenate([a.n, b.n])[order],
        np.concatenate([a.total, b.total])[order],
        np.concatenate([a.acq, b.acq])[order],
    )


MAX_GAPS = 200


def forecast_quality(
    measured: tuple[Any, Any], predicted: tuple[Any, Any], history: tuple[Any, Any] | None
) -> dict[str, Any]:
    """The predicted origin against the measured one over the window: MAE, rMAE and skill
    against persistence a day and a week earlier (server/metrics.py, as OpenSTEF reports them);
    `history` is the measured data before the window that persistence may use."""

    def series(tv: tuple[Any, Any]) -> pd.Series[float]:
        return pd.Series(
            np.asarray(tv[1], dtype=float),
            index=pd.to_datetime(np.asarray(tv[0], dtype=np.int64), unit="ms", utc=True),
        )

    actual, pred = series(measured), series(predicted)
    hist = None if history is None else series(history)
    scores = metrics.evaluate(actual, pred, hist)
    both = len(pd.concat([actual, pred], axis=1, join="inner").dropna())
    return {k: (None if not np.isfinite(v) else float(v)) for k, v in scores.items()} | {
        "compared": both
    }


def completeness(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    q: ChartQuery,
    *,
    budget: ReadBudget,
    origin: int = 1,
    tz: str | None = None,
) -> dict[str, Any]:
    """Per day of the window (UTC, or local in the IANA zone `tz`) the points of one origin
    (measured by default) against what the series' reading interval expects, and the gaps,
    longest first (at most MAX_GAPS).
    The answer holds a row per day: 413 beyond max_window_days."""
    try:
        zone = None if tz is None else calendar.zone(tz)
    except calendar.CalendarError as exc:
        raise Invalid(str(exc), loc=("query", "tz")) from exc
    read = _read(conn, store, principal, q, budget, origin=origin, raw=True)
    budget.check_span(q.since, q.till, "a completeness", "it counts every day of the window")
    f = read.frame
    # Nothing is expected of the future: the window counts up to now.
    until = max(min(q.till, now_ms()), q.since + 1)
    times = f.time[((f.type == TYPE_DBL) | (f.type == TYPE_INT)) & (f.time < until)]
    step = completeness_mod.reading_step(times)
    out: dict[str, Any] = {
        "client_cid": q.client_cid,
        "sensor_mid": q.sensor_mid,
        "signal_type_moid": q.signal_type_moid,
        "origin": origin,
        "tz": tz or "UTC",
        "since": q.since,
        "till": q.till,
        "step_ms": step,
        "points": len(times),
        "until": until,
    }
    if step is None or step <= 0:
        out |= {
            "expected": None,
            "days": {"day": [], "count": [], "expected": []},
            "gaps": [],
            "gap_count": 0,
        }
        return out
    days = completeness_mod.daily(times, since=q.since, till=until, step=step, tz=zone)
    gaps = completeness_mod.gaps(times, since=q.since, till=until, step=step)
    out |= {
        "expected": int(days.expected.sum()),
        "days": {"day": days.day, "count": days.count, "expected": days.expected},
        "gaps": [{"since": g.since, "till": g.till, "missing": g.missing} for g in gaps[:MAX_GAPS]],
        "gap_count": len(gaps),
    }
    return out
