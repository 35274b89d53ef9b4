"""`read_frame`: the read pipeline as arrays, and `as_of` (versions acquired before a time)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.access import Principal
from besmart_server.server.db import Database
from besmart_server.server.signals import service
from besmart_server.server.signals.store import SeriesStore
from tests.api.signal_helpers import T0, Q, get, make_sensor, moid, put
from tests.factories import make_tenant


def _frame_read(db: Database, cid: int, mid: int, m: int, **kw: Any) -> service.FrameRead:
    principal = Principal(user_id=None, login="t", roles={cid: Role.read})
    q = service.ReadQuery(cid, mid, m, T0, T0 + 4 * Q, **kw)
    with db.transaction(write=False) as conn:
        return service.read_frame(
            conn, SeriesStore(db.dialect), principal, q, budget=service.ReadBudget(1000)
        )


def test_read_frame_matches_the_wire_read(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid, m = make_sensor(db, cid), moid("P+")
    put(client, actor.headers, cid, mid, m, {"time": [T0, T0 + Q], "value": [1.5, 2.5]})
    put(client, actor.headers, cid, mid, m, {"time": [T0], "value": [3.0]})
    got = _frame_read(db, cid, mid, m, get_last=True)
    wire = get(client, actor.headers, cid, mid, m, T0, T0 + 4 * Q, get_last=True)
    assert got.unit.symbol == wire["unit"]
    assert got.frame.time.tolist() == wire["data"]["time"]
    assert got.frame.value.tolist() == wire["data"]["value"] == [3.0, 2.5]


def test_as_of_keeps_only_versions_acquired_before(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid, m = make_sensor(db, cid), moid("P+")
    # Imports with their own acq_time: version 1 known at T0 + Q, version 2 at T0 + 3Q.
    body = {"time": [T0, T0], "value": [1.0, 2.0], "acq_time": [T0 + Q, T0 + 3 * Q]}
    put(client, actor.headers, cid, mid, m, body)
    put(
        client,
        actor.headers,
        cid,
        mid,
        m,
        {"time": [T0 + Q], "value": [9.0], "acq_time": [T0 + 2 * Q]},
    )

    def newest(as_of: int | None) -> list[float]:
        f = _frame_read(db, cid, mid, m, get_last=True, as_of=as_of).frame
        return f.value.tolist()

    assert newest(None) == [2.0, 9.0]
    assert newest(T0 + 3 * Q + 1) == [2.0, 9.0]
    assert newest(T0 + 3 * Q) == [1.0, 9.0]  # acquired *before* as_of, not at it
    assert newest(T0 + 2 * Q) == [1.0]
    assert newest(T0 + Q) == []
    every = _frame_read(db, cid, mid, m, as_of=T0 + 3 * Q).frame
    assert np.all(every.acq < (T0 + 3 * Q) * 1000)
    assert len(every) == 2


def test_as_of_applies_before_aggregation(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid, m = make_sensor(db, cid), moid("P+")
    put(
        client,
        actor.headers,
        cid,
        mid,
        m,
        {"time": [T0, T0 + Q], "value": [2.0, 4.0], "acq_time": [T0, T0]},
    )
    put(
        client,
        actor.headers,
        cid,
        mid,
        m,
        {"time": [T0 + Q], "value": [8.0], "acq_time": [T0 + 5 * Q]},
    )
    early = _frame_read(db, cid, mid, m, delta_t=60, as_of=T0 + Q).frame
    late = _frame_read(db, cid, mid, m, delta_t=60).frame
    assert early.value.tolist() == [3.0]
    assert late.value.tolist() == [5.0]
