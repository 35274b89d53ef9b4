"""VEE service: runs the rules over stored series, keeps their quality events, answers the
quality and summary views, and serves the queue of windows the write path enqueues.

Series are read through the signals service's public read (tenancy included); functions take
the request's connection first, raise AppErrors and never commit.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal, SensorRef, sensor_for, sensor_not_found
from besmart_server.server.charts import service as chart
from besmart_server.server.db import dbapi_connection, now_ms, pg_array
from besmart_server.server.errors import Forbidden, Invalid, NotFound, TooLarge
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.catalog import SeriesKind, SignalType, signal_type_by_moid
from besmart_server.server.signals.pipeline import Frame
from besmart_server.server.signals.store import SeriesKey, SeriesStore
from besmart_server.server.signals.tables import series
from besmart_server.server.vee import rules
from besmart_server.server.vee.rules import DAY_MS, Finding, Rule, Thresholds
from besmart_server.server.vee.tables import quality_events, vee_queue, vee_thresholds
from besmart_server.wire import ORIGIN_MEASURED, TIME_MAX, TIME_MIN, TYPE_DBL, TYPE_INT

# How far around a window the rules look (a spike needs its neighbours, a flatline its start)
CONTEXT_MS = DAY_MS
HISTORY_DAYS = 30  # the history the `high` rule takes its maximum from
# Register types and the interval energy types the sum check compares them with (A+, A-).
SUM_PAIRS: dict[int, int] = {32: 1011, 34: 1012}
STATES = ("open", "accepted", "estimated", "corrected")
CLAIM_EXPIRES_MS = 600_000  # a queued window claimed longer ago is validated again
ALL_TYPES = 0  # vee_thresholds.sensor_type_id for a client's overrides of every type


@dataclass(frozen=True, slots=True)
class Window:
    """One series of a sensor and a window [since, till) of it (UTC ms)."""

    client_cid: int
    sensor_mid: int
    signal_type_moid: int
    since: int
    till: int


def check_window(since: int, till: int) -> None:
    """422 for a window that is not since < till within the store's time range."""
    for name, value in (("since", since), ("till", till)):
        if not TIME_MIN <= value <= TIME_MAX:
            raise Invalid(f"{name} must be a UTC ms timestamp", loc=("query", name))
    if since >= till:
        raise Invalid("since must be before till", loc=("query", "since"))


def around(w: Window, before: int, after: int) -> tuple[int, int]:
    """The window widened by `before` and `after` ms for context, within the time range (a
    window at its edge is still read, not refused for the context it asked for itself)."""
    return max(w.since - before, TIME_MIN), min(w.till + after, TIME_MAX)


# --- thresholds -----------------------------------------------------------------------------


def sensor_info(conn: Connection, sensor_mid: int) -> dict[str, Any]:
    """The sensor's info as a dict ({} when it is none or malformed)."""
    raw = conn.execute(select(sensors.c.info).where(sensors.c.mid == sensor_mid)).scalar()
    return signals.parse_info(raw)


def outages_of(info: dict[str, Any]) -> list[tuple[int, int]]:
    """The sensor's marked outages: its info's `outages`, a list of [since, till) pairs in UTC
    ms (zeros inside one are not a zero run); a malformed entry is ignored."""
    raw = info.get("outages")
    out: list[tuple[int, int]] = []
    for item in raw if isinstance(raw, list) else []:
        if (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in item)
            and item[0] < item[1]
        ):
            out.append((item[0], item[1]))
    return out


