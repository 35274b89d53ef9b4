"""Signal data: catalog listings, columnar writes and the read pipeline over a SeriesStore.

Functions take the request's connection first; they raise AppErrors and never commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, bindparam, select

from besmart_server.schemas.signals import SignalTypeResponse, UnitResponse
from besmart_server.schemas.users import Role
from besmart_server.server.access import (
    Principal,
    readable_sensors,
    require_role,
    sensor_for,
    sensor_not_found,
)
from besmart_server.server.db import now_ms
from besmart_server.server.errors import AppError, Invalid, NotFound, TooLarge
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals import calendar, catalog, pipeline
from besmart_server.server.signals.calendar import MINUTES_PER_DAY, Buckets, Period
from besmart_server.server.signals.catalog import SignalType, Unit, UnknownUnit
from besmart_server.server.signals.columns import (
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
    MS_PER_MINUTE,
    Frame,
    Plan,
    StatePeriod,
    missing_swap_ends,
)
from besmart_server.server.signals.store import SeriesGone, SeriesKey, SeriesStore
from besmart_server.server.signals.tables import series as series_table
from besmart_server.server.states.tables import sensor_states, signal_states
from besmart_server.wire import ACQ_SKEW_MS, ORIGINS, TIME_MAX, TIME_MIN

# --- catalog --------------------------------------------------------------------------------


def list_signal_types() -> list[SignalTypeResponse]:
    """The signal type catalog, in moid order."""
    return [
        SignalTypeResponse(
            signal_type_moid=t.moid,
            symbol=t.symbol,
            description=t.description,
            is_measurement=t.is_measurement,
            time_series_type=int(t.time_series_type),
            apply_multiplier=t.apply_multiplier,
            apply_current_ratio=t.apply_current_ratio,
            apply_voltage_ratio=t.apply_voltage_ratio,
            obis_mapping=t.obis,
            chart_expected_unit=t.chart_expected_unit,
            keep_prefix=t.keep_prefix,
            draw_chart=t.draw_chart,
            unit_id=t.unit.unit_id,
            unit_symbol=t.unit.symbol,
            group_id=t.group_id,
            group=t.group,
        )
        for t in sorted(catalog.SIGNAL_TYPES, key=lambda t: t.moid)
    ]


def list_units() -> list[UnitResponse]:
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
        for u in sorted(catalog.UNITS, key=lambda u: u.unit_id)
    ]


def type_or_404(moid: int) -> SignalType:
    """The signal type with this moid; 404 if the catalog has none."""
    t = catalog.signal_type_by_moid(moid)
    if t is None:
        raise NotFound(f"Signal type {moid} not found")
    return t


def _unit_in(t: SignalType, symbol: str | None, loc: Loc) -> Unit:
    if symbol is None or symbol == "":
        return t.unit
    try:
        return catalog.unit_by_symbol(symbol)
    except UnknownUnit as exc:
        raise Invalid(str(exc), loc=loc, type_="unit") from exc


# --- writes ---------------------------------------------------------------------------------


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
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    items: Sequence[WriteItem],
    *,
    defer: bool = False,
) -> int:
    """Store every item as a new version, all or nothing; returns how many points were stored
    (`defer`: written to the write-ahead table, to be merged before the next read: how many
    were written, store.insert).

    Authorization, types and units are checked for every item before anything is written.
    Each series written takes one version stamp (store.py); points of one series sent twice
    in the request keep the later one.
    """
    converted: list[tuple[SeriesKey, Columns]] = []
    locs: list[Loc] = []
    # Every sensor looked up in one query, then judged item by item as sensor_for would.
    known = readable_sensors(conn, principal, ((i.client_cid, i.sensor_mid) for i in items))
    latest_acq = now_ms() + ACQ_SKEW_MS
    for item in items:
        pair = (item.client_cid, item.sensor_mid)
        require_role(principal, *pair, Role.write, exists=pair in known)
        t = type_or_404(item.signal_type_moid)
        unit_loc = (*item.loc[:-1], "unit") if item.loc[-1] == "data" else ("query", "unit")
        src = _unit_in(t, item.unit, unit_loc)
        cols = convert_in(item.columns, src, t.unit, unit_loc, (*item.loc, "value"))
        check_acq_not_after(cols, latest_acq, item.loc)
        if len(cols):
            converted.append(((item.sensor_mid, t.moid), cols))
            locs.append(item.loc)
    if not converted:
        return 0
    # Every item as one frame, in request order (the store keeps the later of two points
    # with the same key): no frame or sort per item. Points without an acq_time are live:
    # the store stamps them, one stamp per series (0 until then).
    frame = to_frame([c for _, c in converted], 0)
    sizes = [len(c) for _, c in converted]
    check_points(frame, sizes, locs)
    live = np.repeat(np.array([c.acq_ms is None for _, c in converted], dtype=np.bool_), sizes)
    keys = [k for k, _ in converted]
    # The ids the store remembers, checked against their keys as the write locks them; one
    # that is stale (SeriesGone, before anything is written) is looked up again, once.
    ids = store.series_ids(conn, keys, create=True, known=True)
    try:
        return _insert(conn, store, ids, keys, sizes, frame, live, defer)
    except SeriesGone:
        ids = store.series_ids(conn, keys, create=True)
        return _insert(conn, store, ids, keys, sizes, frame, live, defer)


def _insert(
    conn: Connection,
    store: SeriesStore,
    ids: dict[SeriesKey, int],
    keys: list[SeriesKey],
    sizes: list[int],
    frame: Frame,
    live: np.ndarray[Any, np.dtype[np.bool_]],
    defer: bool,
) -> int:
    series = np.repeat(np.array([ids[k] for k in keys], dtype=np.int64), sizes)
    by_id = {ids[k]: k for k in keys}
    return store.insert(conn, series, frame, live=live, keys=by_id, defer=defer)


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
        if delta_t is not None:
            self.check_span(
                since,
                till,
                "a read with delta_t",
                "its buckets grow with the window: read a shorter window (reads without "
                "delta_t are bounded by their points only, max_points_per_read)",
            )

    def check_span(self, since: int, till: int, what: str, why: str) -> None:
        """413 when work that grows with the window itself (buckets, days, intervals to fill)
        would span more than max_window_days; `what` is capped because `why`."""
        days = self.max_window_days
        if days is not None and till - since > days * MS_PER_DAY:
            raise TooLarge(
                f"The window since..till spans {(till - since) / MS_PER_DAY:.1f} days; "
                f"{what} may span at most {days} (max_window_days) days, as {why}"
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
    # The same bounds as since and till: a read echoes as_of (the chart route), and no stored
    # version is acquired outside them.
    if q.as_of is not None and not TIME_MIN <= q.as_of <= TIME_MAX:
        raise Invalid("as_of must be a UTC ms timestamp within ±2**62", loc=(*loc, "as_of"))
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


def output_unit(q: ReadQuery, t: SignalType, loc: Loc) -> Unit:
    """The unit the read answers in: output_unit_id (422 for one that is unknown or of another
    dimension), else the chart unit of a chart read, else the stored one."""
    if q.output_unit_id is not None:
        try:
            dst = catalog.unit_by_id(q.output_unit_id)
        except UnknownUnit:
            raise Invalid(
                f"Unknown unit id {q.output_unit_id}", loc=(*loc, "output_unit_id"), type_="unit"
            ) from None
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


def state_factor(info: dict[str, Any], t: SignalType) -> float:
    """The factor a state's `info` gives a signal type: current_ratio and/or voltage_ratio as the
    type's flags ask; `multiplier` stands for both when neither ratio is given (CT·VT types)."""
    if not t.apply_multiplier:
        return 1.0
    ct = _info_number(info, "current_ratio") if t.apply_current_ratio else None
    vt = _info_number(info, "voltage_ratio") if t.apply_voltage_ratio else None
    if ct is None and vt is None:
        m = _info_number(info, "multiplier")
        return m if m is not None and t.apply_current_ratio and t.apply_voltage_ratio else 1.0
    return (ct if ct is not None else 1.0) * (vt if vt is not None else 1.0)


