"""Signal data: catalog listings, columnar writes and the read pipeline over a SeriesStore.

Functions take the request's connection first; they raise AppErrors and never commit.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, select

from besmart_server.schemas.signals import SignalTypeResponse, UnitResponse
from besmart_server.schemas.users import Role
from besmart_server.server.db import now_ms
from besmart_server.server.errors import AppError, Invalid, NotFound, TooLarge
from besmart_server.server.sensors.access import (
    readable_sensors,
    require_role,
    sensor_for,
    sensor_not_found,
)
from besmart_server.server.signals import calendar, catalog
from besmart_server.server.signals.calendar import MINUTES_PER_DAY, Buckets, Period
from besmart_server.server.signals.catalog import Unit, UnknownUnit
from besmart_server.server.signals.columns import (
    ORIGINS,
    TIME_MAX,
    TIME_MIN,
    Columns,
    Loc,
    check_acq_not_after,
    check_points,
    convert_in,
    empty_data,
    encode_data,
    to_frame,
)
from besmart_server.server.signals.pipeline import (
    F64,
    MS_PER_MINUTE,
    TYPE_DBL,
    TYPE_INT,
    Frame,
    SeriesKind,
    StatePeriod,
    aggregate,
    apply_multiplier,
    concat,
    latest_versions,
    round_significant,
    stitch,
)
from besmart_server.server.signals.store import SeriesKey, SeriesStore
from besmart_server.server.signals.tables import signal_types, units
from besmart_server.server.states.tables import sensor_states, signal_states
from besmart_server.server.users.service import Principal

# --- catalog --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """What the data routes need to know of a signal type."""

    moid: int
    symbol: str
    unit: Unit
    kind: SeriesKind
    current_ratio: bool
    voltage_ratio: bool
    chart_unit: Unit | None


def _unit_from_row(row: Any) -> Unit:
    known = next((u for u in catalog.UNITS if u.unit_id == row.unit_id), None)
    return Unit(
        int(row.unit_id),
        str(row.symbol),
        str(row.dimension),
        float(row.factor),
        float(row.offset),
        known.aliases if known else (),
    )


def load_units(conn: Connection) -> dict[int, Unit]:
    """Every unit of the catalog table, by id."""
    rows = conn.execute(select(units).order_by(units.c.unit_id))
    return {int(r.unit_id): _unit_from_row(r) for r in rows}


@dataclass(frozen=True, slots=True)
class Catalog:
    """Units by id and signal types by moid, as the catalog tables hold them."""

    units: dict[int, Unit]
    types: dict[int, TypeInfo]


# Catalogs by engine, with when they were read. The catalog changes only by migration, so a
# process keeps it CATALOG_TTL_S seconds instead of reading two tables on every request (2 ms
# of a 10,000-point write on PostgreSQL); a migration run beside a live server shows within that.
CATALOG_TTL_S = 30.0
_catalogs: weakref.WeakKeyDictionary[Engine, tuple[float, Catalog]] = weakref.WeakKeyDictionary()


def load_catalog(conn: Connection) -> Catalog:
    """The catalog tables (a few dozen rows each), cached per engine for CATALOG_TTL_S."""
    cached = _catalogs.get(conn.engine)
    now = time.monotonic()
    if cached is not None and now - cached[0] < CATALOG_TTL_S:
        return cached[1]
    cat = _read_catalog(conn)
    _catalogs[conn.engine] = (now, cat)
    return cat


def _read_catalog(conn: Connection) -> Catalog:
    by_id = load_units(conn)
    by_symbol = {u.symbol: u for u in by_id.values()}
    out: dict[int, TypeInfo] = {}
    for r in conn.execute(select(signal_types)):
        chart = by_symbol.get(r.chart_expected_unit) if r.chart_expected_unit else None
        out[int(r.moid)] = TypeInfo(
            int(r.moid),
            str(r.symbol),
            by_id[int(r.unit_id)],
            SeriesKind(int(r.time_series_type)),
            bool(r.apply_current_ratio),
            bool(r.apply_voltage_ratio),
            chart,
        )
    return Catalog(by_id, out)


def list_signal_types(conn: Connection) -> list[SignalTypeResponse]:
    """The signal type catalog, in moid order."""
    by_id = load_units(conn)
    out = []
    for r in conn.execute(select(signal_types).order_by(signal_types.c.moid)):
        unit = by_id[int(r.unit_id)]
        out.append(
            SignalTypeResponse(
                signal_type_moid=r.moid,
                symbol=r.symbol,
                description=r.description,
                is_measurement=r.is_measurement,
                time_series_type=r.time_series_type,
                apply_multiplier=bool(r.apply_current_ratio or r.apply_voltage_ratio),
                apply_current_ratio=r.apply_current_ratio,
                apply_voltage_ratio=r.apply_voltage_ratio,
                obis_mapping=r.obis_mapping,
                chart_expected_unit=r.chart_expected_unit,
                keep_prefix=r.keep_prefix,
                draw_chart=r.draw_chart,
                unit_id=unit.unit_id,
                unit_symbol=unit.symbol,
                group_id=r.group_id,
                group=r.group_name,
            )
        )
    return out


def list_units(conn: Connection) -> list[UnitResponse]:
    """The unit catalog, in id order."""
    return [
        UnitResponse(
            unit_id=u.unit_id,
            symbol=u.symbol,
            dimension=u.dimension,
            factor=u.factor,
            offset=u.offset,
            aliases=list(u.aliases),
        )
        for u in load_units(conn).values()
    ]


def _type_or_404(types: dict[int, TypeInfo], moid: int) -> TypeInfo:
    t = types.get(moid)
    if t is None:
        raise NotFound(f"Signal type {moid} not found")
    return t


def _unit_in(t: TypeInfo, symbol: str | None, loc: Loc) -> Unit:
    if symbol is None or symbol == "":
        return t.unit
    try:
        return catalog.unit_by_symbol(symbol)
    except UnknownUnit as exc:
        raise Invalid(str(exc), loc=loc, type_="unit") from exc


# --- writes ---------------------------------------------------------------------------------

# How far ahead of the server's clock an imported acq_time may be (clients' clocks drift).
ACQ_SKEW_MS = 60_000


@dataclass(frozen=True, slots=True)
class WriteItem:
    """One series' validated columns, as the request gave them."""

    client_cid: int
    sensor_mid: int
    signal_type_moid: int
    unit: str | None
    columns: Columns
    loc: Loc  # where this item sits in the body, for 422s


