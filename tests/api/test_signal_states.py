"""Signal states: counter readings of one signal at a meter's installation and removal."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.states.tables import signal_states
from tests.api.sensor_helpers import (
    A_MINUS,
    A_PLUS,
    DAY,
    T0,
    loc_of,
    new_sensor,
    new_signal_state,
    new_state,
)
from tests.factories import Actor, make_tenant, make_user


def _count(db: Database) -> int:
    with db.transaction(write=False) as conn:
        return int(conn.scalar(select(func.count()).select_from(signal_states)) or 0)


def _state(client: TestClient, actor: Actor, cid: int, **params: Any) -> int:
    mid = new_sensor(client, actor, cid)["sensor_mid"]
    state_id: int = new_state(client, actor, cid, mid, since=T0, **params)["sensor_state_id"]
    return state_id


def test_create_returns_the_signal_state(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    sid = _state(client, actor, cid)
    res = client.post(
        f"/api/sensors/states/{sid}/signals",
        params={
            "signal_type_moid": A_PLUS,
            "value_for_since": "1.235e+04",
            "value_for_till": 20000,
            "info": '{"tariff": "G11"}',
        },
        headers=actor.headers,
    )
    assert res.status_code == 201, res.text
    body = res.json()
    assert isinstance(body["signal_state_id"], int)
    assert body == {
        "signal_state_id": body["signal_state_id"],
        "sensor_state_id": sid,
        "signal_type_moid": A_PLUS,
        "value_for_since": 12350.0,
        "value_for_till": 20000.0,
        "info": {"tariff": "G11"},
    }
    listed = client.get("/api/sensors/states", headers=actor.headers).json()
    assert listed[0]["signal_states"] == [body]


def test_one_signal_state_per_state_and_signal_type(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    sid = _state(client, actor, cid)
    first = new_signal_state(client, actor, sid, A_PLUS, value_for_since=1)
    res = client.post(
        f"/api/sensors/states/{sid}/signals",
        params={"signal_type_moid": A_PLUS, "value_for_since": 2},
        headers=actor.headers,
    )
    assert res.status_code == 409
    assert res.json() == (
        f"Sensor state {sid} already has a signal state for signal type {A_PLUS}: "
        f"{first['signal_state_id']}"
    )
    new_signal_state(client, actor, sid, A_MINUS)  # another signal type is fine
    assert _count(db) == 2


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"signal_type_moid": None}, ["query", "signal_type_moid"], id="missing"),
        pytest.param({"signal_type_moid": 99999}, ["query", "signal_type_moid"], id="unknown"),
        pytest.param({"signal_type_moid": "A+"}, ["query", "signal_type_moid"], id="not-int"),
        pytest.param({"value_for_since": "abc"}, ["query", "value_for_since"], id="text"),
        pytest.param({"value_for_since": "nan"}, ["query", "value_for_since"], id="nan"),
        pytest.param({"value_for_till": "inf"}, ["query", "value_for_till"], id="inf"),
        pytest.param({"value_for_till": "1e400"}, ["query", "value_for_till"], id="overflow"),
        pytest.param({"value_for_since": "-1e300"}, ["query", "value_for_since"], id="beyond"),
        pytest.param({"info": "{oops"}, ["query", "info"], id="info"),
    ],
)
def test_create_rejects_bad_input(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    cid, actor = make_tenant(db, Role.write)
    sid = _state(client, actor, cid)
    query = {"signal_type_moid": A_PLUS, **params}
    query = {k: v for k, v in query.items() if v is not None}
    res = client.post(f"/api/sensors/states/{sid}/signals", params=query, headers=actor.headers)
    assert loc_of(res) == loc
    assert _count(db) == 0


def test_create_needs_write_role_on_a_visible_state(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    reader = make_user(db, roles={cid: Role.read})
    _, stranger = make_tenant(db)
    sid = _state(client, owner, cid)
    path = f"/api/sensors/states/{sid}/signals"
    params = {"signal_type_moid": A_PLUS}
    assert client.post(path, params=params, headers=reader.headers).status_code == 403
    res = client.post(path, params=params, headers=stranger.headers)
    assert res.status_code == 404
    assert res.json() == f"Sensor state {sid} not found"
    res = client.post(
        f"/api/sensors/states/{sid + 99}/signals", params=params, headers=owner.headers
    )
    assert res.status_code == 404
    assert res.json() == f"Sensor state {sid + 99} not found"
    assert _count(db) == 0


def test_put_accepts_numeric_text_and_changes_only_what_is_given(
    client: TestClient, db: Database
) -> None:
    cid, actor = make_tenant(db, Role.write)
    sid = _state(client, actor, cid)
    before = new_signal_state(
        client, actor, sid, A_PLUS, value_for_since=10, value_for_till=20, info='{"a": 1}'
    )
    path = f"/api/sensors/states/signals/{before['signal_state_id']}"
    res = client.put(path, params={"value_for_till": " 4.5E3 "}, headers=actor.headers)
    assert res.status_code == 200, res.text
    assert res.json() == {**before, "value_for_till": 4500.0}
    res = client.put(
        path, params={"value_for_since": "-1", "info": '{"b": 2}'}, headers=actor.headers
    )
    assert res.status_code == 200
    assert res.json() == {
        **before,
        "value_for_since": -1.0,
        "value_for_till": 4500.0,
        "info": {"b": 2},
    }
    # "" or "null" clears a reading.
    res = client.put(
        path, params={"value_for_till": "", "value_for_since": "null"}, headers=actor.headers
    )
    assert res.status_code == 200
    assert (res.json()["value_for_since"], res.json()["value_for_till"]) == (None, None)
    listed = client.get("/api/sensors/states", headers=actor.headers).json()
    assert listed[0]["signal_states"] == [res.json()]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"value_for_since": "ten"}, ["query", "value_for_since"]),
        ({"value_for_till": "NaN"}, ["query", "value_for_till"]),
        ({"value_for_till": "-Infinity"}, ["query", "value_for_till"]),
        ({"value_for_till": "1e251"}, ["query", "value_for_till"]),
        ({"value_for_since": "1,5"}, ["query", "value_for_since"]),
        ({"info": "[1]"}, ["query", "info"]),
    ],
)
def test_put_rejects_non_numbers(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    cid, actor = make_tenant(db, Role.write)
    before = new_signal_state(client, actor, _state(client, actor, cid), value_for_since=1)
    res = client.put(
        f"/api/sensors/states/signals/{before['signal_state_id']}",
        params=params,
        headers=actor.headers,
    )
    assert loc_of(res) == loc
    listed = client.get("/api/sensors/states", headers=actor.headers).json()
    assert listed[0]["signal_states"] == [before]


def test_put_and_delete_by_reader_403_and_stranger_404(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    reader = make_user(db, roles={cid: Role.read})
    _, stranger = make_tenant(db)
    before = new_signal_state(client, owner, _state(client, owner, cid), value_for_since=1)
    ssid = before["signal_state_id"]
    path = f"/api/sensors/states/signals/{ssid}"
    assert (
        client.put(path, params={"value_for_since": 2}, headers=reader.headers).status_code == 403
    )
    assert client.delete(path, headers=reader.headers).status_code == 403
    for res in (
        client.put(path, params={"value_for_since": 2}, headers=stranger.headers),
        client.delete(path, headers=stranger.headers),
    ):
        assert res.status_code == 404
        assert res.json() == f"Signal state {ssid} not found"
    missing = client.delete(f"/api/sensors/states/signals/{ssid + 99}", headers=owner.headers)
    assert missing.status_code == 404
    assert missing.json() == f"Signal state {ssid + 99} not found"
    listed = client.get("/api/sensors/states", headers=owner.headers).json()
    assert listed[0]["signal_states"] == [before]


def test_delete_removes_only_that_signal_state(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    sid = _state(client, actor, cid)
    gone = new_signal_state(client, actor, sid, A_PLUS)
    kept = new_signal_state(client, actor, sid, A_MINUS)
    res = client.delete(
        f"/api/sensors/states/signals/{gone['signal_state_id']}", headers=actor.headers
    )
    assert res.status_code == 204
    assert res.content == b""
    listed = client.get("/api/sensors/states", headers=actor.headers).json()
    assert listed[0]["signal_states"] == [kept]
    # The pair is free again.
    new_signal_state(client, actor, sid, A_PLUS)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_malformed_signal_state_id_is_422(client: TestClient, db: Database, method: str) -> None:
    _, actor = make_tenant(db)
    res = client.request(method, "/api/sensors/states/signals/x1", headers=actor.headers)
    assert loc_of(res) == ["path", "signal_state_id"]


# --- GET /api/sensors/states/signals -------------------------------------------------------


def test_states_for_signal_carry_only_that_signal(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = new_sensor(client, actor, cid)["sensor_mid"]
    old = new_state(client, actor, cid, mid, since=T0, till=T0 + DAY)["sensor_state_id"]
    new = new_state(client, actor, cid, mid, since=T0 + DAY)["sensor_state_id"]
    old_plus = new_signal_state(client, actor, old, A_PLUS, value_for_since=5, value_for_till=9)
    new_signal_state(client, actor, old, A_MINUS, value_for_since=1)
    new_plus = new_signal_state(client, actor, new, A_PLUS, value_for_since=0)
    res = client.get(
        "/api/sensors/states/signals",
        params={"client_cid": cid, "sensor_mid": mid, "signal_type_moid": A_PLUS},
        headers=actor.headers,
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert [s["sensor_state_id"] for s in body] == [old, new]
    assert [s["signal_states"] for s in body] == [[old_plus], [new_plus]]
    # Without a signal type, it lists like /api/sensors/states.
    every = client.get(
        "/api/sensors/states/signals", params={"sensor_mid": mid}, headers=actor.headers
    ).json()
    assert every == client.get("/api/sensors/states", headers=actor.headers).json()
    assert len(every[0]["signal_states"]) == 2


def test_states_for_signal_tenant_isolation_and_errors(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    other_cid, stranger = make_tenant(db)
    new_signal_state(client, actor, _state(client, actor, cid))
    foreign_mid = new_sensor(client, stranger, other_cid)["sensor_mid"]
    res = client.get(
        "/api/sensors/states/signals", params={"signal_type_moid": A_PLUS}, headers=stranger.headers
    )
    assert res.status_code == 200
    assert res.json() == []
    res = client.get(
        "/api/sensors/states/signals",
        params={"client_cid": other_cid, "sensor_mid": foreign_mid},
        headers=actor.headers,
    )
    assert res.status_code == 404
    assert res.json() == f"Sensor {other_cid}.{foreign_mid} not found"
    res = client.get(
        "/api/sensors/states/signals", params={"signal_type_moid": 424242}, headers=actor.headers
    )
    assert loc_of(res) == ["query", "signal_type_moid"]
