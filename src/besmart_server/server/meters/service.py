"""Meter types: the seeded system catalog plus each client's own (owner role to change)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from besmart_server.schemas.sensors import MeterTypeResponse
from besmart_server.schemas.users import Role
from besmart_server.server.access import (
    Principal,
    readable_filter,
    require_readable_client,
    tenant_cids,
)
from besmart_server.server.errors import Conflict, Forbidden, Invalid, NotFound
from besmart_server.server.fields import check_text
from besmart_server.server.meters.tables import meter_types
from besmart_server.server.states.tables import sensor_states
from besmart_server.server.users.tables import clients


@dataclass(frozen=True, slots=True)
class MeterTypeFields:
    """Meter type fields as the query gives them; None means 'not given' (left unchanged).

    `number_of_phases=0` stores null (not applicable, e.g. a data concentrator)."""

    meter_type_name: str | None = None
    description: str | None = None
    number_of_phases: int | None = None
    is_ami: bool | None = None
    is_dcu: bool | None = None
    is_balance: bool | None = None

    def __post_init__(self) -> None:
        check_text(self.meter_type_name, "meter_type_name")
        check_text(self.description, "description")
        if self.meter_type_name is not None and not self.meter_type_name.strip():
            raise Invalid(
                "meter_type_name must not be blank",
                loc=("query", "meter_type_name"),
                type_="string_too_short",
            )


def _response(row: Row[Any]) -> MeterTypeResponse:
    return MeterTypeResponse(
        id=row.id,
        client_cid=row.client_cid,
        meter_type_name=row.meter_type_name,
        description=row.description or "",
        number_of_phases=row.number_of_phases,
        is_ami=bool(row.is_ami),
        is_dcu=bool(row.is_dcu),
        is_balance=bool(row.is_balance),
    )


def _read(conn: Connection, meter_type_id: int) -> MeterTypeResponse:
    return _response(
        conn.execute(select(meter_types).where(meter_types.c.id == meter_type_id)).one()
    )


def list_meter_types(
    conn: Connection, principal: Principal, *, client_cid: int | None = None
) -> list[MeterTypeResponse]:
    """System types and those of the tenants the caller can read, by id.

    With `client_cid`: the types a state of that client may name (system ones and the
    client's own); a client the caller cannot read is 404, like a missing one."""
    system = meter_types.c.client_cid.is_(None)
    visible: ColumnElement[bool]
    if client_cid is not None:
        require_readable_client(conn, principal, client_cid)
        visible = system | (meter_types.c.client_cid == client_cid)
    else:
        readable = readable_filter(principal, meter_types.c.client_cid)
        tenants = meter_types.c.client_cid.in_(tenant_cids())
        visible = system if readable is None else system | (readable & tenants)
    rows = conn.execute(select(meter_types).where(visible).order_by(meter_types.c.id))
    return [_response(r) for r in rows]


def _check_name(conn: Connection, client_cid: int, name: str, own_id: int | None) -> None:
    """409 when the client already sees a type of this name (case-insensitive): system
    types and its own. Writes of one client's types are serialized by a lock on the client,
    so two concurrent requests cannot both pass."""
    # NO KEY UPDATE: serializes these checks without blocking inserts that reference the client.
    conn.execute(
        select(clients.c.cid).where(clients.c.cid == client_cid).with_for_update(key_share=True)
    )
    wanted = name.casefold()
    for other_id, other_name in conn.execute(
        select(meter_types.c.id, meter_types.c.meter_type_name).where(
            meter_types.c.client_cid.is_(None) | (meter_types.c.client_cid == client_cid)
        )
    ):
        if other_id != own_id and other_name.casefold() == wanted:
            raise Conflict(f"Meter type {other_name} already exists: {other_id}")


def create_meter_type(
    conn: Connection, principal: Principal, *, client_cid: int, fields: MeterTypeFields
) -> MeterTypeResponse:
    """A new meter type of `client_cid` (owner role); 409 when the name is taken."""
    principal.require(client_cid, Role.owner, what=f"Client {client_cid}")
    if conn.scalar(select(clients.c.cid).where(clients.c.cid == client_cid)) is None:
        raise NotFound(f"Client {client_cid} not found")  # admins reach here for any cid
    if fields.meter_type_name is None:
        raise Invalid("meter_type_name is required", loc=("query", "meter_type_name"))
    _check_name(conn, client_cid, fields.meter_type_name, None)
    new_id = conn.execute(
        insert(meter_types)
        .values(
            client_cid=client_cid,
            meter_type_name=fields.meter_type_name,
            description=fields.description or "",
            number_of_phases=fields.number_of_phases or None,
            is_ami=bool(fields.is_ami),
            is_dcu=bool(fields.is_dcu),
            is_balance=bool(fields.is_balance),
        )
        .returning(meter_types.c.id)
    ).scalar_one()
    return _read(conn, int(new_id))


def _owned(conn: Connection, principal: Principal, meter_type_id: int) -> int:
    """The owning client of a type the caller may change (owner role), locked for the
    request: 404 when missing or another tenant's, 403 for a system type or a lower role."""
    cid = conn.execute(
        select(meter_types.c.client_cid).where(meter_types.c.id == meter_type_id).with_for_update()
    ).first()
    if cid is None:
        raise NotFound(f"Meter type {meter_type_id} not found")
    if cid.client_cid is None:
        raise Forbidden(f"Meter type {meter_type_id} is a system type and cannot be changed")
    principal.require(cid.client_cid, Role.owner, what=f"Meter type {meter_type_id}")
    return int(cid.client_cid)


def update_meter_type(
    conn: Connection, principal: Principal, meter_type_id: int, fields: MeterTypeFields
) -> MeterTypeResponse:
    """Change only the given fields of a client's meter type (owner role)."""
    client_cid = _owned(conn, principal, meter_type_id)
    values: dict[str, Any] = {}
    if fields.meter_type_name is not None:
        _check_name(conn, client_cid, fields.meter_type_name, meter_type_id)
        values["meter_type_name"] = fields.meter_type_name
    if fields.description is not None:
        values["description"] = fields.description
    if fields.number_of_phases is not None:
        values["number_of_phases"] = fields.number_of_phases or None
    for name in ("is_ami", "is_dcu", "is_balance"):
        given = getattr(fields, name)
        if given is not None:
            values[name] = given
    if values:
        conn.execute(update(meter_types).where(meter_types.c.id == meter_type_id).values(**values))
    return _read(conn, meter_type_id)


def delete_meter_type(conn: Connection, principal: Principal, meter_type_id: int) -> None:
    """Remove a client's meter type (owner role); 409 while a sensor state names it."""
    _owned(conn, principal, meter_type_id)
    in_use = conn.scalar(
        select(func.count())
        .select_from(sensor_states)
        .where(sensor_states.c.meter_type_id == meter_type_id)
    )
    conflict = Conflict(f"Meter type {meter_type_id} is used by {in_use or 'a'} sensor state(s)")
    if in_use:
        raise conflict
    try:
        conn.execute(delete(meter_types).where(meter_types.c.id == meter_type_id))
    except IntegrityError as exc:  # a state that names it, committed since the count
        raise conflict from exc