def write(
    conn: Connection, store: SeriesStore, principal: Principal, items: Sequence[WriteItem]
) -> int:
    """Store every item as a new version, all or nothing; returns how many points were stored.

    Authorization, types and units are checked for every item before anything is written.
    Each series written takes one version stamp (store.py); points of one series sent twice
    in the request keep the later one.
    """
    types = load_catalog(conn).types
    converted: list[tuple[SeriesKey, Columns]] = []
    locs: list[Loc] = []
    # Every sensor looked up in one query, then judged item by item as sensor_for would.
    known = readable_sensors(conn, principal, ((i.client_cid, i.sensor_mid) for i in items))
    latest_acq = now_ms() + ACQ_SKEW_MS
    for item in items:
        pair = (item.client_cid, item.sensor_mid)
        require_role(principal, *pair, Role.write, exists=pair in known)
        t = _type_or_404(types, item.signal_type_moid)
        unit_loc = (*item.loc[:-1], "unit") if item.loc[-1] == "data" else ("query", "unit")
        src = _unit_in(t, item.unit, unit_loc)
        cols = convert_in(item.columns, src, t.unit, unit_loc, (*item.loc, "value"))
        check_acq_not_after(cols, latest_acq, item.loc)
        if len(cols):
            converted.append(((item.sensor_mid, t.moid), cols))
            locs.append(item.loc)
    if not converted:
        return 0
    ids = store.series_ids(conn, (k for k, _ in converted), create=True)
    # Every item as one frame, in request order (the store keeps the later of two points
    # with the same key): no frame or sort per item. Points without an acq_time are live:
    # the store stamps them, one stamp per series (0 until then).
    frame = to_frame([c for _, c in converted], 0)
    sizes = [len(c) for _, c in converted]
    check_points(frame, sizes, locs)
    series = np.repeat(np.array([ids[k] for k, _ in converted], dtype=np.int64), sizes)
    live = np.repeat(np.array([c.acq_ms is None for _, c in converted], dtype=np.bool_), sizes)
    return store.insert(conn, series, frame, live=live)


