"""Resolve a (client_cid, sensor_mid) pair for a caller: the tenant rule in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, select

from besmart_server.schemas.users import Role
from besmart_server.server.errors import Forbidden, NotFound
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.users.service import Principal


@dataclass(frozen=True, slots=True)
class SensorRef:
    """The identity and location of a sensor the caller may use."""

    client_cid: int
    sensor_mid: int
    sensor_type_id: int | None
    lat: float | None
    lon: float | None


def sensor_not_found(client_cid: int, sensor_mid: int) -> NotFound:
    """The one answer for 'missing' and 'not yours' alike (no existence leaks)."""
    return NotFound(f"Sensor {client_cid}.{sensor_mid} not found")


def sensor_for(
    conn: Connection, principal: Principal, client_cid: int, sensor_mid: int, role: Role
) -> SensorRef:
    """The sensor if the caller holds `role` on its client: 404 when it is missing or another
    tenant's, 403 when the caller can read but lacks the role."""
    if not principal.can(client_cid, Role.read):
        raise sensor_not_found(client_cid, sensor_mid)
    row = conn.execute(
        select(sensors.c.sensor_type_id, sensors.c.lat, sensors.c.lon).where(
            sensors.c.mid == sensor_mid, sensors.c.client_cid == client_cid
        )
    ).first()
    require_role(principal, client_cid, sensor_mid, role, exists=row is not None)
    assert row is not None
    return SensorRef(client_cid, sensor_mid, row.sensor_type_id, row.lat, row.lon)


def require_role(
    principal: Principal, client_cid: int, sensor_mid: int, role: Role, *, exists: bool
) -> None:
    """sensor_for's verdict on a sensor already looked up (with `readable_sensors`, say):
    404 when it is missing or not readable, 403 when readable without `role`."""
    if not exists or not principal.can(client_cid, Role.read):
        raise sensor_not_found(client_cid, sensor_mid)
    if not principal.can(client_cid, role):
        raise Forbidden(f"{role.value} role on client {client_cid} required")


def readable_sensors(
    conn: Connection, principal: Principal, pairs: Iterable[tuple[int, int]]
) -> set[tuple[int, int]]:
    """The (client_cid, sensor_mid) pairs `sensor_for(..., Role.read)` would accept, looked up
    together: the sensor exists and the caller may read its client."""
    wanted = {(cid, mid) for cid, mid in pairs if principal.can(cid, Role.read)}
    mids = sorted({mid for _, mid in wanted})
    out: set[tuple[int, int]] = set()
    for i in range(0, len(mids), 500):
        rows = conn.execute(
            select(sensors.c.client_cid, sensors.c.mid).where(sensors.c.mid.in_(mids[i : i + 500]))
        )
        out.update(p for p in ((int(c), int(m)) for c, m in rows) if p in wanted)
    return out
