"""The audit of estimated (origin 4) and corrected (origin 5) writes: who, when (the version's
acquisition time), the method and the reason. Entries are only ever added."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from besmart_server.schemas.users import Role
from besmart_server.server.sensors.access import sensor_for
from besmart_server.server.signals import service as signals
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.users.service import Principal
from besmart_server.server.vee import service
from besmart_server.server.vee.service import Window
from besmart_server.server.vee.tables import vee_audit

STATE_OF_ORIGIN = {4: "estimated", 5: "corrected"}


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


def record_written(
    conn: Connection,
    store: SeriesStore,
    principal: Principal,
    w: Window,
    row: Any,
    origin: int,
    *,
    budget: signals.ReadBudget,
) -> None:
    """The entry of a queued write (a vee_queue row): its acquisition time is the newest
    version of that origin in the window as the write left it (acquired before it was
    queued)."""
    q = signals.ReadQuery(
        client_cid=w.client_cid,
        sensor_mid=w.sensor_mid,
        signal_type_moid=w.signal_type_moid,
        since=w.since,
        till=w.till,
        get_last=True,
        raw=True,
        signal_origin_id=origin,
        as_of=int(row.enqueued_at) + 1,
    )
    f = signals.read_frame(conn, store, principal, q, budget=budget).frame
    sid = service.series_id(conn, store, w, create=False)
    if sid is None or not len(f):
        return
    add(
        conn,
        sid,
        since=w.since,
        till=w.till,
        origin=origin,
        points=len(f),
        acq_time=int(f.acq.max()) // 1000,  # the store's stamps are µs
        who=row.who or "unknown",
        method=row.method or ("manual" if origin == 5 else None),
        reason=row.reason,
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
