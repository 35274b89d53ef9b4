"""What the pages show that no single API route answers: the grid tree with freshness, the
search across name, sensor_eid and meter serial, and the signals a sensor page charts.

Every function checks tenancy with the API's own rules (404 for a client or sensor the caller
cannot read); the values come from the same tables the REST routes read.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.orm import aliased

from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal, require_readable_client, sensor_for
from besmart_server.server.db import now_ms
from besmart_server.server.sensors.tables import sensor_types, sensors
from besmart_server.server.signals.catalog import (
    FORECAST_BANDS,
    SeriesKind,
    signal_type_by_moid,
)
from besmart_server.server.signals.store import newest_per_sensor
from besmart_server.server.signals.tables import series
from besmart_server.server.states.tables import sensor_states
from besmart_server.wire import ORIGIN_MEASURED

TREE_PAGE = 200  # children listed at once per node; a "more" row fetches the next page


@dataclass(frozen=True, slots=True)
class Node:
    """One sensor as a row of the grid tree."""

    client_cid: int
    sensor_mid: int
    name: str
    sensor_eid: str | None
    type_name: str | None
    children: int
    meter_eid: str | None  # the meter installed now
    newest_ms: int | None  # capture time of the newest measured point of any signal


def newest_measured(conn: Connection, mids: list[int]) -> dict[int, int]:
    """The newest measured capture time per sensor (the grid's freshness badge)."""
    return newest_per_sensor(conn, mids, ORIGIN_MEASURED)


def _nodes(conn: Connection, where: list[object], *, limit: int, offset: int = 0) -> list[Node]:
    child = aliased(sensors)
    n_children = select(func.count()).where(child.c.node_id == sensors.c.mid).scalar_subquery()
    now = now_ms()
    meter_now = (
        select(sensor_states.c.meter_eid)
        .where(
            sensor_states.c.sensor_mid == sensors.c.mid,
            sensor_states.c.since <= now,
            or_(sensor_states.c.till.is_(None), sensor_states.c.till > now),
        )
        .limit(1)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(
            sensors.c.client_cid,
            sensors.c.mid,
            sensors.c.name,
            sensors.c.sensor_eid,
            sensor_types.c.name.label("type_name"),
            n_children.label("children"),
            meter_now.label("meter_eid"),
        )
        .select_from(sensors.outerjoin(sensor_types, sensor_types.c.id == sensors.c.sensor_type_id))
        .where(and_(*where))  # type: ignore[arg-type]
        .order_by(sensors.c.name, sensors.c.mid)
        .limit(limit)
        .offset(offset)
    ).all()
    fresh = newest_measured(conn, [int(r.mid) for r in rows])
    return [
        Node(
            int(r.client_cid),
            int(r.mid),
            str(r.name),
            r.sensor_eid,
            r.type_name,
            int(r.children),
            r.meter_eid,
            fresh.get(int(r.mid)),
        )
        for r in rows
    ]


def children(
    conn: Connection,
    principal: Principal,
    client_cid: int,
    parent: int | None,
    *,
    offset: int = 0,
    limit: int = TREE_PAGE,
) -> list[Node]:
    """A page of the sensors directly under `parent` (the roots when None), by name; 404 when
    the caller cannot read the client or the parent."""
    require_readable_client(conn, principal, client_cid)
    where: list[object] = [sensors.c.client_cid == client_cid]
    if parent is None:
        where.append(sensors.c.node_id.is_(None))
    else:
        sensor_for(conn, principal, client_cid, parent, Role.read)
        where.append(sensors.c.node_id == parent)
    return _nodes(conn, where, limit=limit, offset=offset)


def search(
    conn: Connection,
    principal: Principal,
    client_cid: int,
    *,
    text: str,
    sensor_type_id: int | None,
    limit: int = 100,
) -> list[Node]:
    """Sensors of the client whose name, sensor_eid or any meter serial (meter_eid of any
    installation period) contains `text` (any case), optionally of one sensor type."""
    require_readable_client(conn, principal, client_cid)
    where: list[object] = [sensors.c.client_cid == client_cid]
    needle = text.strip().lower()
    if needle:
        where.append(
            or_(
                func.lower(sensors.c.name).contains(needle, autoescape=True),
                func.lower(sensors.c.sensor_eid).contains(needle, autoescape=True),
                select(sensor_states.c.id)
                .where(
                    sensor_states.c.sensor_mid == sensors.c.mid,
                    func.lower(sensor_states.c.meter_eid).contains(needle, autoescape=True),
                )
                .exists(),
            )
        )
    if sensor_type_id is not None:
        where.append(sensors.c.sensor_type_id == sensor_type_id)
    return _nodes(conn, where, limit=limit)


def ancestors(
    conn: Connection, principal: Principal, client_cid: int, sensor_mid: int
) -> list[Node]:
    """The path from the root down to the sensor's parent (for the sensor page's breadcrumb)."""
    sensor_for(conn, principal, client_cid, sensor_mid, Role.read)
    path: list[int] = []
    current = conn.scalar(select(sensors.c.node_id).where(sensors.c.mid == sensor_mid))
    while current is not None and current not in path and len(path) < 64:
        path.append(int(current))
        current = conn.scalar(select(sensors.c.node_id).where(sensors.c.mid == current))
    if not path:
        return []
    by_mid = {
        n.sensor_mid: n
        for n in _nodes(
            conn,
            [sensors.c.client_cid == client_cid, sensors.c.mid.in_(path)],
            limit=len(path),
        )
    }
    return [by_mid[m] for m in reversed(path) if m in by_mid]


@dataclass(frozen=True, slots=True)
class ChartSignal:
    """A signal of the sensor that its page charts (signal type with draw_chart and data)."""

    moid: int
    symbol: str
    description: str
    unit: str  # the chart unit (chart_expected_unit), else the stored one
    kind: str  # instantaneous | cumulative | interval
    summary: tuple[str, ...]  # the figures shown under the chart
    band: tuple[int, int] | None = None  # the P10 and P90 series drawn around a forecast


# chart_expected_summary is empty in the spec's catalog: these are the figures by series kind.
SUMMARY_BY_KIND = {
    SeriesKind.INSTANTANEOUS: ("mean", "min", "max"),
    SeriesKind.CUMULATIVE: ("sum", "mean", "max"),
    SeriesKind.INTERVAL: ("sum", "mean", "max"),
}
KIND_NAMES = {
    SeriesKind.INSTANTANEOUS: "instantaneous",
    SeriesKind.CUMULATIVE: "cumulative",
    SeriesKind.INTERVAL: "interval",
}


def chart_signals(
    conn: Connection, principal: Principal, client_cid: int, sensor_mid: int
) -> list[ChartSignal]:
    """The sensor's signals that have a series and whose type has draw_chart, by moid; a
    forecast's P10 and P90 series go with it as its band (charted alone only without it)."""
    sensor_for(conn, principal, client_cid, sensor_mid, Role.read)
    moids = {
        int(m)
        for m in conn.scalars(
            select(series.c.signal_type_moid).where(series.c.sensor_mid == sensor_mid).distinct()
        )
    }
    bands = {m: b for m, b in FORECAST_BANDS.items() if m in moids and set(b) <= moids}
    in_band = {x for b in bands.values() for x in b}
    out = []
    for moid in sorted(moids - in_band):
        t = signal_type_by_moid(moid)
        if t is None or not t.draw_chart:
            continue
        unit = t.chart_unit or t.unit
        out.append(
            ChartSignal(
                t.moid,
                t.symbol,
                t.description,
                unit.symbol,
                KIND_NAMES[t.time_series_type],
                SUMMARY_BY_KIND[t.time_series_type],
                bands.get(t.moid),
            )
        )
    return out