# --- reads ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadQuery:
    """One signal read: GET's query or one item of the multi-series POST."""

    client_cid: int
    sensor_mid: int
    signal_type_moid: int
    since: int
    till: int
    get_last: bool = False
    signal_origin_id: int | None = None
    delta_t: int | None = None
    raw: bool = False
    apply_multiplier: bool = False
    output_unit_id: int | None = None
    is_chart: bool = False
    # Only versions acquired before this time (UTC ms): the data as it stood then, for
    # backtests without leakage. None reads every version.
    as_of: int | None = None
    # Calendar time (calendar.py): buckets of `delta_t` or of `calendar` (a month, quarter or
    # year) in this IANA zone; None keeps the UTC, epoch-aligned buckets.
    tz: str | None = None
    calendar: Period | None = None

    def window_delta_t(self) -> int | None:
        """What ReadBudget.check_window sees as delta_t: a calendar read is aggregated too."""
        return self.delta_t if self.calendar is None else MINUTES_PER_DAY


def buckets_of(q: ReadQuery, loc: Loc) -> Buckets | None:
    """The read's buckets, or None for a read of points; 422 naming `tz` or `delta_t`."""
    try:
        tz = None if q.tz is None else calendar.zone(q.tz)
        size = q.calendar if q.calendar is not None else q.delta_t
        return None if size is None else Buckets(size, tz)
    except calendar.CalendarError as exc:
        raise Invalid(str(exc), loc=(*loc, exc.field)) from exc


MS_PER_DAY = 86_400_000


class ReadBudget:
    """Points a request may still read from the store (max_points_per_read), across items,
    and the longest window one read may span (max_window_days; None: no limit)."""

    def __init__(self, limit: int, *, max_window_days: int | None = None) -> None:
        self.limit = limit
        self.left = limit
        self.max_window_days = max_window_days

    def check_window(self, since: int, till: int, delta_t: int | None) -> None:
        """413 when an aggregated read's `till - since` spans more days than a read may.

        Only `delta_t` reads are capped: their work grows with the window (buckets, and the
        interpolation between readings), while a raw read costs what its points cost, which
        `take` bounds already, so since=0&till=<far future> reads whatever is stored."""
        days = self.max_window_days
        if delta_t is not None and days is not None and till - since > days * MS_PER_DAY:
            raise TooLarge(
                f"The window since..till spans {(till - since) / MS_PER_DAY:.1f} days; a read "
                f"with delta_t may span at most {days} (max_window_days) days, as its buckets "
                "grow with the window: read a shorter window (reads without delta_t are bounded "
                "by their points only, max_points_per_read)"
            )

    def take(self, n: int) -> None:
        """Spend `n` points; 413 when the request's reads exceed the limit."""
        self.left -= n
        if self.left < 0:
            raise TooLarge(
                f"The requested window holds more than {self.limit} points "
                "(max_points_per_read); read a shorter window or aggregate with delta_t"
            )


# A read window lies within columns.TIME_MIN..TIME_MAX, the bounds of every write's times too.
# The longest delta_t whose bucket (in ms) still fits the window's 64-bit arithmetic.
DELTA_T_MAX = TIME_MAX // MS_PER_MINUTE


