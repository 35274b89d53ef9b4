"""Helpers for the signal tests: sensors and states straight into the tables, and short calls."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database, now_ms
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals.catalog import signal_type_by_symbol
from besmart_server.server.signals.tables import blocks, series
from besmart_server.server.states.tables import sensor_states, signal_states
from tests.factories import Actor, make_tenant

T0 = 1_700_000_100_000 - (1_700_000_100_000 % 3_600_000)  # an hour boundary, UTC ms
MIN = 60_000
Q = 15 * MIN


def moid(symbol: str) -> int:
    """The moid of a seeded signal type."""
    t = signal_type_by_symbol(symbol)
    assert t is not None, symbol
    return t.moid


def make_sensor(db: Database, cid: int, name: str = "meter") -> int:
    """A sensor of client `cid`; returns its mid."""
    with db.transaction() as conn:
        return int(
            conn.execute(
                insert(sensors)
                .values(client_cid=cid, name=name, created_at=now_ms())
                .returning(sensors.c.mid)
            ).scalar_one()
        )


def make_state(
    db: Database,
    mid: int,
    since: int,
    till: int | None = None,
    *,
    info: dict[str, Any] | None = None,
    readings: dict[int, tuple[float | None, float | None]] | None = None,
) -> int:
    """A sensor state with signal states {moid: (value_for_since, value_for_till)}."""
    with db.transaction() as conn:
        sid = int(
            conn.execute(
                insert(sensor_states)
                .values(
                    sensor_mid=mid,
                    since=since,
                    till=till,
                    info=json.dumps(info) if info is not None else None,
                )
                .returning(sensor_states.c.id)
            ).scalar_one()
        )
        for m, (vfs, vft) in (readings or {}).items():
            conn.execute(
                insert(signal_states).values(
                    sensor_state_id=sid,
                    signal_type_moid=m,
                    value_for_since=vfs,
                    value_for_till=vft,
                )
            )
    return sid


def data_url(cid: int, mid: int, m: int, *, v2: bool = True) -> str:
    return f"/api/sensors/{cid}.{mid}/signals/{m}/data" + ("/v2" if v2 else "")


def put(
    client: TestClient,
    headers: dict[str, str],
    cid: int,
    mid: int,
    m: int,
    body: Any,
    **params: Any,
) -> Any:
    """PUT v2 one series and expect 200."""
    r = client.put(data_url(cid, mid, m), json=body, headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r


def get(
    client: TestClient,
    headers: dict[str, str],
    cid: int,
    mid: int,
    m: int,
    since: int,
    till: int,
    **params: Any,
) -> dict[str, Any]:
    """GET one series and expect 200; returns the response object."""
    r = client.get(
        data_url(cid, mid, m, v2=False),
        params={"since": since, "till": till, **params},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def series_id(db: Database, mid: int, m: int) -> int:
    """The id of the series of signal `m` on sensor `mid`."""
    with db.transaction(write=False) as conn:
        return int(
            conn.execute(
                select(series.c.id).where(
                    series.c.sensor_mid == mid, series.c.signal_type_moid == m
                )
            ).scalar_one()
        )


def drop_summaries(db: Database, sid: int) -> None:
    """The series' blocks as migration 0015 finds them: every read decodes them."""
    with db.transaction() as conn:
        conn.execute(update(blocks).where(blocks.c.series_id == sid).values(hours=None))


def put_case(client: TestClient, db: Database, case: dict[str, Any]) -> tuple[int, Actor, int, int]:
    """A tenant with a writer, a sensor and a property test's first write: the points
    `t`/`values` of signal `kind`, under a current ratio `factor` from `swap` on (1 in the
    ten days before) when it is not None. Returns (cid, actor, mid, moid)."""
    cid, actor = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    m = moid(case["kind"])
    if case["factor"] is not None:
        info = {"current_ratio": case["factor"]}
        make_state(db, mid, case["swap"] - 10 * 86_400_000, case["swap"],
                   info={"current_ratio": 1.0}, readings={m: (0.0, None)})  # fmt: skip
        make_state(db, mid, case["swap"], None, info=info, readings={m: (0.0, None)})
    put(client, actor.headers, cid, mid, m, {"time": case["t"], "value": case["values"]})
    return cid, actor, mid, m


def day_with_defects() -> dict[str, Any]:
    """A day of quarter-hour energy from T0 with a 2-hour gap (slots 40..47) and a spike at
    slot 70: what validation must find."""
    slots = [i for i in range(96) if not 40 <= i < 48]
    values = [round(1.0 + 0.5 * float(np.sin(2 * np.pi * i / 96)), 6) for i in slots]
    values[slots.index(70)] = 9.0
    return {"time": [T0 + i * Q for i in slots], "value": values}