@dataclass(frozen=True, slots=True)
class Known:
    """What validating windows looks up once for all of them (a drain validates one window
    per series queued, and these lookups were half of each window's cost): the sensors the
    caller may read with their info, their clients' threshold overrides (per sensor type;
    ALL_TYPES for every type), and the ids of the series that exist."""

    refs: dict[tuple[int, int], SensorRef]
    infos: dict[int, dict[str, Any]]
    overrides: dict[tuple[int, int], dict[str, Any]]
    series: dict[SeriesKey, int]
    prefetched: signals.Prefetched  # the same, for the signals reads of every window

    def ref(self, w: Window) -> SensorRef:
        """The window's sensor; 404 when it is missing or the caller may not read it."""
        found = self.refs.get((w.client_cid, w.sensor_mid))
        if found is None:
            raise sensor_not_found(w.client_cid, w.sensor_mid)
        return found

    def thresholds(self, ref: SensorRef) -> Thresholds:
        """The defaults, then the sensor's own `contracted_power_kw` and `meter_max_digits`
        (its info), then the client's overrides for every type, then those for its type."""
        th = rules.DEFAULTS
        info = self.infos.get(ref.sensor_mid, {})
        own: dict[str, Any] = {
            k: info[k] for k in ("contracted_power_kw", "meter_max_digits") if k in info
        }
        # a malformed info field is the sensor's business: the defaults stand
        with contextlib.suppress(ValueError):
            th = th.merged(own)
        for type_id in dict.fromkeys((ALL_TYPES, ref.sensor_type_id or ALL_TYPES)):
            more = self.overrides.get((ref.client_cid, type_id))
            if more is not None:
                th = th.merged(more)
        return th


_IN_CHUNK = 500  # ids in one IN list
_OR_CHUNK = 100  # (series, window) conditions in one OR


def look_up(
    conn: Connection, store: SeriesStore, principal: Principal, windows: Sequence[Window]
) -> Known:
    """`Known` for these windows: three statements, however many windows."""
    wanted = {
        (w.client_cid, w.sensor_mid) for w in windows if principal.can(w.client_cid, Role.read)
    }
    mids = sorted({mid for _, mid in wanted})
    refs: dict[tuple[int, int], SensorRef] = {}
    infos: dict[int, dict[str, Any]] = {}
    c = sensors.c
    for i in range(0, len(mids), _IN_CHUNK):
        rows = conn.execute(
            select(c.client_cid, c.mid, c.sensor_type_id, c.lat, c.lon, c.info).where(
                c.mid.in_(mids[i : i + _IN_CHUNK])
            )
        )
        for r in rows:
            key = (int(r.client_cid), int(r.mid))
            if key in wanted:
                refs[key] = SensorRef(key[0], key[1], r.sensor_type_id, r.lat, r.lon)
                infos[key[1]] = signals.parse_info(r.info)
    overrides: dict[tuple[int, int], dict[str, Any]] = {}
    cids = sorted({cid for cid, _ in refs})
    if cids:
        v = vee_thresholds.c
        for o in conn.execute(
            select(v.client_cid, v.sensor_type_id, v.overrides).where(v.client_cid.in_(cids))
        ):
            overrides[(int(o.client_cid), int(o.sensor_type_id))] = json.loads(o.overrides)
    keys = {(w.sensor_mid, w.signal_type_moid) for w in windows}
    keys |= {(mid, SUM_PAIRS[moid]) for mid, moid in list(keys) if moid in SUM_PAIRS}
    ids = store.series_ids(conn, keys, create=False)
    return Known(refs, infos, overrides, ids, signals.Prefetched(set(refs), ids))


