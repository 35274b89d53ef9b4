"""A tenant with data in every resource, seeded through the API, and a snapshot of its rows.

Every string the tenant stores carries its `marker` and every value it writes is one of its
`values`, so a response can be scanned for a byte of another tenant's data.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database, now_ms
from besmart_server.server.graphs.tables import graph_runs, graphs
from besmart_server.server.meters.tables import meter_types
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals.tables import blocks, series
from besmart_server.server.states.tables import sensor_states, signal_states
from besmart_server.server.users import security
from besmart_server.server.users import service as users
from besmart_server.server.users.tables import api_keys, clients, tokens, user_roles
from besmart_server.server.users.tables import users as users_t
from tests.factories import Actor, make_client

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
Q = 15 * 60_000
A_PLUS, P_PLUS_SYMBOL = 32, "P+"
POINTS_PER_SERIES = 8


class Http(Protocol):
    """What the seeding needs of a client: fastapi's TestClient or an httpx.Client."""

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...


@dataclass
class Tenant:
    """One client with an owner, a reader, an API key and data in every resource."""

    cid: int
    owner: Actor
    reader: Actor
    api_key: str
    marker: str
    sensor_mids: list[int] = field(default_factory=list)
    state_ids: list[int] = field(default_factory=list)
    signal_state_ids: list[int] = field(default_factory=list)
    meter_type_ids: list[int] = field(default_factory=list)
    meter_eids: list[str] = field(default_factory=list)
    series: list[tuple[int, int]] = field(default_factory=list)  # (sensor_mid, moid)
    graph_names: list[str] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        """Strings that must never reach another tenant (or a log)."""
        return [self.owner.token, self.reader.token, self.api_key]

    def fingerprints(self) -> list[str]:
        """Substrings that only this tenant's data contains."""
        return [self.marker, *(_num(v) for v in self.values), *self.secrets]


def _num(v: float) -> str:
    return json.dumps(v)


PASSWORD = "correct horse battery staple"
_hash: list[str] = []


def make_user(db: Database, *, login: str, roles: dict[int, Role]) -> Actor:
    """A user with a token, its argon2 hash computed once per process (seeding stays fast)."""
    if not _hash:
        _hash.append(security.hash_password(PASSWORD))
    with db.transaction() as conn:
        uid = conn.execute(
            users_t.insert()
            .values(login=login, password_hash=_hash[0], is_admin=False, created_at=now_ms())
            .returning(users_t.c.id)
        ).scalar_one()
        for cid, role in roles.items():
            users.grant_role(conn, user_id=uid, client_cid=cid, role=role)
        token = users.issue_token(conn, user_id=uid, ttl_seconds=7200).token
    return Actor(user_id=int(uid), login=login, password=PASSWORD, token=token)


def _ok(res: Any, status: int = 201) -> dict[str, Any]:
    assert res.status_code == status, (res.status_code, res.text)
    body: dict[str, Any] = res.json()
    return body


