"""Ids in the items of the multi-series routes: the database holds 32-bit ids, so a larger or
negative one is a 422 naming the item's field on both engines (on PostgreSQL it was a 500, an
integer overflow in the driver), and nothing of the request is stored."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from besmart_server.server.db import Database
from tests.api.signal_helpers import T0, Q, data_url, make_sensor, moid
from tests.factories import make_tenant

BAD = [2**31, -1, -2_042_468_170_747, 2**63]
FIELDS = ["client_cid", "sensor_mid", "signal_type_moid"]


@pytest.mark.parametrize("path", ["/api/sensors/signals/data/v2", "/api/sensors/signals/data"])
@pytest.mark.parametrize("field", [*FIELDS, "output_unit_id"])
@pytest.mark.parametrize("bad", BAD)
def test_a_read_item_with_an_id_beyond_32_bits_is_422(
    client: TestClient, db: Database, path: str, field: str, bad: int
) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    ok = {"client_cid": cid, "sensor_mid": mid, "signal_type_moid": moid("P+")}
    items = [{**ok, "since": T0, "till": T0 + Q}, {**ok, "since": T0, "till": T0 + Q, field: bad}]
    res = client.post(path, json=items, headers=actor.headers)
    assert res.status_code == 422, res.text
    assert res.json()["detail"][0]["loc"] == ["body", 1, field]


@pytest.mark.parametrize("path", ["/api/sensors/signals/data/v2", "/api/sensors/signals/data"])
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("bad", BAD)
def test_a_write_item_with_an_id_beyond_32_bits_is_422_and_stores_nothing(
    client: TestClient, db: Database, path: str, field: str, bad: int
) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    ok = {"client_cid": cid, "sensor_mid": mid, "signal_type_moid": moid("P+")}
    data = {"time": [T0], "value": [1.0]}
    res = client.put(
        path, json=[{**ok, "data": data}, {**ok, field: bad, "data": data}], headers=actor.headers
    )
    assert res.status_code == 422, res.text
    assert res.json()["detail"][0]["loc"] == ["body", 1, field]
    got = client.get(
        data_url(cid, mid, moid("P+"), v2=False),
        params={"since": T0, "till": T0 + Q},
        headers=actor.headers,
    )
    assert got.status_code == 200
    assert got.json()["data"]["time"] == []
