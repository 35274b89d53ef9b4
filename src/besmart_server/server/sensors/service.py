"""Sensor types and sensors: plain functions over the request's connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from besmart_server.schemas.sensors import SensorResponse, SensorTypeResponse
from besmart_server.schemas.users import Role
from besmart_server.server.access import (
    Principal,
    readable_filter,
    require_readable_client,
    sensor_for,
    tenant_cids,
)
from besmart_server.server.db import now_ms
from besmart_server.server.errors import Conflict, Invalid, NotFound
from besmart_server.server.fields import (
    check_custom_fields,
    check_text,
    dump_json,
    load_json,
    parse_json,
)
from besmart_server.server.sensors.tables import sensor_types, sensors
from besmart_server.server.sensors.tree import creates_cycle
from besmart_server.server.signals.tables import blocks, pending, series
from besmart_server.server.states.tables import sensor_states, signal_states
from besmart_server.server.users.tables import clients

# --- sensor types ------------------------------------------------------------------------


def list_types(conn: Connection) -> list[SensorTypeResponse]:
    """Every sensor type, by id."""
    rows = conn.execute(select(sensor_types).order_by(sensor_types.c.id))
    return [
        SensorTypeResponse(
            id=r.id,
            name=r.name,
            description=r.description or "",
            sensor_state_custom_fields=r.sensor_state_custom_fields,
            sensor_custom_fields=r.sensor_custom_fields,
            is_system_type=bool(r.is_system_type),
        )
        for r in rows
    ]


def _type_row(conn: Connection, sensor_type_id: int, *, field: str = "sensor_type_id") -> Row[Any]:
    row = conn.execute(select(sensor_types).where(sensor_types.c.id == sensor_type_id)).first()
    if row is None:
        raise Invalid(f"Sensor type {sensor_type_id} not found", loc=("query", field))
    return row


# --- sensors -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SensorFields:
    """Sensor fields as the query gives them; None means 'not given' (left unchanged).

    On update, `sensor_eid=""` clears the external id and `node_id=0` detaches the sensor
    from its parent; JSON fields are text, and the JSON text `null` clears them."""

    name: str | None = None
    sensor_type_id: int | None = None
    sensor_eid: str | None = None
    lat: float | None = None
    lon: float | None = None
    node_id: int | None = None
    annotations: str | None = None
    info: str | None = None
    comments: str | None = None
    uncertain: bool | None = None
    negligible: bool | None = None
    balance_calculation: bool | None = None

    def __post_init__(self) -> None:
        for name in ("name", "sensor_eid", "comments"):
            check_text(getattr(self, name), name)


def _sensor_query() -> Any:
    return select(
        sensors,
        sensor_types.c.name.label("type_name"),
        sensor_types.c.description.label("type_description"),
    ).select_from(sensors.outerjoin(sensor_types, sensor_types.c.id == sensors.c.sensor_type_id))


def _response(row: Row[Any], principal: Principal) -> SensorResponse:
    can_write = principal.can(row.client_cid, Role.write)
    return SensorResponse(
        client_cid=row.client_cid,
        sensor_mid=row.mid,
        name=row.name,
        sensor_type_id=row.sensor_type_id,
        sensor_type_name=row.type_name,
        sensor_type_description=row.type_description,
        sensor_eid=row.sensor_eid,
        lat=row.lat,
        lon=row.lon,
        node_id=row.node_id,
        annotations=load_json(row.annotations),
        info=load_json(row.info),
        comments=row.comments,
        uncertain=bool(row.uncertain),
        negligible=bool(row.negligible),
        balance_calculation=bool(row.balance_calculation),
        write=can_write,
        execute=can_write,
    )


def _read(conn: Connection, principal: Principal, sensor_mid: int) -> SensorResponse:
    row = conn.execute(_sensor_query().where(sensors.c.mid == sensor_mid)).one()
    return _response(row, principal)


def get_sensor(
    conn: Connection, principal: Principal, client_cid: int, sensor_mid: int
) -> SensorResponse:
    """A sensor the caller can read (404 when missing or another tenant's)."""
    sensor_for(conn, principal, client_cid, sensor_mid, Role.read)
    return _read(conn, principal, sensor_mid)


@dataclass(frozen=True, slots=True)
class SensorFilter:
    """What GET /api/sensors/find narrows by; None means 'any'."""

    client_cid: int | None = None
    sensor_type_id: int | None = None
    name: str | None = None
    sensor_eid: str | None = None
    meter_eid: str | None = None

    def __post_init__(self) -> None:
        for name in ("name", "sensor_eid", "meter_eid"):
            check_text(getattr(self, name), name)


def find_sensors(
    conn: Connection,
    principal: Principal,
    where: SensorFilter,
    *,
    limit: int = 100,
    offset: int = 0,
    at: int | None = None,
) -> list[SensorResponse]:
    """A page of the sensors the caller can read that match `where`, by sensor_mid.

    `name` is a case-insensitive substring; `meter_eid` names the meter of the state in
    force at `at` (default now). A client the caller cannot read is 404, like a missing
    one; an unknown sensor type is 422. Without `client_cid`, system clients' sensors (the
    weather grid's) are left out, as GET /api/clients leaves those clients out."""
    if where.client_cid is not None:
        require_readable_client(conn, principal, where.client_cid)
    if where.sensor_type_id is not None:
        _type_row(conn, where.sensor_type_id)
    readable = readable_filter(principal, sensors.c.client_cid)
    if readable is None:
        return []
    query = _sensor_query().where(readable)
    if where.client_cid is not None:
        query = query.where(sensors.c.client_cid == where.client_cid)
    else:  # system clients (the weather grid's) are internal, as in GET /api/clients
        query = query.where(sensors.c.client_cid.in_(tenant_cids()))
    if where.sensor_type_id is not None:
        query = query.where(sensors.c.sensor_type_id == where.sensor_type_id)
    if where.name:
        # lower() on both sides: ASCII on SQLite, the locale's case mapping on PostgreSQL.
        query = query.where(
            func.lower(sensors.c.name).contains(where.name.lower(), autoescape=True)
        )
    if where.sensor_eid is not None:
        query = query.where(sensors.c.sensor_eid == where.sensor_eid)
    if where.meter_eid is not None:
        at = now_ms() if at is None else at
        query = query.where(
            select(sensor_states.c.id)
            .where(
                sensor_states.c.sensor_mid == sensors.c.mid,
                sensor_states.c.meter_eid == where.meter_eid,
                sensor_states.c.since <= at,
                sensor_states.c.till.is_(None) | (sensor_states.c.till > at),
            )
            .exists()
        )
    rows = conn.execute(query.order_by(sensors.c.mid).limit(limit).offset(offset))
    return [_response(r, principal) for r in rows]


def _check_eid(conn: Connection, client_cid: int, eid: str, sensor_mid: int | None) -> None:
    query = select(sensors.c.mid).where(
        sensors.c.client_cid == client_cid, sensors.c.sensor_eid == eid
    )
    if sensor_mid is not None:
        query = query.where(sensors.c.mid != sensor_mid)
    other = conn.scalar(query)
    if other is not None:
        raise Conflict(f"Sensor with sensor_eid {eid} already exists: {client_cid}.{other}")


def _check_parent(conn: Connection, client_cid: int, parent: int, sensor_mid: int | None) -> None:
    """The parent must be a sensor of the same client, and must not close a loop."""
    loc = ("query", "node_id")
    exists = conn.scalar(
        select(sensors.c.mid).where(sensors.c.mid == parent, sensors.c.client_cid == client_cid)
    )
    if exists is None:
        raise Invalid(f"Sensor {client_cid}.{parent} not found (node_id)", loc=loc)
    if sensor_mid is None:
        return  # a new sensor has no children yet
    # Topology edits of one client are serialized, so two concurrent edits cannot each pass
    # the check and together close a loop (a no-op on SQLite, whose writers queue anyway).
    conn.execute(select(clients.c.cid).where(clients.c.cid == client_cid).with_for_update())

    def parent_of(mid: int) -> int | None:
        value = conn.scalar(select(sensors.c.node_id).where(sensors.c.mid == mid))
        return None if value is None else int(value)

    if creates_cycle(sensor_mid, parent, parent_of):
        raise Invalid(
            f"node_id {parent} would make sensor {client_cid}.{sensor_mid} its own ancestor",
            loc=loc,
            type_="cycle",
        )


def create_sensor(
    conn: Connection, principal: Principal, *, client_cid: int, fields: SensorFields
) -> SensorResponse:
    """A new sensor under `client_cid` (write role); the server assigns its sensor_mid."""
    principal.require(client_cid, Role.write, what=f"Client {client_cid}")
    if conn.scalar(select(clients.c.cid).where(clients.c.cid == client_cid)) is None:
        raise NotFound(f"Client {client_cid} not found")  # admins reach here for any cid
    if not fields.name:
        raise Invalid("name must not be empty", loc=("query", "name"), type_="string_too_short")
    schema_text = None
    if fields.sensor_type_id is not None:
        schema_text = _type_row(conn, fields.sensor_type_id).sensor_custom_fields
    info = None if fields.info is None else parse_json(fields.info, "info")
    check_custom_fields(
        info, schema_text, field="info", what=f"sensor type {fields.sensor_type_id}"
    )
    annotations = (
        None
        if fields.annotations is None
        else parse_json(fields.annotations, "annotations", object_only=False)
    )
    eid = fields.sensor_eid or None
    if eid is not None:
        _check_eid(conn, client_cid, eid, None)
    node_id = fields.node_id or None
    if node_id is not None:
        _check_parent(conn, client_cid, node_id, None)
    try:
        mid = conn.execute(
            insert(sensors)
            .values(
                client_cid=client_cid,
                name=fields.name,
                sensor_type_id=fields.sensor_type_id,
                sensor_eid=eid,
                lat=fields.lat,
                lon=fields.lon,
                node_id=node_id,
                annotations=dump_json(annotations),
                info=dump_json(info),
                comments=fields.comments,
                uncertain=bool(fields.uncertain),
                negligible=bool(fields.negligible),
                balance_calculation=bool(fields.balance_calculation),
                created_at=now_ms(),
            )
            .returning(sensors.c.mid)
        ).scalar_one()
    except IntegrityError as exc:  # a concurrent insert of the same sensor_eid
        raise Conflict(f"Sensor with sensor_eid {eid} already exists") from exc
    return _read(conn, principal, int(mid))


def update_sensor(
    conn: Connection,
    principal: Principal,
    client_cid: int,
    sensor_mid: int,
    fields: SensorFields,
) -> SensorResponse:
    """Change only the given fields of a sensor (write role)."""
    sensor_for(conn, principal, client_cid, sensor_mid, Role.write)
    current = conn.execute(
        select(sensors).where(sensors.c.mid == sensor_mid).with_for_update()
    ).one()
    values: dict[str, Any] = {}
    if fields.name is not None:
        if not fields.name:
            raise Invalid("name must not be empty", loc=("query", "name"), type_="string_too_short")
        values["name"] = fields.name
    for name in ("lat", "lon", "comments", "uncertain", "negligible", "balance_calculation"):
        given = getattr(fields, name)
        if given is not None:
            values[name] = given
    if fields.sensor_eid is not None:
        eid = fields.sensor_eid or None
        if eid is not None:
            _check_eid(conn, client_cid, eid, sensor_mid)
        values["sensor_eid"] = eid
    if fields.node_id is not None:
        parent = fields.node_id or None
        if parent == sensor_mid:
            raise Invalid(
                f"node_id {parent}: a sensor cannot be its own parent",
                loc=("query", "node_id"),
                type_="cycle",
            )
        if parent is not None:
            _check_parent(conn, client_cid, parent, sensor_mid)
        values["node_id"] = parent
    if fields.annotations is not None:
        values["annotations"] = dump_json(
            parse_json(fields.annotations, "annotations", object_only=False)
        )
    type_id = current.sensor_type_id
    if fields.sensor_type_id is not None:
        type_id = fields.sensor_type_id
        values["sensor_type_id"] = type_id
    info = load_json(current.info)
    if fields.info is not None:
        info = parse_json(fields.info, "info")
        values["info"] = dump_json(info)
    if fields.info is not None or fields.sensor_type_id is not None:
        schema_text = None if type_id is None else _type_row(conn, type_id).sensor_custom_fields
        check_custom_fields(
            info,
            schema_text,
            field="info" if fields.info is not None else "sensor_type_id",
            what=f"sensor type {type_id}",
        )
    if values:
        try:
            conn.execute(update(sensors).where(sensors.c.mid == sensor_mid).values(**values))
        except IntegrityError as exc:
            raise Conflict(f"Sensor with sensor_eid {fields.sensor_eid} already exists") from exc
    return _read(conn, principal, sensor_mid)


def delete_sensor(conn: Connection, principal: Principal, client_cid: int, sensor_mid: int) -> None:
    """Remove a sensor with its states, signal states, series and points (write role).

    Its children in the tree stay, detached (node_id becomes null)."""
    sensor_for(conn, principal, client_cid, sensor_mid, Role.write)
    own_series = select(series.c.id).where(series.c.sensor_mid == sensor_mid)
    own_states = select(sensor_states.c.id).where(sensor_states.c.sensor_mid == sensor_mid)
    conn.execute(delete(blocks).where(blocks.c.series_id.in_(own_series)))
    conn.execute(delete(pending).where(pending.c.series_id.in_(own_series)))
    conn.execute(delete(series).where(series.c.sensor_mid == sensor_mid))
    conn.execute(delete(signal_states).where(signal_states.c.sensor_state_id.in_(own_states)))
    conn.execute(delete(sensor_states).where(sensor_states.c.sensor_mid == sensor_mid))
    conn.execute(update(sensors).where(sensors.c.node_id == sensor_mid).values(node_id=None))
    conn.execute(delete(sensors).where(sensors.c.mid == sensor_mid))
