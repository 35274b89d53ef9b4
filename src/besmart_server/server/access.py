"""Who may touch what: the caller (`Principal`) and the tenant rule in one place.

Every feature resolves a sensor through `sensor_for`/`readable_sensors` and filters lists
through `readable_filter`/`tenant_cids`, so "missing" and "another tenant's" get the same
404 everywhere (no existence leaks) and a too-low role the same 403 (docs/domain.md,
"Tenants and roles"). Depends only on tables, errors and schemas: every service may use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, select, true

from besmart_server.schemas.users import ROLE_RANK, Role
from besmart_server.server.db import dbapi_connection
from besmart_server.server.errors import Forbidden, NotFound
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.users.tables import clients


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (by token) or a client's API key."""

    user_id: int | None
    login: str | None
    is_admin: bool = False
    roles: dict[int, Role] = field(default_factory=dict)

    def role_in(self, client_cid: int) -> Role | None:
        """The caller's role on a client; admins are owners everywhere."""
        if self.is_admin:
            return Role.owner
        return self.roles.get(client_cid)

    def can(self, client_cid: int, role: Role) -> bool:
        """True when the caller holds at least `role` on the client."""
        have = self.role_in(client_cid)
        return have is not None and ROLE_RANK[have] >= ROLE_RANK[role]

    def require(self, client_cid: int, role: Role, *, what: str) -> None:
        """404 when the caller cannot see the client at all, 403 when the role is too low."""
        if not self.can(client_cid, Role.read):
            raise NotFound(f"{what} not found")
        if not self.can(client_cid, role):
            raise Forbidden(f"{role.value} role on client {client_cid} required")


# --- clients -----------------------------------------------------------------------------


def readable_filter(principal: Principal, column: Any) -> ColumnElement[bool] | None:
    """A filter on a client_cid `column` for what the caller can read (None: nothing)."""
    if principal.is_admin:
        return true()
    cids = sorted(cid for cid in principal.roles if principal.can(cid, Role.read))
    return column.in_(cids) if cids else None


def tenant_cids() -> Any:
    """A subquery of the tenants' cids: every client but the internal system ones."""
    return select(clients.c.cid).where(clients.c.is_system.is_(False))


def require_readable_client(conn: Connection, principal: Principal, client_cid: int) -> None:
    """404 when the client is missing or the caller cannot read it (the same answer)."""
    found = conn.scalar(select(clients.c.cid).where(clients.c.cid == client_cid))
    if found is None or not principal.can(client_cid, Role.read):
        raise NotFound(f"Client {client_cid} not found")


# --- sensors -----------------------------------------------------------------------------


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
    mids = sorted({int(mid) for _, mid in wanted})
    out: set[tuple[int, int]] = set()
    # The driver's own cursor and the ids inlined (integers only): SQLAlchemy's statement,
    # its cache key and its expanded IN were a twentieth of a 100-item multi-series PUT.
    cur = dbapi_connection(conn).cursor()
    for i in range(0, len(mids), 500):
        listed = ", ".join(map(str, mids[i : i + 500]))
        cur.execute(f"SELECT client_cid, mid FROM sensors WHERE mid IN ({listed})")
        out.update(p for p in ((int(c), int(m)) for c, m in cur.fetchall()) if p in wanted)
    return out
