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
from sqlalchemy import Connection

from besmart_server.server import metrics
from besmart_server.server.access import Principal
from besmart_server.server.db import now_ms
from besmart_server.server.errors import Invalid
from besmart_server.server.signals import calendar, reduce
from besmart_server.server.signals import completeness as completeness_mod
from besmart_server.server.signals.catalog import SeriesKind, signal_type_by_moid
from besmart_server.server.signals.pipeline import round_significant
from besmart_server.server.signals.service import (
    FrameRead,
    ReadBudget,
    ReadQuery,
    read_frame,
)
from besmart_server.server.signals.store import SeriesStore
from besmart_server.wire import ORIGIN_NAMES, TIME_MAX, TIME_MIN, TYPE_DBL, TYPE_INT

KIND_NAMES = {
    SeriesKind.INSTANTANEOUS: "instantaneous",
    SeriesKind.CUMULATIVE: "cumulative",
    SeriesKind.INTERVAL: "interval",
}
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
    return read_frame(
        conn,
        store,
        principal,
        ReadQuery(
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
        ),
        budget=budget,
    )


def _summary(values: np.ndarray[Any, np.dtype[np.float64]], *, energy: bool) -> dict[str, Any]:
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


def chart(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    q: ChartQuery,
    *,
    budget: ReadBudget,
) -> dict[str, Any]:
    """The chart body: per origin the points to draw, the mode they are in, and the summary
    (of the measured origin when there is one, else of all) over the whole window."""
    t0 = time.perf_counter()
    if not 2 <= q.max_points <= MAX_POINTS_LIMIT:
        raise Invalid(
            f"max_points must be within 2..{MAX_POINTS_LIMIT}", loc=("query", "max_points")
        )
    t = signal_type_by_moid(q.signal_type_moid)
    counter = t is not None and t.time_series_type == SeriesKind.CUMULATIVE and not q.register
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
    series = []
    summary_of: dict[int, np.ndarray[Any, np.dtype[np.float64]]] = {}
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
            r = reduce.minmax(ts, vs, since=q.since, till=q.till, max_points=q.max_points)
            summary_of[origin] = vs
            compared[origin] = (ts, vs)
            if len(r.time) < int(np.count_nonzero(~np.isnan(vs))):
                mode = "minmax"
        series.append(
            {
                "origin": origin,
                "origin_name": ORIGIN_NAMES.get(origin, str(origin)),
                "points": len(ts),
                "time": r.time,  # numpy: orjson writes it natively
                "value": r.value,
            }
        )
    chosen = summary_of.get(1)
    if chosen is None and summary_of:
        chosen = np.concatenate(list(summary_of.values()))
    summary = _summary(chosen if chosen is not None else np.empty(0), energy=energy_sum)
    forecast = None
    if 1 in compared and 2 in compared:
        history = None
        if not counter:  # persistence needs the measured week before the window
            week = q.since - 7 * DAY_MS
            before = _read(conn, store, principal, q, budget, since=week, origin=1).frame
            history = (before.time, before.value)
        forecast = forecast_quality(compared[1], compared[2], history)
    return {
        "client_cid": q.client_cid,
        "sensor_mid": q.sensor_mid,
        "signal_type_moid": q.signal_type_moid,
        "symbol": t.symbol,
        "unit": read.unit.symbol,
        "kind": KIND_NAMES[t.time_series_type],
        "mode": mode if not counter else "energy",
        "since": q.since,
        "till": q.till,
        "as_of": q.as_of,
        "bucket_ms": step,
        "series": series,
        "summary": summary,
        "forecast": forecast,
        "warnings": list(read.warnings),  # what the read had to assume (a swap's reading)
        "time_tstorage": read.storage_s,
        "time_other": max(time.perf_counter() - t0 - read.storage_s, 0.0),
    }


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
