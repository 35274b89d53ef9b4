"""Estimate runs: substitutes for a window of a measured series, written as origin 4 through
the signals service's write (so never over origin 1), each method in the audit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal, sensor_for
from besmart_server.server.db import now_ms
from besmart_server.server.errors import Invalid, TooLarge
from besmart_server.server.profiles import bdew_profile, holiday_dates
from besmart_server.server.signals import completeness
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.catalog import SeriesKind
from besmart_server.server.signals.columns import Columns
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.users.tables import clients
from besmart_server.server.vee import audit, estimation, service
from besmart_server.server.vee.estimation import DAY_MS, LOOKBACK_DAYS, Profile
from besmart_server.server.vee.service import SUM_PAIRS, Window
from besmart_server.wire import TYPE_DBL

ESTIMATED = 4
QUARTER_MS = 900_000
REGISTER_OF = {interval: register for register, interval in SUM_PAIRS.items()}
DEFAULT_TZ = "Europe/Warsaw"
DEFAULT_COUNTRY = "PL"
# Like days, holidays and load profiles are local calendar days, computed on pandas' timestamps
# (years 1677 to 2262): an estimate's window, with its lookback, stays within the years graphs
# compute in too (operator_api.TIME_RANGE).
# Intervals one estimate may fill: every quarter-hour of max_window_days' default (3660 days),
# with room; a step of 1 ms from a sensor's info made a day 86 million of them (the process ran
# out of memory).
MAX_SLOTS = 400_000
CALENDAR_SINCE = -2_208_988_800_000  # 1900-01-01T00:00:00Z
CALENDAR_TILL = 7_258_118_400_000  # 2200-01-01T00:00:00Z


def _step(info: dict[str, Any], times: estimation.I64) -> int:
    """The reading interval: the sensor's `step_ms` (whole ms, up to a day) when it has one,
    else the readings' median spacing, else a quarter-hour."""
    raw = info.get("step_ms")
    if type(raw) is int and 0 < raw <= DAY_MS:
        return raw
    return completeness.reading_step(times) or QUARTER_MS


def _timezone(conn: Connection, client_cid: int) -> str:
    tz = conn.execute(select(clients.c.timezone).where(clients.c.cid == client_cid)).scalar()
    return str(tz) if tz else DEFAULT_TZ


def standard_profile(
    info: dict[str, Any], *, step: int, timezone: str, country: str | None
) -> Profile | None:
    """The sensor's assigned BDEW profile (`standard_profile` in its info, with
    `annual_energy_kwh`) as kWh per interval of `step`; None when none is assigned."""
    name = info.get("standard_profile")
    annual = info.get("annual_energy_kwh")
    if not isinstance(name, str) or not isinstance(annual, int | float):
        return None

    def shape(slots: estimation.I64) -> estimation.F64:
        quarters = (slots[:, None] + np.arange(0, step, QUARTER_MS)[None, :]).ravel()
        index = pd.DatetimeIndex(pd.to_datetime(quarters, unit="ms", utc=True))
        q = bdew_profile(
            index,
            profile=name,
            annual_energy_kwh=float(annual),
            timezone=timezone,
            country=country,
        ).to_numpy()
        return np.asarray(q.reshape(len(slots), -1).sum(axis=1), dtype=np.float64)

    return shape


def run(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    w: Window,
    *,
    budget: signals.ReadBudget,
    reason: str | None = None,
    who: str | None = None,
) -> dict[str, Any]:
    """Estimate the measured series' missing intervals of [since, till) and store them."""
    service.check_window(w.since, w.till)
    for name, ok in (("since", w.since >= CALENDAR_SINCE), ("till", w.till <= CALENDAR_TILL)):
        if not ok:
            raise Invalid(
                "an estimate's window must lie within 1900-01-01 and 2200-01-01 (UTC): its "
                "like days, holidays and profiles are calendar days",
                loc=("query", name),
            )
    budget.check_span(
        w.since, w.till, "an estimate", "it fills every missing interval and day of the window"
    )
    sensor_for(conn, principal, w.client_cid, w.sensor_mid, Role.write)
    t = service.type_of(w.signal_type_moid)
    if t.time_series_type == SeriesKind.CUMULATIVE:
        raise Invalid(
            "Registers are not estimated: estimate the interval series they bracket",
            loc=("path", "signal_type_moid"),
        )
    lo, hi = service.around(w, LOOKBACK_DAYS * DAY_MS, DAY_MS)
    f = service.read_numeric(conn, store, principal, w, lo, hi, budget=budget)
    info = service.sensor_info(conn, w.sensor_mid)
    step = _step(info, f.time)
    slots = -(-(w.till - w.since) // step)
    if slots > MAX_SLOTS:
        raise TooLarge(
            f"The window holds {slots} intervals of {step} ms; an estimate fills at most "
            f"{MAX_SLOTS} (each is compared with {LOOKBACK_DAYS} days before it): estimate a "
            "shorter window"
        )
    tz = _timezone(conn, w.client_cid)
    years = range(
        int(np.datetime64(lo, "ms").astype("datetime64[Y]").astype(int)) + 1970,
        int(np.datetime64(hi, "ms").astype("datetime64[Y]").astype(int)) + 1971,
    )
    holidays = holiday_dates(DEFAULT_COUNTRY, list(years))
    profile = None
    if t.time_series_type == SeriesKind.INTERVAL:
        profile = standard_profile(info, step=int(step), timezone=tz, country=DEFAULT_COUNTRY)
    registers = None
    reg = REGISTER_OF.get(t.moid)
    if reg is not None:
        rw = Window(w.client_cid, w.sensor_mid, reg, w.since, w.till)
        g = service.read_numeric(conn, store, principal, rw, lo, hi, budget=budget)
        registers = (g.time, g.value) if len(g) else None
    subs = estimation.estimate(
        f.time,
        f.value,
        since=w.since,
        till=w.till,
        step=int(step),
        timezone=tz,
        holidays=holidays,
        profile=profile,
        registers=registers,
    )
    if not len(subs):
        return {"written": 0, "methods": {}, "acq_time": None}
    acq = now_ms()
    n = len(subs)
    cols = Columns(
        time=subs.time,
        origin=np.full(n, ESTIMATED, dtype=np.int64),
        type=np.full(n, TYPE_DBL, dtype=np.int8),
        value=subs.value,
        text=None,
        acq_ms=np.full(n, acq, dtype=np.int64),
    )
    item = signals.WriteItem(
        w.client_cid, w.sensor_mid, w.signal_type_moid, None, cols, ("estimate",)
    )
    signals.write(conn, store, principal, [item])
    sid = service.series_id(conn, store, w, create=False)
    assert sid is not None  # the write made it
    by = who or service.who(principal)
    for code in sorted(set(subs.method)):
        picked = np.array([m == code for m in subs.method])
        times = subs.time[picked]
        scaled = bool(subs.scaled[picked].any())
        audit.add(
            conn,
            sid,
            since=int(times.min()),
            till=int(times.max()) + int(step),
            origin=ESTIMATED,
            points=int(picked.sum()),
            acq_time=acq,
            who=by,
            method=f"{code.value}+register" if scaled else code.value,
            reason=reason,
        )
    return {"written": n, "methods": subs.counts(), "acq_time": acq}