def check_query(q: ReadQuery, loc: Loc) -> None:
    """422 for a malformed read, naming the field."""
    for name, value in (("since", q.since), ("till", q.till)):
        if not TIME_MIN <= value <= TIME_MAX:
            raise Invalid(f"{name} must be a UTC ms timestamp within ±2**62", loc=(*loc, name))
    if q.since >= q.till:
        raise Invalid("since must be before till", loc=(*loc, "since"))
    if q.delta_t is not None and not 0 < q.delta_t <= DELTA_T_MAX:
        raise Invalid(
            f"delta_t must be a positive number of minutes, at most {DELTA_T_MAX}",
            loc=(*loc, "delta_t"),
        )
    if q.signal_origin_id is not None and q.signal_origin_id not in ORIGINS:
        raise Invalid(
            f"{q.signal_origin_id} is not an origin (1 to 5)", loc=(*loc, "signal_origin_id")
        )
    buckets_of(q, loc)


def _output_unit(q: ReadQuery, t: TypeInfo, units_by_id: dict[int, Unit], loc: Loc) -> Unit:
    if q.output_unit_id is not None:
        dst = units_by_id.get(q.output_unit_id)
        if dst is None:
            raise Invalid(
                f"Unknown unit id {q.output_unit_id}", loc=(*loc, "output_unit_id"), type_="unit"
            )
        if dst.dimension != t.unit.dimension:
            raise Invalid(
                f"Cannot convert {t.unit.symbol} ({t.unit.dimension}) to {dst.symbol} "
                f"({dst.dimension})",
                loc=(*loc, "output_unit_id"),
                type_="unit_mismatch",
            )
        return dst
    if q.is_chart and t.chart_unit is not None:
        return t.chart_unit
    return t.unit


def _info_number(info: dict[str, Any], key: str) -> float | None:
    v = info.get(key)
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def state_factor(info: dict[str, Any], t: TypeInfo) -> float:
    """The factor a state's `info` gives a signal type: current_ratio and/or voltage_ratio as the
    type's flags ask; `multiplier` stands for both when neither ratio is given (CT·VT types)."""
    if not (t.current_ratio or t.voltage_ratio):
        return 1.0
    ct = _info_number(info, "current_ratio") if t.current_ratio else None
    vt = _info_number(info, "voltage_ratio") if t.voltage_ratio else None
    if ct is None and vt is None:
        m = _info_number(info, "multiplier")
        return m if m is not None and t.current_ratio and t.voltage_ratio else 1.0
    return (ct if ct is not None else 1.0) * (vt if vt is not None else 1.0)


def load_periods(
    conn: Connection, sensor_mid: int, t: TypeInfo, *, multiply: bool
) -> list[StatePeriod]:
    """The sensor's states as the pipeline sees them, with this signal's readings at swaps."""
    states = conn.execute(
        select(
            sensor_states.c.id, sensor_states.c.since, sensor_states.c.till, sensor_states.c.info
        )
        .where(sensor_states.c.sensor_mid == sensor_mid)
        .order_by(sensor_states.c.since)
    ).all()
    if not states:
        return []
    readings = {
        int(r.sensor_state_id): (r.value_for_since, r.value_for_till)
        for r in conn.execute(
            select(
                signal_states.c.sensor_state_id,
                signal_states.c.value_for_since,
                signal_states.c.value_for_till,
            ).where(
                signal_states.c.sensor_state_id.in_([s.id for s in states]),
                signal_states.c.signal_type_moid == t.moid,
            )
        )
    }
    periods = []
    for s in states:
        info = _parse_info(s.info)
        vfs, vft = readings.get(int(s.id), (None, None))
        periods.append(
            StatePeriod(
                since=int(s.since),
                till=None if s.till is None else int(s.till),
                factor=state_factor(info, t) if multiply else 1.0,
                value_for_since=None if vfs is None else float(vfs),
                value_for_till=None if vft is None else float(vft),
            )
        )
    return periods