def load_periods(
    conn: Connection, sensor_mid: int, t: SignalType, *, multiply: bool
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
        info = parse_info(s.info)
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


def parse_info(raw: Any) -> dict[str, Any]:
    """A sensor's `info` column as a dict ({} when it is none or not a JSON object)."""
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


def read_frame(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    q: ReadQuery,
    *,
    budget: ReadBudget,
    loc: Loc = ("query",),
    pre: Prefetched | None = None,
) -> FrameRead:
    """One signal's points through the read pipeline, as a Frame (no wire encoding).

    Checks the query and the caller's role, plans the read (pipeline.Plan), reads what the plan
    needs from the store and the states tables within the point budget, and hands it to
    pipeline.run, which applies the steps in order.
    """
    check_query(q, loc)
    budget.check_window(q.since, q.till, q.window_delta_t())
    buckets = buckets_of(q, loc)
    if pre is None:
        series = readable_series(conn, principal, q)
    elif (q.client_cid, q.sensor_mid) not in pre.sensors:
        raise sensor_not_found(q.client_cid, q.sensor_mid)
    else:
        series = pre.series
    t = type_or_404(q.signal_type_moid)
    plan = read_plan(q, t, loc, buckets)
    if buckets is not None and (q.till - q.since) // buckets.nominal_ms > budget.limit:
        budget.take(budget.limit + 1)  # more buckets than a read may return

    got = _fetch(conn, store, q, t, plan, budget, series)
    try:
        out = pipeline.run(
            got.points,
            plan,
            neighbours=got.neighbours,
            periods=got.periods,
            swap_edges=got.swap_edges,
            sums=got.sums,
        )
    except pipeline.Overflow as exc:
        raise Invalid(str(exc), loc=(*loc, "output_unit_id") if exc.converted else loc) from exc
    return FrameRead(out.frame, plan.out_unit, got.storage_s, out.warnings)


def read_plan(q: ReadQuery, t: SignalType, loc: Loc, buckets: Buckets | None = None) -> Plan:
    """What pipeline.run is to do for the read `q` of signal type `t` (`buckets`: its
    delta_t's, from buckets_of)."""
    return Plan(
        since=q.since,
        till=q.till,
        kind=t.time_series_type,
        unit=t.unit,
        out_unit=output_unit(q, t, loc),
        get_last=q.get_last,
        acq_before=None if q.as_of is None else _acq_bound(q.as_of),
        multiply=q.apply_multiplier and t.apply_multiplier,
        raw=q.raw,
        buckets=buckets,
    )


# A read's sensor (as sensor_for looks it up) and its series, if stored, in one statement: on
# PostgreSQL every statement is a round trip. Built once (building it cost as much again).
_SENSOR_SERIES = (
    select(sensors.c.mid, series_table.c.id)
    .select_from(
        sensors.outerjoin(
            series_table,
            (series_table.c.sensor_mid == sensors.c.mid)
            & (series_table.c.signal_type_moid == bindparam("moid")),
        )
    )
    .where(sensors.c.mid == bindparam("mid"), sensors.c.client_cid == bindparam("cid"))
)


def readable_series(conn: Connection, principal: Principal, q: ReadQuery) -> dict[SeriesKey, int]:
    """sensor_for(..., Role.read)'s verdict on the read's sensor, and the id of its series
    (none when nothing was ever stored), as store.series_ids gives it."""
    if not principal.can(q.client_cid, Role.read):
        raise sensor_not_found(q.client_cid, q.sensor_mid)
    row = conn.execute(
        _SENSOR_SERIES, {"cid": q.client_cid, "mid": q.sensor_mid, "moid": q.signal_type_moid}
    ).first()
    require_role(principal, q.client_cid, q.sensor_mid, Role.read, exists=row is not None)
    assert row is not None
    return {} if row.id is None else {(q.sensor_mid, q.signal_type_moid): int(row.id)}


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What one read's plan needs from the database (pipeline.run's inputs)."""

    points: Frame
    neighbours: Frame
    periods: list[StatePeriod]
    swap_edges: dict[int, Frame]
    storage_s: float  # seconds spent reading them
    sums: pipeline.Sums | None = None  # the summed whole days `points` leaves out


def _fetch(
    conn: Connection,
    store: SeriesStore,
    q: ReadQuery,
    t: SignalType,
    plan: Plan,
    budget: ReadBudget,
    series: dict[SeriesKey, int],
) -> _Fetched:
    """The series' points (within the budget), the readings around the window, the sensor's
    states and the readings before its meter swaps, as far as `plan` needs them; `series` are
    the ids of the series that exist, looked up with the sensor."""
    s0 = time.perf_counter()
    sid = series.get((q.sensor_mid, t.moid))
    origin = q.signal_origin_id
    points = neighbours = Frame.empty()
    periods: list[StatePeriod] | None = None
    sums: pipeline.Sums | None = None
    if sid is not None and plan.multiply and plan.buckets is not None:
        # Before the points: whether their factors let whole days come from summaries.
        periods = load_periods(conn, q.sensor_mid, t, multiply=plan.multiply)
    if sid is not None and pipeline.summable(plan, periods):
        assert plan.buckets is not None
        edges = plan.buckets.edges(q.since, q.till - 1)
        points, sums = store.read_sums(
            conn, sid, q.since, q.till, origin=origin, limit=budget.left, edges=edges
        )
    elif sid is not None and plan.newest_only:
        points = store.read_latest(
            conn, sid, q.since, q.till, origin=origin, limit=budget.left, acq_before=plan.acq_before
        )
        if plan.widens:
            neighbours = store.neighbours(
                conn, sid, q.since, q.till, origin=origin, acq_before=plan.acq_before
            )
    elif sid is not None:
        points = store.read(conn, sid, q.since, q.till, origin=origin, limit=budget.left)
    budget.take(len(points) + len(neighbours) + (0 if sums is None else len(sums)))
    swap_edges: dict[int, Frame] = {}
    found = sid is not None and plan.needs_periods and len(points) + len(neighbours) > 0
    if periods is None:
        periods = load_periods(conn, q.sensor_mid, t, multiply=plan.multiply) if found else []
    if found and plan.stitches:
        assert sid is not None
        # Before versions are resolved the newest point is at least the newest run sees,
        # so these are all the swaps run may ask for.
        newest = max(int(fr.time.max()) for fr in (points, neighbours) if len(fr))
        for p in missing_swap_ends(periods, newest):
            assert p.till is not None
            swap_edges[p.since] = store.neighbours(
                conn, sid, p.till, None, origin=origin, acq_before=plan.acq_before
            )
    return _Fetched(points, neighbours, periods, swap_edges, time.perf_counter() - s0, sums)


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
    pre: Prefetched | None = None,
) -> dict[str, Any]:
    """One signal's points through docs/domain.md's steps, as a SignalResponse object.

    versions → origin → multiplier → stitching → delta_t aggregation → output unit.
    """
    t0 = time.perf_counter() if started is None else started
    got = read_frame(conn, store, principal, q, budget=budget, loc=loc, pre=pre)
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
    known = readable_sensors(conn, principal, ((q.client_cid, q.sensor_mid) for q in queries))
    keys = [(q.sensor_mid, q.signal_type_moid) for q in queries]
    pre = Prefetched(known, store.series_ids(conn, keys, create=False))
    for i, q in enumerate(queries):
        try:
            item = read(conn, store, principal, q, budget=budget, loc=("body", i), pre=pre)
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
    if signal_type_moid is not None:
        type_or_404(signal_type_moid)
        moids = [signal_type_moid]
    else:
        moids = [t.moid for t in catalog.SIGNAL_TYPES]
    ids = store.series_ids(conn, [(sensor_mid, m) for m in moids], create=False)
    return store.cap_max(conn, sorted(ids.values()), origin=signal_origin_id)