def seed_tenant(
    http: Http,
    db: Database,
    *,
    marker: str,
    rng: random.Random,
    with_meter_types: bool = True,
    with_graphs: bool = True,
) -> Tenant:
    """A client with two sensors, states, signal states, a meter type and signal data."""
    cid = make_client(db, name=f"{marker}-client")
    owner = make_user(db, roles={cid: Role.owner}, login=f"{marker}-owner")
    reader = make_user(db, roles={cid: Role.read}, login=f"{marker}-reader")
    with db.transaction() as conn:
        key = users.create_api_key(conn, client_cid=cid, name=f"{marker}-key")
    t = Tenant(cid, owner, reader, key, marker)
    h = owner.headers
    if with_meter_types:
        mt = _ok(
            http.request(
                "POST",
                "/api/sensors/meters",
                params={"client_cid": cid, "meter_type_name": f"{marker}-meter-type"},
                headers=h,
            )
        )
        t.meter_type_ids.append(int(mt["id"]))
    # Values unique to this tenant: exact in binary, so their JSON text is stable.
    base = rng.randrange(100_000, 900_000) + 0.5
    for i in range(2):
        s = _ok(
            http.request(
                "POST",
                "/api/sensors",
                params={
                    "client_cid": cid,
                    "name": f"{marker}-sensor-{i}",
                    "sensor_eid": f"{marker}-eid-{i}",
                    "info": json.dumps({"owner": marker}),
                    "annotations": json.dumps({"note": marker}),
                    "comments": f"{marker} comment",
                    "lat": 50.0 + i,
                    "lon": 20.0,
                },
                headers=h,
            )
        )
        mid = int(s["sensor_mid"])
        t.sensor_mids.append(mid)
        eid = f"{marker}-meter-{i}"
        st = _ok(
            http.request(
                "POST",
                "/api/sensors/states",
                params={
                    "client_cid": cid,
                    "sensor_mid": mid,
                    "since": T0 - 86_400_000,
                    "meter_eid": eid,
                    "info": json.dumps({"current_ratio": 2, "tag": marker}),
                },
                headers=h,
            )
        )
        t.state_ids.append(int(st["sensor_state_id"]))
        t.meter_eids.append(eid)
        vfs = base + 1000 + i
        t.values.append(vfs)
        ss = _ok(
            http.request(
                "POST",
                f"/api/sensors/states/{st['sensor_state_id']}/signals",
                params={"signal_type_moid": A_PLUS, "value_for_since": vfs},
                headers=h,
            )
        )
        t.signal_state_ids.append(int(ss["signal_state_id"]))
        vals = [base + i * 100 + k for k in range(POINTS_PER_SERIES)]
        t.values.extend(vals)
        _ok(
            http.request(
                "PUT",
                f"/api/sensors/{cid}.{mid}/signals/{A_PLUS}/data/v2",
                json={"time": [T0 + k * Q for k in range(POINTS_PER_SERIES)], "value": vals},
                headers=h,
            ),
            200,
        )
        t.series.append((mid, A_PLUS))
    if with_graphs:
        shipped = http.request("GET", "/api/tasks/graphs/balance", headers=h)
        name = f"{marker}-graph"
        _ok(
            http.request(
                "PUT",
                f"/api/tasks/graphs/{name}",
                params={"client_cid": cid},
                json=_ok(shipped, 200)["definition"],
                headers=h,
            )
        )
        t.graph_names.append(name)
        with db.transaction() as conn:
            run_id = conn.execute(
                graph_runs.insert()
                .values(
                    graph_name=name,
                    since=T0,
                    till=T0 + 86_400_000,
                    body=json.dumps({"sensor": marker}),
                    state="done",
                    executor="inprocess",
                    error=f"{marker} run",
                    user_id=owner.user_id,
                    created_at=now_ms(),
                )
                .returning(graph_runs.c.id)
            ).scalar_one()
        t.run_ids.append(int(run_id))
    return t


def snapshot(db: Database, t: Tenant) -> dict[str, list[tuple[Any, ...]]]:
    """Every row that belongs to the tenant, table by table, sorted."""
    mids = select(sensors.c.mid).where(sensors.c.client_cid == t.cid)
    state_ids = select(sensor_states.c.id).where(sensor_states.c.sensor_mid.in_(mids))
    series_ids = select(series.c.id).where(series.c.sensor_mid.in_(mids))
    user_ids = [t.owner.user_id, t.reader.user_id]
    queries = {
        "clients": select(clients).where(clients.c.cid == t.cid),
        "sensors": select(sensors).where(sensors.c.client_cid == t.cid),
        "sensor_states": select(sensor_states).where(sensor_states.c.sensor_mid.in_(mids)),
        "signal_states": select(signal_states).where(
            signal_states.c.sensor_state_id.in_(state_ids)
        ),
        "meter_types": select(meter_types).where(meter_types.c.client_cid == t.cid),
        "series": select(series).where(series.c.sensor_mid.in_(mids)),
        "blocks": select(blocks).where(blocks.c.series_id.in_(series_ids)),
        "api_keys": select(api_keys).where(api_keys.c.client_cid == t.cid),
        "user_roles": select(user_roles).where(user_roles.c.client_cid == t.cid),
        "tokens": select(tokens).where(tokens.c.user_id.in_(user_ids)),
        "graphs": select(graphs).where(graphs.c.owner_cid == t.cid),
        "graph_runs": select(graph_runs).where(graph_runs.c.user_id.in_(user_ids)),
    }
    out: dict[str, list[tuple[Any, ...]]] = {}
    with db.transaction(write=False) as conn:
        for name, q in queries.items():
            out[name] = sorted((tuple(r) for r in conn.execute(q)), key=repr)
    return out