def _parse_info(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What a multi-series read looks up once for all its items: the sensors the caller may
    read, (client_cid, sensor_mid), and the ids of the series that exist."""

    sensors: set[tuple[int, int]]
    series: dict[SeriesKey, int]


@dataclass(frozen=True, slots=True)
class FrameRead:
    """One signal's points after the read pipeline, as arrays, with the unit they are in."""

    frame: Frame
    unit: Unit
    storage_s: float  # seconds spent in the store
    warnings: tuple[str, ...] = ()  # what had to be assumed (the response's `warnings`)


# A multiplier (a state's ratios are any number) can take a value beyond the double's range:
# the pipeline lets it become inf/NaN quietly and _computed answers 422 for it.
@np.errstate(over="ignore", invalid="ignore")
def read_frame(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    q: ReadQuery,
    *,
    budget: ReadBudget,
    loc: Loc = ("query",),
    cat: Catalog | None = None,
    pre: Prefetched | None = None,
) -> FrameRead:
    """One signal's points through domain.md's steps, as a Frame (no wire encoding).

    versions (as of `q.as_of`) → origin → multiplier → stitching → delta_t aggregation → unit.
    """
    check_query(q, loc)
    budget.check_window(q.since, q.till, q.window_delta_t())
    buckets = buckets_of(q, loc)
    if pre is None:
        sensor_for(conn, principal, q.client_cid, q.sensor_mid, Role.read)
    elif (q.client_cid, q.sensor_mid) not in pre.sensors:
        raise sensor_not_found(q.client_cid, q.sensor_mid)
    cat = cat or load_catalog(conn)
    t = _type_or_404(cat.types, q.signal_type_moid)
    dst = _output_unit(q, t, cat.units, loc)
    step = 0 if buckets is None else buckets.nominal_ms
    if step and (q.till - q.since) // step > budget.limit:
        budget.take(budget.limit + 1)  # more buckets than a read may return

    storage = 0.0
    warnings: list[str] = []
    s0 = time.perf_counter()
    ids = (
        pre.series
        if pre is not None
        else store.series_ids(conn, [(q.sensor_mid, t.moid)], create=False)
    )
    sid = ids.get((q.sensor_mid, t.moid))
    cumulative = t.kind == SeriesKind.CUMULATIVE
    acq_before = None if q.as_of is None else _acq_bound(q.as_of)
    latest = bool(q.get_last or step)  # only the newest versions matter: the store picks them
    if sid is None:
        f = Frame.empty()
    elif latest:
        f = store.read_latest(
            conn,
            sid,
            q.since,
            q.till,
            origin=q.signal_origin_id,
            limit=budget.left,
            acq_before=acq_before,
        )
        if step and cumulative:
            # The counter at a bucket start interpolates between the live readings around
            # it, however far outside the window they lie: those alone are read, not the days
            # between them.
            edges = store.neighbours(
                conn,
                sid,
                q.since,
                q.till,
                origin=q.signal_origin_id,
                acq_before=acq_before,
            )
            f = concat([f, edges]) if len(edges) else f
    else:
        f = store.read(conn, sid, q.since, q.till, origin=q.signal_origin_id, limit=budget.left)
    storage += time.perf_counter() - s0
    budget.take(len(f))
    if acq_before is not None and len(f) and not latest:
        f = f.take(f.acq < acq_before)  # acq is µs, a whole ms (store.py)

    if len(f):
        if latest:
            # 1. versions: the store returned the newest of each (time, origin); this drops
            # those that are RM (idempotent on resolved points). 2. origin: the store's too.
            f = latest_versions(f)
        stored = f.value  # values the steps below leave as they are are not rounded
        multiply = q.apply_multiplier and (t.current_ratio or t.voltage_ratio)
        stitching = cumulative and not q.raw
        if multiply or stitching:
            s1 = time.perf_counter()
            periods = load_periods(conn, q.sensor_mid, t, multiply=bool(multiply))
            storage += time.perf_counter() - s1
            if multiply:
                f = apply_multiplier(f, periods)  # 3.
            if stitching:
                s2 = time.perf_counter()
                periods = _assume_swap_readings(conn, store, sid, q, periods, f, warnings)
                storage += time.perf_counter() - s2
                f = stitch(f, periods)  # 4.
        if step:
            if multiply or stitching:  # the aggregate would leave an overflowed point out
                _check_finite(f, f.value, t.unit, loc)
            f = aggregate(f, kind=t.kind, since=q.since, till=q.till, buckets=buckets)
        converting = dst.unit_id != t.unit.unit_id
        if converting:
            numeric = (f.type == TYPE_DBL) | (f.type == TYPE_INT)
            value = np.where(numeric, catalog.convert(f.value, t.unit, dst), f.value)
            f = Frame(f.time, f.origin, f.acq, f.type, value, f.text)  # 6.
        if multiply or stitching or step or converting:
            same_points = None if step else stored
            f = _computed(f, same_points, dst, (*loc, "output_unit_id") if converting else loc)
    return FrameRead(f, dst, storage, tuple(warnings))


def _assume_swap_readings(
    conn: Connection,
    store: SeriesStore,
    sid: int | None,
    q: ReadQuery,
    periods: list[StatePeriod],
    f: Frame,
    warnings: list[str],
) -> list[StatePeriod]:
    """The periods with what a meter swap lacks filled in, and a warning for each assumption
    that shifts a point of `f` (README, "Meter swaps").

    An ended period whose signal state has no value_for_till: its meter is taken to have
    stopped at its last live reading before the swap (newest in time over the origins read, as
    of `q.as_of`), so the next meter continues from there instead of dropping back by what the
    previous one counted (negative consumption). With no reading in the period it counted
    nothing (value_for_till = value_for_since). The reading comes from the store, not from
    the window, so a stitched value does not depend on the window it is read in.
    """
    newest = int(f.time.max())  # f holds points, so the series exists
    assert sid is not None
    stitched = any(p.value_for_since is not None for p in periods)
    # value_for_till only shifts the periods after it that are stitched themselves.
    last_stitched = max((p.since for p in periods if p.value_for_since is not None), default=0)
    out: list[StatePeriod] = []
    for p in sorted(periods, key=lambda p: p.since):
        span = f"{p.since}..{'' if p.till is None else p.till}"
        if p.value_for_since is None:
            inside = (f.time >= p.since) & (p.till is None or f.time < p.till)
            if stitched and bool(np.any(inside)):
                warnings.append(
                    f"installation period {span} has no value_for_since for this signal: its "
                    "readings are not stitched (as its meter reads them)"
                )
        elif (
            p.till is not None and p.value_for_till is None and p.till <= min(newest, last_stitched)
        ):
            edge = store.neighbours(
                conn,
                sid,
                p.till,
                None,
                origin=q.signal_origin_id,
                acq_before=None if q.as_of is None else _acq_bound(q.as_of),
            )
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


def _computed(f: Frame, before: F64 | None, unit: Unit, loc: Loc) -> Frame:
    """Computed values rounded (pipeline.round_significant): every value, or those that
    differ from `before` (the stored ones, point for point); 422 for one that overflows."""
    value = round_significant(f.value)
    if before is not None:
        value = np.where(f.value != before, value, f.value)
    _check_finite(f, value, unit, loc)
    return Frame(f.time, f.origin, f.acq, f.type, value, f.text)


def _check_finite(f: Frame, value: F64, unit: Unit, loc: Loc) -> None:
    """422 for a numeric point of `f` whose `value` overflowed."""
    bad = ((f.type == TYPE_DBL) | (f.type == TYPE_INT)) & ~np.isfinite(value)
    if bool(bad.any()):
        i = int(np.flatnonzero(bad)[0])
        raise Invalid(
            f"The value at time {int(f.time[i])} overflows in {unit.symbol} (multiplied, "
            "aggregated or converted beyond ±1.8e308)",
            loc=loc,
        )


def _acq_bound(as_of_ms: int) -> int:
    """`as_of` as an exclusive acq bound (µs), within the 64-bit range the stores hold."""
    return max(min(as_of_ms * 1000, 2**63 - 1), -(2**63))


def read(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    q: ReadQuery,
    *,
    budget: ReadBudget,
    loc: Loc = ("query",),
    started: float | None = None,
    cat: Catalog | None = None,
    pre: Prefetched | None = None,
) -> dict[str, Any]:
    """One signal's points through domain.md's steps, as a SignalResponse object.

    versions → origin → multiplier → stitching → delta_t aggregation → output unit.
    """
    t0 = time.perf_counter() if started is None else started
    got = read_frame(conn, store, principal, q, budget=budget, loc=loc, cat=cat, pre=pre)
    f = got.frame
    data = encode_data(f) if len(f) else empty_data()
    return {
        "client_cid": q.client_cid,
        "sensor_mid": q.sensor_mid,
        "signal_type_moid": q.signal_type_moid,
        "unit": got.unit.symbol,
        "data": data,
        "time_tstorage": got.storage_s,
        "time_other": max(time.perf_counter() - t0 - got.storage_s, 0.0),
        # Only when there is something to say: other clients' bodies stay as they were.
        **({"warnings": list(got.warnings)} if got.warnings else {}),
        # The zone the buckets were counted in, only when the caller chose one.
        **({"tz": q.tz} if q.tz is not None else {}),
    }


def read_many(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    queries: Sequence[ReadQuery],
    *,
    budget: ReadBudget,
) -> list[dict[str, Any]]:
    """Every item in request order; an item that does not exist or that the caller may not
    read comes back with empty data and an `error` (the request as a whole still succeeds)."""
    out = []
    for i, q in enumerate(queries):
        check_query(q, ("body", i))
        budget.check_window(q.since, q.till, q.window_delta_t())
    cat = load_catalog(conn)
    known = readable_sensors(conn, principal, ((q.client_cid, q.sensor_mid) for q in queries))
    keys = [(q.sensor_mid, q.signal_type_moid) for q in queries]
    pre = Prefetched(known, store.series_ids(conn, keys, create=False))
    for i, q in enumerate(queries):
        try:
            item = read(conn, store, principal, q, budget=budget, loc=("body", i), cat=cat, pre=pre)
            out.append(item)
        except NotFound as exc:
            out.append(_item_error(q, exc))
    return out


def _item_error(q: ReadQuery, exc: AppError) -> dict[str, Any]:
    return {
        "client_cid": q.client_cid,
        "sensor_mid": q.sensor_mid,
        "signal_type_moid": q.signal_type_moid,
        "unit": None,
        "data": empty_data(),
        "time_tstorage": 0.0,
        "time_other": 0.0,
        "error": {"status": exc.status, "detail": exc.detail},
    }


def cap_max(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    client_cid: int,
    sensor_mid: int,
    *,
    signal_type_moid: int | None,
    signal_origin_id: int | None,
) -> int | None:
    """The newest capture time stored for a sensor's signal (or any of its signals)."""
    sensor_for(conn, principal, client_cid, sensor_mid, Role.read)
    types = load_catalog(conn).types
    if signal_type_moid is not None:
        _type_or_404(types, signal_type_moid)
        moids = [signal_type_moid]
    else:
        moids = list(types)
    ids = store.series_ids(conn, [(sensor_mid, m) for m in moids], create=False)
    return store.cap_max(conn, sorted(ids.values()), origin=signal_origin_id)