def set_thresholds(
    conn: Connection,
    principal: Principal,
    client_cid: int,
    sensor_type_id: int,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """Replace a client's overrides for one sensor type (0: every type); owner role."""
    _client_or_404(principal, client_cid, Role.owner)
    try:
        rules.DEFAULTS.merged(overrides)
    except ValueError as exc:
        raise Invalid(str(exc), loc=("body", "thresholds")) from exc
    key = and_(
        vee_thresholds.c.client_cid == client_cid,
        vee_thresholds.c.sensor_type_id == sensor_type_id,
    )
    conn.execute(delete(vee_thresholds).where(key))
    if overrides:
        conn.execute(
            insert(vee_thresholds).values(
                client_cid=client_cid,
                sensor_type_id=sensor_type_id,
                overrides=json.dumps(overrides),
                updated_at=now_ms(),
            )
        )
    return get_thresholds(conn, principal, client_cid)


def get_thresholds(conn: Connection, principal: Principal, client_cid: int) -> dict[str, Any]:
    """The defaults and a client's overrides per sensor type ("0": every type)."""
    _client_or_404(principal, client_cid, Role.read)
    rows = conn.execute(
        select(vee_thresholds.c.sensor_type_id, vee_thresholds.c.overrides)
        .where(vee_thresholds.c.client_cid == client_cid)
        .order_by(vee_thresholds.c.sensor_type_id)
    ).all()
    return {
        "defaults": asdict(rules.DEFAULTS),
        "overrides": {str(r.sensor_type_id): json.loads(r.overrides) for r in rows},
    }


def _client_or_404(principal: Principal, client_cid: int, role: Role) -> None:
    if not principal.can(client_cid, Role.read):
        raise NotFound(f"Client {client_cid} not found")
    if not principal.can(client_cid, role):
        raise Forbidden(f"{role.value} role on client {client_cid} required")


# --- validation -----------------------------------------------------------------------------


def read_numeric(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    w: Window,
    since: int,
    till: int,
    *,
    budget: signals.ReadBudget,
    latest: bool = True,
    origin: int | None = 1,
    pre: signals.Prefetched | None = None,
) -> Frame:
    """Numeric points of the series in [since, till) through the public read: the newest
    version of each time (`latest`), else every version."""
    q = signals.ReadQuery(
        client_cid=w.client_cid,
        sensor_mid=w.sensor_mid,
        signal_type_moid=w.signal_type_moid,
        since=since,
        till=till,
        get_last=latest,
        raw=True,
        signal_origin_id=origin,
    )
    f = signals.read_frame(conn, store, principal, q, budget=budget, pre=pre).frame
    return f.take((f.type == TYPE_DBL) | (f.type == TYPE_INT))


def type_of(moid: int) -> SignalType:
    t = signal_type_by_moid(moid)
    if t is None:
        raise NotFound(f"Signal type {moid} not found")
    return t


def validate(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    w: Window,
    *,
    budget: signals.ReadBudget,
    now: int | None = None,
    known: Known | None = None,
) -> list[Finding]:
    """Every rule that applies to the series' kind over [since, till) of its measured points
    (origin 1), with a day of context each side; findings that touch the window. `known`:
    the lookups of a batch of windows this one belongs to (look_up)."""
    check_window(w.since, w.till)
    if known is None:
        known = look_up(conn, store, principal, [w])
    ref = known.ref(w)
    t = type_of(w.signal_type_moid)
    th = known.thresholds(ref)
    pre = known.prefetched
    now = now_ms() if now is None else now
    f, hmax = _context(conn, store, principal, w, t, budget=budget, pre=pre)
    times, values = f.time, f.value
    found: list[Finding] = []
    found += rules.gaps(times, since=w.since, till=min(w.till, max(now, w.since + 1)), th=th)
    found += rules.future(times, now_ms=now, th=th)
    found += rules.flatlines(times, values, th)
    if t.time_series_type == SeriesKind.CUMULATIVE:
        swaps = [p.since for p in signals.load_periods(conn, w.sensor_mid, t, multiply=False)]
        found += rules.register_decrease(times, values, swaps=swaps, th=th)
        pair = SUM_PAIRS.get(t.moid)
        if pair is not None:
            other = Window(w.client_cid, w.sensor_mid, pair, w.since, w.till)
            g = read_numeric(conn, store, principal, other, w.since, w.till, budget=budget, pre=pre)
            inside = (times >= w.since) & (times < w.till)
            if len(g):
                found += rules.sum_check(times[inside], values[inside], g.time, g.value, th)
    else:
        found += rules.spikes(times, values, th)
        outages = outages_of(known.infos.get(w.sensor_mid, {}))
        found += rules.zero_runs(times, values, outages=outages, th=th)
        interval = t.time_series_type == SeriesKind.INTERVAL
        found += rules.high(times, values, historical_max=hmax, energy_per_interval=interval, th=th)
        if interval:
            found += rules.negative(times, values, th)
    # Rewrites need a time with two versions; most windows hold none, and reading every
    # version of them again was a third of their reads.
    sid = known.series.get((w.sensor_mid, w.signal_type_moid))
    if sid is not None and store.superseded(conn, sid, w.since, w.till, origin=ORIGIN_MEASURED):
        versions = read_numeric(
            conn, store, principal, w, w.since, w.till, budget=budget, latest=False, pre=pre
        )
        found += rules.rewrites(versions.time, versions.acq, versions.value, th)
    return sorted(
        (x for x in found if x.since < w.till and x.till > w.since),
        key=lambda x: (x.since, x.rule),
    )


def require_write(conn: Connection, principal: Principal, w: Window) -> None:
    """404 for a sensor the caller may not read, 403 without the write role."""
    sensor_for(conn, principal, w.client_cid, w.sensor_mid, Role.write)


def _context(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    w: Window,
    t: SignalType,
    *,
    budget: signals.ReadBudget,
    pre: signals.Prefetched,
) -> tuple[Frame, float | None]:
    """The window's measured points with CONTEXT_MS either side and, for the kinds whose
    `high` rule compares with the past (not registers), the measured maximum of the
    HISTORY_DAYS before the window: one read of both. The maximum is None when there is no
    time before the window, or when history and window hold more points than one read may
    (the window is then read alone)."""
    lo, hi = around(w, CONTEXT_MS, CONTEXT_MS)
    before = around(w, HISTORY_DAYS * DAY_MS, 0)[0]
    if t.time_series_type != SeriesKind.CUMULATIVE and before < w.since:
        try:
            whole = read_numeric(
                conn, store, principal, w, before, hi, budget=signals.ReadBudget(budget.limit),
                pre=pre,
            )  # fmt: skip
        except TooLarge:
            pass  # too dense to read whole: the contracted power still applies
        else:
            past = whole.value[whole.time < w.since]
            f = whole.take(whole.time >= lo)
            budget.take(len(f))
            return f, float(past.max()) if len(past) else None
    return read_numeric(conn, store, principal, w, lo, hi, budget=budget, pre=pre), None


def series_id(conn: Connection, store: SeriesStore, w: Window, *, create: bool) -> int | None:
    key = (w.sensor_mid, w.signal_type_moid)
    return store.series_ids(conn, [key], create=create).get(key)


def run(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    w: Window,
    *,
    budget: signals.ReadBudget,
    now: int | None = None,
) -> list[dict[str, Any]]:
    """Validate the window and keep what was found: the open events that touch it are
    replaced; an event already accepted, estimated or corrected is not raised again. The
    events that touch the window, after."""
    sid = keep(conn, store, w, validate(conn, store, principal, w, budget=budget, now=now))
    return [] if sid is None else events(conn, sid, w.since, w.till)


def _locked_ids(
    conn: Connection, store: SeriesStore, keys: set[SeriesKey], create: set[SeriesKey]
) -> dict[SeriesKey, int]:
    """The ids of these series with their rows locked, in id order as every write locks them
    (the store's stamping statement; a batch locking them in window order deadlocked with
    writes on PostgreSQL), those in `create` made when missing; a series without a row (and
    not to be made) is left out. Two validations of one series at once (the worker after a
    write, a run on demand) queue on the lock: each replaces the open events the other
    stored, never adding to them (PostgreSQL; SQLite's one writer serialises them anyway). An
    id the store remembers is checked against its sensor and type by the locking statement
    itself; a stale one (a deleted sensor's) is looked up again."""
    out: dict[SeriesKey, int] = {}
    for known in (True, False):
        wanted = keys - out.keys()
        ids = store.series_ids(conn, wanted & create, create=True, known=known)
        ids |= store.series_ids(conn, wanted - create, create=False, known=known)
        order = sorted(ids.values())
        locked: set[tuple[int, int, int]] = set()
        for i in range(0, len(order), _IN_CHUNK):
            rows = conn.execute(
                select(series.c.id, series.c.sensor_mid, series.c.signal_type_moid)
                .where(series.c.id.in_(order[i : i + _IN_CHUNK]))
                .order_by(series.c.id)
                .with_for_update()
            )
            locked.update((int(r.id), int(r.sensor_mid), int(r.signal_type_moid)) for r in rows)
        stale = [k for k, sid in ids.items() if (sid, *k) not in locked]
        out.update((k, sid) for k, sid in ids.items() if (sid, *k) in locked)
        if not stale:
            break
        store.forget(stale)
    return out


@dataclass(slots=True)
class _Event:
    """A quality event as keep_many sees it: a stored one (its id), or one it will insert."""

    key: tuple[str, int, int]  # (rule, since, till)
    state: str
    id: int | None = None
    row: dict[str, Any] | None = None  # what to insert, for one without an id
    alive: bool = True


def keep(conn: Connection, store: SeriesStore, w: Window, found: Sequence[Finding]) -> int | None:
    """keep_many of one window."""
    return keep_many(conn, store, [(w, found)])[0]


def keep_many(
    conn: Connection, store: SeriesStore, kept: Sequence[tuple[Window, Sequence[Finding]]]
) -> list[int | None]:
    """Store what `validate` found over each window (a short write: the worker validates in
    a read transaction first, so a writer never waits for the rules), as keeping them one
    window after another would: an open event found again keeps its row (its id stays valid
    for an accept), open ones not found any more go, accepted, estimated and corrected ones
    are never raised again. Each window's series id, None when it has none and nothing was
    found. The series are locked with one statement, the events read with one, deleted with
    one and inserted with one, however many windows (a window at a time took three to five
    statements and as many SQLAlchemy constructions)."""
    keys = [(w.sensor_mid, w.signal_type_moid) for w, _ in kept]
    to_make = {k for k, (_, f) in zip(keys, kept, strict=True) if f}  # made when missing
    ids = _locked_ids(conn, store, set(keys), to_make)
    sids = [ids.get(k) for k in keys]
    spans: dict[int, tuple[int, int]] = {}
    for (w, _), sid in zip(kept, sids, strict=True):
        if sid is not None:
            lo, hi = spans.get(sid, (w.since, w.till))
            spans[sid] = (min(lo, w.since), max(hi, w.till))
    q = quality_events.c
    stored: dict[int, list[_Event]] = {sid: [] for sid in spans}
    span = list(spans.items())
    for i in range(0, len(span), _OR_CHUNK):
        touching = or_(
            *(
                and_(q.series_id == sid, q.since < hi, q.till > lo)
                for sid, (lo, hi) in span[i : i + _OR_CHUNK]
            )
        )
        cols = select(q.series_id, q.id, q.rule, q.since, q.till, q.state)
        for r in conn.execute(cols.where(touching).order_by(q.id)):
            event = _Event((r.rule, int(r.since), int(r.till)), r.state, int(r.id))
            stored[int(r.series_id)].append(event)
    made: list[_Event] = []
    stamp = now_ms()
    for (w, found), sid in zip(kept, sids, strict=True):
        if sid is None:
            continue
        now_found = {(x.rule.value, x.since, x.till) for x in found}
        settled: set[tuple[str, int, int]] = set()
        for e in stored[sid]:
            _, since, till = e.key
            if not e.alive or since >= w.till or till <= w.since:
                continue
            if e.state == "open" and e.key not in now_found:
                e.alive = False
            else:
                settled.add(e.key)
        for x in found:
            key = (x.rule.value, x.since, x.till)
            if key in settled:
                continue
            row = {
                "series_id": sid,
                "since": x.since,
                "till": x.till,
                "rule": x.rule.value,
                "severity": x.severity.value,
                "detail": json.dumps(x.detail),
                "found_at": stamp,
                "state": "open",
            }
            made.append(_Event(key, "open", row=row))
            stored[sid].append(made[-1])
    gone = sorted(
        e.id for events in stored.values() for e in events if not e.alive and e.id is not None
    )
    for i in range(0, len(gone), _IN_CHUNK):
        conn.execute(delete(quality_events).where(q.id.in_(gone[i : i + _IN_CHUNK])))
    rows = [e.row for e in made if e.alive and e.row is not None]
    if rows:
        conn.execute(insert(quality_events), rows)
    return sids


def events(conn: Connection, sid: int, since: int, till: int) -> list[dict[str, Any]]:
    """The quality events of a series that touch [since, till), in time order."""
    q = quality_events.c
    rows = conn.execute(
        select(quality_events)
        .where(q.series_id == sid, q.since < till, q.till > since)
        .order_by(q.since, q.rule, q.id)
    ).all()
    return [
        {
            "id": int(r.id),
            "since": int(r.since),
            "till": int(r.till),
            "rule": r.rule,
            "severity": r.severity,
            "detail": json.loads(r.detail),
            "found_at": int(r.found_at),
            "state": r.state,
            "accepted_by": r.accepted_by,
            "accepted_at": None if r.accepted_at is None else int(r.accepted_at),
            "note": r.note,
        }
        for r in rows
    ]


def quality(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    w: Window,
    *,
    budget: signals.ReadBudget,
) -> dict[str, Any]:
    """The events of the window and its completeness (the chart page's, measured points)."""
    check_window(w.since, w.till)
    sensor_for(conn, principal, w.client_cid, w.sensor_mid, Role.read)
    type_of(w.signal_type_moid)
    sid = series_id(conn, store, w, create=False)
    found = [] if sid is None else events(conn, sid, w.since, w.till)
    q = chart.ChartQuery(w.client_cid, w.sensor_mid, w.signal_type_moid, w.since, w.till)
    c = chart.completeness(conn, store, principal, q, budget=budget)
    days = c["days"]
    by_day = [
        {"day": int(d), "expected": int(e), "present": int(n)}
        for d, n, e in zip(days["day"], days["count"], days["expected"], strict=True)
    ]
    return {
        "events": found,
        "completeness": {
            "step_ms": c["step_ms"],
            "expected": c["expected"],
            "present": c["points"],
            "by_day": by_day,
        },
    }


def summary(
    conn: Connection, principal: Principal, client_cid: int, since: int, till: int
) -> dict[str, Any]:
    """Per series of a client, its open events in the window by severity: worst first."""
    check_window(since, till)
    _client_or_404(principal, client_cid, Role.read)
    q = quality_events.c
    errors = func.sum(func.cast(q.severity == "error", type_=series.c.id.type))
    rows = conn.execute(
        select(
            series.c.sensor_mid,
            series.c.signal_type_moid,
            errors.label("errors"),
            func.count().label("events"),
        )
        .select_from(
            quality_events.join(series, series.c.id == q.series_id).join(
                sensors, sensors.c.mid == series.c.sensor_mid
            )
        )
        .where(
            sensors.c.client_cid == client_cid,
            q.state == "open",
            q.since < till,
            q.till > since,
        )
        .group_by(series.c.sensor_mid, series.c.signal_type_moid)
    ).all()
    out = [
        {
            "sensor_mid": int(r.sensor_mid),
            "signal_type_moid": int(r.signal_type_moid),
            "errors": int(r.errors or 0),
            "warnings": int(r.events) - int(r.errors or 0),
            "open": int(r.events),
        }
        for r in rows
    ]
    out.sort(key=lambda s: (-s["errors"], -s["open"], s["sensor_mid"], s["signal_type_moid"]))
    return {"client_cid": client_cid, "since": since, "till": till, "sensors": out}


def accept(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    w: Window,
    event_id: int,
    note: str,
) -> dict[str, Any]:
    """Mark an event accepted (the data is right as it is), recording who and why."""
    sensor_for(conn, principal, w.client_cid, w.sensor_mid, Role.write)
    sid = series_id(conn, store, w, create=False)
    q = quality_events.c
    done = conn.execute(
        update(quality_events)
        .where(q.id == event_id, q.series_id == sid)
        .values(
            state="accepted",
            accepted_by=who(principal),
            accepted_at=now_ms(),
            note=note,
        )
    ).rowcount
    if not done or sid is None:
        raise NotFound(f"Quality event {event_id} not found")
    row = next(e for e in events(conn, sid, -(2**62), 2**62) if e["id"] == event_id)
    return row


def mark(conn: Connection, sid: int, since: int, till: int, state: str) -> None:
    """Open events touching [since, till) become `state` (estimated or corrected): substitutes
    now stand for their values (a measured rewrite stays open: it is about the measurement)."""
    q = quality_events.c
    conn.execute(
        update(quality_events)
        .where(
            q.series_id == sid,
            q.state == "open",
            q.since < till,
            q.till > since,
            q.rule != Rule.REWRITE.value,
        )
        .values(state=state)
    )


# --- the queue ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Written:
    """What one write stored for one series: its window and the origins in it."""

    client_cid: int
    sensor_mid: int
    signal_type_moid: int
    since: int
    till: int  # exclusive
    origins: tuple[int, ...]
    points: int


def written(
    client_cid: int,
    sensor_mid: int,
    moid: int,
    time: np.ndarray[Any, Any],
    origin: np.ndarray[Any, Any],
) -> Written | None:
    """The window and origins of a write's points (None when it had none)."""
    if not len(time):
        return None
    origins = tuple(sorted({int(o) for o in np.unique(origin)}))
    return Written(
        client_cid, sensor_mid, moid, int(time.min()), int(time.max()) + 1, origins, len(time)
    )


def who(principal: Principal) -> str:
    """How the audit and the events name a caller."""
    if principal.login:
        return principal.login
    return "unknown" if principal.user_id is None else f"user {principal.user_id}"


def enqueue(
    conn: Connection,
    principal: Principal,
    writes: Sequence[Written],
    *,
    reason: str | None = None,
    method: str | None = None,
) -> int:
    """Queue the windows a committed write touched; the rows carry who wrote and why."""
    rows = _queue_rows(principal, writes, reason=reason, method=method)
    if rows:
        conn.execute(insert(vee_queue), rows)
    return len(rows)


# The queue rows of a write as arrays, one per column, and what they share as scalars: a
# short statement (psycopg caches its parse; one with a placeholder per value, 1,100 for
# the benchmark's 100 series, it parses again each time) whose parameters are dumped as
# eleven values, not 1,100. 100 rows: 1.9 ms, against 3.0 ms for SQLAlchemy's executemany.
_PG_ENQUEUE = (
    "INSERT INTO vee_queue (client_cid, sensor_mid, signal_type_moid, since, till, origins, "
    "points, who, method, reason, enqueued_at) "
    "SELECT c, m, t, s, u, o, p, %s::text, %s::text, %s::text, %s::bigint "
    "FROM unnest(%s::int[], %s::int[], %s::int[], %s::bigint[], %s::bigint[], %s::text[], "
    "%s::int[]) AS r(c, m, t, s, u, o, p)"
)


# The columns a queue row is written with (_queue_rows' keys), in the table's order.
_QUEUED = tuple(c.name for c in vee_queue.c if c.name not in ("id", "claimed_at"))
_SQLITE_ENQUEUE = (
    f"INSERT INTO vee_queue ({', '.join(_QUEUED)}) VALUES ({', '.join('?' * len(_QUEUED))})"
)


def enqueue_apart(
    conn: Connection, principal: Principal, writes: Sequence[Written], *, reason: str | None
) -> int:
    """`enqueue` in a savepoint of its own, which a failure rolls back before it is raised
    (the write before it stands), by the driver itself: SQLAlchemy's executemany of a dict a
    row, with its savepoint, was a tenth of a served 10,000-point write on SQLite (100
    rows). On PostgreSQL one INSERT of arrays, sent with the savepoint and its release in
    one round trip (psycopg's pipeline mode), not a statement per row and a round trip each
    for the savepoint's two."""
    if not writes:
        return 0
    raw = dbapi_connection(conn)
    if conn.dialect.name != "postgresql":
        queued = _queue_rows(principal, writes, reason=reason, method=None)
        rows = [tuple(r[c] for c in _QUEUED) for r in queued]
        raw.execute("SAVEPOINT vee_enqueue")
        try:
            raw.executemany(_SQLITE_ENQUEUE, rows)
        except Exception:
            raw.execute("ROLLBACK TO SAVEPOINT vee_enqueue")
            raise
        finally:
            raw.execute("RELEASE SAVEPOINT vee_enqueue")
        return len(writes)
    params = [
        who_wrote(principal),
        None,
        reason,
        now_ms(),
        pg_array(x.client_cid for x in writes),
        pg_array(x.sensor_mid for x in writes),
        pg_array(x.signal_type_moid for x in writes),
        pg_array(x.since for x in writes),
        pg_array(x.till for x in writes),
        pg_array(f'"{",".join(map(str, x.origins))}"' for x in writes),
        pg_array(x.points for x in writes),
    ]
    try:
        with raw.cursor() as cur, raw.pipeline():
            cur.execute("SAVEPOINT vee_enqueue")
            cur.execute(_PG_ENQUEUE, params)
            cur.execute("RELEASE SAVEPOINT vee_enqueue")
    except Exception:
        raw.execute("ROLLBACK TO SAVEPOINT vee_enqueue")
        raw.execute("RELEASE SAVEPOINT vee_enqueue")
        raise
    return len(writes)


def who_wrote(principal: Principal) -> str | None:
    """How a queue row names its writer."""
    return principal.login or (None if principal.user_id is None else f"user {principal.user_id}")


def _queue_rows(
    principal: Principal, writes: Sequence[Written], *, reason: str | None, method: str | None
) -> list[dict[str, Any]]:
    stamp = now_ms()
    return [
        {
            "client_cid": x.client_cid,
            "sensor_mid": x.sensor_mid,
            "signal_type_moid": x.signal_type_moid,
            "since": x.since,
            "till": x.till,
            "origins": ",".join(map(str, x.origins)),
            "points": x.points,
            "who": who_wrote(principal),
            "method": method,
            "reason": reason,
            "enqueued_at": stamp,
        }
        for x in writes
    ]


def pending(conn: Connection) -> int:
    """Queued windows not yet done."""
    return int(conn.execute(select(func.count()).select_from(vee_queue)).scalar_one())


def _free() -> Any:
    """Rows nobody holds: never claimed, or claimed by a worker that died or failed on them."""
    q = vee_queue.c
    return or_(q.claimed_at.is_(None), q.claimed_at < now_ms() - CLAIM_EXPIRES_MS)


@dataclass(frozen=True, slots=True)
class QueueLook:
    """What a worker sees of the queue before it claims: `newest`, the id of the newest row
    (None: the queue is empty), which grows while writes keep coming, and `oldest_at`, when
    the oldest row nobody holds was queued (None: nothing `claim` would take)."""

    newest: int | None
    oldest_at: int | None


def look(conn: Connection) -> QueueLook:
    """The queue's newest row and its oldest free one: two reads by the primary key (where a
    claim is a write even of no row: on SQLite it takes the one writer's lock)."""
    q = vee_queue.c
    newest = conn.execute(select(func.max(q.id))).scalar_one()
    oldest = conn.execute(select(q.enqueued_at).where(_free()).order_by(q.id).limit(1)).first()
    return QueueLook(
        None if newest is None else int(newest), None if oldest is None else int(oldest[0])
    )


def claim(conn: Connection, limit: int = 50) -> list[Any]:
    """Take up to `limit` rows nobody holds (each claimed by one worker only); a claim older
    than CLAIM_EXPIRES_MS (its worker died or failed on it) is taken again.

    One UPDATE for all of them (a statement per row was most of a drain's cost under a bulk
    load, 100 rows a request): its WHERE is checked again on the row as locked (PostgreSQL's
    READ COMMITTED), so of two workers claiming the same row the second finds it held."""
    q = vee_queue.c
    free = _free()
    wanted = select(q.id).where(free).order_by(q.id).limit(limit).scalar_subquery()
    rows = conn.execute(
        update(vee_queue)
        .where(q.id.in_(wanted), free)
        .values(claimed_at=now_ms())
        .returning(*vee_queue.c)
    ).all()
    return sorted(rows, key=lambda r: int(r.id))


def done(conn: Connection, ids: Sequence[int]) -> None:
    """Remove processed rows."""
    if ids:
        conn.execute(delete(vee_queue).where(vee_queue.c.id.in_(list(ids))))
