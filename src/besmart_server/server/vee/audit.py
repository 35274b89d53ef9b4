"""The audit of estimated (origin 4) and corrected (origin 5) writes: who, when (the version's
acquisition time), the method and the reason. Entries are only ever added."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal, sensor_for
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.vee import service
from besmart_server.server.vee.service import Window
from besmart_server.server.vee.tables import vee_audit

STATE_OF_ORIGIN = {4: "estimated", 5: "corrected"}
AUDITED = tuple(STATE_OF_ORIGIN)
MAX_READ_BACK = 5_000_000  # points a write's read-back may see (a graph read's default)


def add(
    conn: Connection,
    sid: int,
    *,
    since: int,
    till: int,
    origin: int,
    points: int,
    acq_time: int,
    who: str,
    method: str | None,
    reason: str | None,
) -> None:
    """One entry; the window's open events become estimated/corrected."""
    conn.execute(
        insert(vee_audit).values(
            series_id=sid,
            since=since,
            till=till,
            origin=origin,
            points=points,
            acq_time=acq_time,
            who=who,
            method=method,
            reason=reason,
        )
    )
    service.mark(conn, sid, since, till, STATE_OF_ORIGIN[origin])


def record_write(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    item: signals.WriteItem,
    *,
    reason: str | None = None,
    budget: signals.ReadBudget | None = None,
    who: str | None = None,
    method: str | None = None,
) -> None:
    """Entries for the estimated and corrected points of a write, in its transaction (after
    its points, so the version it made is read back as its acquisition time, unless the body
    gave acq_time). `who` and `method` default to the caller and manual/imported."""
    cols = item.columns
    for origin in STATE_OF_ORIGIN:
        mask = cols.origin == origin
        if not mask.any():
            continue
        times = cols.time[mask]
        w = Window(
            item.client_cid,
            item.sensor_mid,
            item.signal_type_moid,
            int(times.min()),
            int(times.max()) + 1,
        )
        sid = service.series_id(conn, store, w, create=False)
        if sid is None:
            continue
        if cols.acq_ms is not None:
            acq = int(cols.acq_ms[mask].max())
        else:
            store.drain_series(conn, [sid])  # this write's points, if it deferred them
            q = signals.ReadQuery(
                client_cid=w.client_cid,
                sensor_mid=w.sensor_mid,
                signal_type_moid=w.signal_type_moid,
                since=w.since,
                till=w.till,
                get_last=True,
                raw=True,
                signal_origin_id=origin,
            )
            budget = budget or signals.ReadBudget(MAX_READ_BACK)
            f = signals.read_frame(conn, store, principal, q, budget=budget).frame
            if not len(f):
                continue
            acq = int(f.acq.max()) // 1000  # the store's stamps are µs
        add(
            conn,
            sid,
            since=w.since,
            till=w.till,
            origin=origin,
            points=int(mask.sum()),
            acq_time=acq,
            who=who or service.who(principal),
            method=method or ("manual" if origin == 5 else "imported"),
            reason=reason,
        )


def entries(
    conn: Connection, store: SeriesStore, principal: Principal, w: Window
) -> list[dict[str, Any]]:
    """The audit entries of a series that touch [since, till), oldest first."""
    service.check_window(w.since, w.till)
    sensor_for(conn, principal, w.client_cid, w.sensor_mid, Role.read)
    sid = service.series_id(conn, store, w, create=False)
    if sid is None:
        return []
    a = vee_audit.c
    rows = conn.execute(
        select(vee_audit)
        .where(a.series_id == sid, a.since < w.till, a.till > w.since)
        .order_by(a.acq_time, a.id)
    ).all()
    return [
        {
            "id": int(r.id),
            "since": int(r.since),
            "till": int(r.till),
            "origin": int(r.origin),
            "points": int(r.points),
            "acq_time": int(r.acq_time),
            "who": r.who,
            "method": r.method,
            "reason": r.reason,
        }
        for r in rows
    ]
