"""Sensor states (meter installation periods): create, list, update, delete, find."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.meters.tables import meter_types
from besmart_server.server.states.tables import sensor_states, signal_states
from tests.api.sensor_helpers import (
    A_MINUS,
    A_PLUS,
    AMI_3P,
    DAY,
    ENERGY_METER,
    T0,
    THREE_PHASE,
    loc_of,
    new_sensor,
    new_signal_state,
    new_state,
)
from tests.factories import Actor, make_client, make_tenant, make_user

UNAUTHORIZED = {"detail": "Not valid authentication credentials"}
STATE_KEYS = {
    "sensor_state_id",
    "client_cid",
    "sensor_mid",
    "since",
    "till",
    "meter_eid",
    "info",
    "meter_type_id",
    "meter_type_name",
    "meter_type_is_ami",
    "meter_type_is_dcu",
    "signal_states",
}


def _count(db: Database, table: Any) -> int:
    with db.transaction(write=False) as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def _meter(client: TestClient, actor: Actor, cid: int) -> int:
    mid: int = new_sensor(client, actor, cid, sensor_type_id=ENERGY_METER)["sensor_mid"]
    return mid


# --- create ------------------------------------------------------------------------------


def test_create_returns_the_state(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = _meter(client, actor, cid)
    res = client.post(
        "/api/sensors/states",
        params={
            "client_cid": cid,
            "sensor_mid": mid,
            "since": T0,
            "till": T0 + DAY,
            "meter_eid": "SN-1",
            "meter_type_id": AMI_3P,
            "info": '{"current_ratio": 40, "voltage_ratio": 1, "tariff": "C11"}',
        },
        headers=actor.headers,
    )
    assert res.status_code == 201, res.text
    body = res.json()
    assert set(body) == STATE_KEYS
    assert isinstance(body["sensor_state_id"], int)
    assert {k: v for k, v in body.items() if k != "sensor_state_id"} == {
        "client_cid": cid,
        "sensor_mid": mid,
        "since": T0,
        "till": T0 + DAY,
        "meter_eid": "SN-1",
        "info": {"current_ratio": 40, "voltage_ratio": 1, "tariff": "C11"},
        "meter_type_id": AMI_3P,
        "meter_type_name": "3-phase AMI",
        "meter_type_is_ami": True,
        "meter_type_is_dcu": False,
        "signal_states": [],
    }


def test_create_defaults_since_to_now_and_leaves_till_open(
    client: TestClient, db: Database
) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = _meter(client, actor, cid)
    before = int(time.time() * 1000)
    body = new_state(client, actor, cid, mid)
    assert before <= body["since"] <= int(time.time() * 1000) + 1
    assert body["till"] is None
    assert body["meter_type_id"] is None
    assert body["meter_type_name"] is None


def test_touching_periods_are_a_meter_swap(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = _meter(client, actor, cid)
    new_state(client, actor, cid, mid, since=T0 + DAY)
    new_state(client, actor, cid, mid, since=T0, till=T0 + DAY)
    assert _count(db, sensor_states) == 2


@pytest.mark.parametrize(
    ("since", "till"),
    [
        pytest.param(T0, T0 + DAY, id="same"),
        pytest.param(T0 - DAY, T0 + 1, id="ends-inside"),
        pytest.param(T0 + DAY - 1, None, id="open-starts-inside"),
        pytest.param(T0 - DAY, None, id="open-covers"),
        pytest.param(T0 + 1, T0 + 2, id="inside"),
        pytest.param(T0 + 5 * DAY, None, id="inside-open-later-one"),
    ],
)
def test_overlapping_state_is_409(
    client: TestClient, db: Database, since: int, till: int | None
) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = _meter(client, actor, cid)
    first = new_state(client, actor, cid, mid, since=T0, till=T0 + DAY)
    new_state(client, actor, cid, mid, since=T0 + 4 * DAY)
    params: dict[str, Any] = {"client_cid": cid, "sensor_mid": mid, "since": since}
    if till is not None:
        params["till"] = till
    res = client.post("/api/sensors/states", params=params, headers=actor.headers)
    assert res.status_code == 409
    message = res.json()
    assert isinstance(message, str)
    assert f"Sensor {cid}.{mid}" in message
    assert str(first["sensor_state_id"]) in message or "open" in message
    assert _count(db, sensor_states) == 2


def test_states_of_different_sensors_may_overlap(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    a, b = _meter(client, actor, cid), _meter(client, actor, cid)
    new_state(client, actor, cid, a, since=T0)
    new_state(client, actor, cid, b, since=T0)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"till": T0}, ["query", "till"], id="till-equals-since"),
        pytest.param({"till": T0 - 1}, ["query", "till"], id="till-before-since"),
        pytest.param({"since": "yesterday"}, ["query", "since"], id="since-not-int"),
        pytest.param({"since": -5}, ["query", "since"], id="since-negative"),
        pytest.param({"till": 10**20}, ["query", "till"], id="till-huge"),
        pytest.param({"meter_type_id": 999}, ["query", "meter_type_id"], id="meter-type"),
        pytest.param({"meter_type_id": "x"}, ["query", "meter_type_id"], id="meter-type-int"),
        pytest.param({"info": "{"}, ["query", "info"], id="info-json"),
        pytest.param({"info": '"text"'}, ["query", "info"], id="info-not-object"),
        pytest.param({"info": '{"current_ratio": 0}'}, ["query", "info"], id="info-schema-ratio"),
        pytest.param({"info": '{"tariff": 11}'}, ["query", "info"], id="info-schema-tariff"),
        pytest.param({"sensor_mid": None}, ["query", "sensor_mid"], id="missing-sensor"),
        pytest.param({"client_cid": None}, ["query", "client_cid"], id="missing-client"),
        pytest.param({"meter_eid": "x" * 201}, ["query", "meter_eid"], id="eid-too-long"),
        pytest.param({"meter_eid": "S\x00N"}, ["query", "meter_eid"], id="eid-nul"),
    ],
)
def test_create_rejects_bad_input(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = _meter(client, actor, cid)
    query = {"client_cid": cid, "sensor_mid": mid, "since": T0, **params}
    query = {k: v for k, v in query.items() if v is not None}
    res = client.post("/api/sensors/states", params=query, headers=actor.headers)
    assert loc_of(res) == loc
    assert _count(db, sensor_states) == 0


def test_meter_types_of_another_client_are_invisible(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    other_cid, other = make_tenant(db)
    with db.transaction() as conn:
        own_type = conn.execute(
            insert(meter_types)
            .values(client_cid=other_cid, meter_type_name="Private DCU", is_dcu=True)
            .returning(meter_types.c.id)
        ).scalar_one()
    res = client.post(
        "/api/sensors/states",
        params={
            "client_cid": cid,
            "sensor_mid": _meter(client, actor, cid),
            "meter_type_id": own_type,
        },
        headers=actor.headers,
    )
    assert loc_of(res) == ["query", "meter_type_id"]
    body = new_state(
        client, other, other_cid, _meter(client, other, other_cid), meter_type_id=own_type
    )
    assert (body["meter_type_name"], body["meter_type_is_dcu"]) == ("Private DCU", True)


def test_create_needs_write_role_on_a_visible_sensor(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    reader = make_user(db, roles={cid: Role.read})
    _, stranger = make_tenant(db)
    mid = _meter(client, owner, cid)
    params = {"client_cid": cid, "sensor_mid": mid, "since": T0}
    res = client.post("/api/sensors/states", params=params, headers=reader.headers)
    assert res.status_code == 403
    res = client.post("/api/sensors/states", params=params, headers=stranger.headers)
    assert res.status_code == 404
    assert res.json() == f"Sensor {cid}.{mid} not found"
    res = client.post(
        "/api/sensors/states", params={**params, "sensor_mid": mid + 99}, headers=owner.headers
    )
    assert res.status_code == 404
    assert res.json() == f"Sensor {cid}.{mid + 99} not found"
    assert client.post("/api/sensors/states", params=params).status_code == 401
    assert _count(db, sensor_states) == 0


# --- list ----------------------------------------------------------------------------------


def test_list_is_sorted_by_since_with_signal_states(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = _meter(client, actor, cid)
    later = new_state(client, actor, cid, mid, since=T0 + DAY, meter_eid="NEW")
    earlier = new_state(
        client, actor, cid, mid, since=T0, till=T0 + DAY, meter_eid="OLD", meter_type_id=2
    )
    sig_minus = new_signal_state(client, actor, earlier["sensor_state_id"], A_MINUS)
    sig_plus = new_signal_state(
        client, actor, earlier["sensor_state_id"], A_PLUS, value_for_since=1, value_for_till=9
    )
    res = client.get(
        "/api/sensors/states", params={"client_cid": cid, "sensor_mid": mid}, headers=actor.headers
    )
    assert res.status_code == 200
    body = res.json()
    assert [s["sensor_state_id"] for s in body] == [
        earlier["sensor_state_id"],
        later["sensor_state_id"],
    ]
    assert body[0]["signal_states"] == [sig_plus, sig_minus]  # by signal type
    assert body[0]["meter_type_name"] == "3-phase electronic"
    assert body[1]["signal_states"] == []


def test_list_filters_and_tenant_isolation(client: TestClient, db: Database) -> None:
    cid_a = make_client(db)
    cid_b = make_client(db)
    both = make_user(db, roles={cid_a: Role.write, cid_b: Role.read})
    writer_b = make_user(db, roles={cid_b: Role.write})
    other_cid, stranger = make_tenant(db)
    a1, a2 = _meter(client, both, cid_a), _meter(client, both, cid_a)
    b1 = _meter(client, writer_b, cid_b)
    foreign = _meter(client, stranger, other_cid)
    s_a1 = new_state(client, both, cid_a, a1, since=T0)["sensor_state_id"]
    s_a2 = new_state(client, both, cid_a, a2, since=T0)["sensor_state_id"]
    s_b1 = new_state(client, writer_b, cid_b, b1, since=T0)["sensor_state_id"]
    s_foreign = new_state(client, stranger, other_cid, foreign, since=T0)["sensor_state_id"]

    def ids(**params: Any) -> list[int]:
        res = client.get("/api/sensors/states", params=params, headers=both.headers)
        assert res.status_code == 200, res.text
        return [s["sensor_state_id"] for s in res.json()]

    assert ids() == [s_a1, s_a2, s_b1]
    assert ids(client_cid=cid_a) == [s_a1, s_a2]
    assert ids(client_cid=cid_b) == [s_b1]
    assert ids(sensor_mid=a2) == [s_a2]
    assert ids(client_cid=cid_a, sensor_mid=a1) == [s_a1]
    # The stranger sees only their own.
    res = client.get("/api/sensors/states", headers=stranger.headers)
    assert [s["sensor_state_id"] for s in res.json()] == [s_foreign]
    # Another tenant's client or sensor is 404, like a missing one.
    for params, message in (
        ({"client_cid": other_cid}, f"Client {other_cid} not found"),
        ({"client_cid": 999_999}, "Client 999999 not found"),
        ({"sensor_mid": foreign}, f"Sensor {foreign} not found"),
        (
            {"client_cid": other_cid, "sensor_mid": foreign},
            f"Sensor {other_cid}.{foreign} not found",
        ),
        ({"client_cid": cid_a, "sensor_mid": b1}, f"Sensor {cid_a}.{b1} not found"),
    ):
        res = client.get("/api/sensors/states", params=params, headers=both.headers)
        assert res.status_code == 404, params
        assert res.json() == message


def test_user_without_clients_lists_nothing(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    new_state(client, owner, cid, _meter(client, owner, cid), since=T0)
    nobody = make_user(db)
    res = client.get("/api/sensors/states", headers=nobody.headers)
    assert res.status_code == 200
    assert res.json() == []


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"client_cid": "x"}, ["query", "client_cid"]),
        ({"sensor_mid": 2**40}, ["query", "sensor_mid"]),
    ],
)
def test_list_rejects_bad_filters(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    _, actor = make_tenant(db)
    assert loc_of(client.get("/api/sensors/states", params=params, headers=actor.headers)) == loc


# --- update --------------------------------------------------------------------------------


def test_put_changes_only_what_it_is_given(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = _meter(client, actor, cid)
    before = new_state(
        client,
        actor,
        cid,
        mid,
        since=T0,
        meter_eid="SN",
        meter_type_id=THREE_PHASE,
        info='{"current_ratio": 40}',
    )
    sid = before["sensor_state_id"]
    res = client.put(f"/api/sensors/states/{sid}", params={"till": T0 + DAY}, headers=actor.headers)
    assert res.status_code == 200, res.text
    assert res.json() == {**before, "till": T0 + DAY}
    res = client.put(
        f"/api/sensors/states/{sid}",
        params={"meter_type_id": str(AMI_3P), "info": '{"voltage_ratio": 100}', "meter_eid": "X"},
        headers=actor.headers,
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["meter_type_id"], body["meter_type_is_ami"]) == (AMI_3P, True)
    assert body["info"] == {"voltage_ratio": 100}
    assert body["meter_eid"] == "X"
    assert body["since"] == T0
    # Empty text clears the meter type and the serial.
    res = client.put(
        f"/api/sensors/states/{sid}",
        params={"meter_type_id": "", "meter_eid": ""},
        headers=actor.headers,
    )
    assert res.status_code == 200
    assert (res.json()["meter_type_id"], res.json()["meter_type_name"]) == (None, None)
    assert res.json()["meter_eid"] is None
    listed = client.get(
        "/api/sensors/states", params={"sensor_mid": mid}, headers=actor.headers
    ).json()
    assert listed == [res.json()]


def test_put_that_would_overlap_is_409_and_changes_nothing(
    client: TestClient, db: Database
) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = _meter(client, actor, cid)
    first = new_state(client, actor, cid, mid, since=T0, till=T0 + DAY)
    second = new_state(client, actor, cid, mid, since=T0 + DAY)
    res = client.put(
        f"/api/sensors/states/{first['sensor_state_id']}",
        params={"till": T0 + DAY + 1},
        headers=actor.headers,
    )
    assert res.status_code == 409
    assert res.json() == (
        f"Sensor {cid}.{mid} already has state {second['sensor_state_id']} "
        f"from {T0 + DAY} till open in that period"
    )
    res = client.put(
        f"/api/sensors/states/{second['sensor_state_id']}",
        params={"since": T0 + DAY - 1},
        headers=actor.headers,
    )
    assert res.status_code == 409
    # Its own period is no conflict: moving the start later is fine.
    res = client.put(
        f"/api/sensors/states/{second['sensor_state_id']}",
        params={"since": T0 + 2 * DAY},
        headers=actor.headers,
    )
    assert res.status_code == 200
    listed = client.get(
        "/api/sensors/states", params={"sensor_mid": mid}, headers=actor.headers
    ).json()
    assert [(s["since"], s["till"]) for s in listed] == [(T0, T0 + DAY), (T0 + 2 * DAY, None)]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"till": T0}, ["query", "till"], id="empty-period"),
        pytest.param({"since": T0 + 2 * DAY}, ["query", "till"], id="since-after-till"),
        pytest.param({"meter_type_id": "abc"}, ["query", "meter_type_id"], id="type-text"),
        pytest.param({"meter_type_id": "4242"}, ["query", "meter_type_id"], id="type-unknown"),
        pytest.param({"meter_type_id": "99999999999"}, ["query", "meter_type_id"], id="type-huge"),
        pytest.param({"info": "[]"}, ["query", "info"], id="info-array"),
        pytest.param({"info": '{"multiplier": -1}'}, ["query", "info"], id="info-schema"),
        pytest.param({"since": "1.5e12x"}, ["query", "since"], id="since-text"),
    ],
)
def test_put_rejects_bad_input(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    cid, actor = make_tenant(db, Role.write)
    before = new_state(client, actor, cid, _meter(client, actor, cid), since=T0, till=T0 + DAY)
    res = client.put(
        f"/api/sensors/states/{before['sensor_state_id']}", params=params, headers=actor.headers
    )
    assert loc_of(res) == loc
    listed = client.get("/api/sensors/states", headers=actor.headers).json()
    assert listed == [before]


def test_put_and_delete_by_reader_403_and_stranger_404(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    reader = make_user(db, roles={cid: Role.read})
    _, stranger = make_tenant(db)
    before = new_state(client, owner, cid, _meter(client, owner, cid), since=T0)
    sid = before["sensor_state_id"]
    path = f"/api/sensors/states/{sid}"
    assert client.put(path, params={"till": T0 + 1}, headers=reader.headers).status_code == 403
    assert client.delete(path, headers=reader.headers).status_code == 403
    for res in (
        client.put(path, params={"till": T0 + 1}, headers=stranger.headers),
        client.delete(path, headers=stranger.headers),
        client.put(f"/api/sensors/states/{sid + 999}", params={"till": 1}, headers=owner.headers),
        client.delete(f"/api/sensors/states/{sid + 999}", headers=owner.headers),
    ):
        assert res.status_code == 404
        assert res.json() in (
            f"Sensor state {sid} not found",
            f"Sensor state {sid + 999} not found",
        )
    assert client.get("/api/sensors/states", headers=owner.headers).json() == [before]


# --- delete --------------------------------------------------------------------------------


def test_delete_removes_the_state_and_its_signal_states(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = _meter(client, actor, cid)
    gone = new_state(client, actor, cid, mid, since=T0, till=T0 + DAY)
    kept = new_state(client, actor, cid, mid, since=T0 + DAY)
    new_signal_state(client, actor, gone["sensor_state_id"], A_PLUS)
    new_signal_state(client, actor, gone["sensor_state_id"], A_MINUS)
    new_signal_state(client, actor, kept["sensor_state_id"], A_PLUS)
    res = client.delete(f"/api/sensors/states/{gone['sensor_state_id']}", headers=actor.headers)
    assert res.status_code == 204
    assert res.content == b""
    assert _count(db, signal_states) == 1
    listed = client.get("/api/sensors/states", headers=actor.headers).json()
    assert [s["sensor_state_id"] for s in listed] == [kept["sensor_state_id"]]
    # Its period is free again.
    new_state(client, actor, cid, mid, since=T0, till=T0 + DAY)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("state_id", ["abc", "-1", "99999999999"])
def test_malformed_state_id_is_422(
    client: TestClient, db: Database, method: str, state_id: str
) -> None:
    _, actor = make_tenant(db)
    res = client.request(method, f"/api/sensors/states/{state_id}", headers=actor.headers)
    assert loc_of(res) == ["path", "sensor_state_id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/sensors/states"),
        ("POST", "/api/sensors/states?client_cid=1&sensor_mid=1"),
        ("PUT", "/api/sensors/states/1"),
        ("DELETE", "/api/sensors/states/1"),
        ("GET", "/api/sensors/states/find?meter_dev=x"),
        ("GET", "/api/sensors/states/signals"),
        ("POST", "/api/sensors/states/1/signals?signal_type_moid=32"),
        ("PUT", "/api/sensors/states/signals/1"),
        ("DELETE", "/api/sensors/states/signals/1"),
    ],
)
def test_state_routes_need_a_token(client: TestClient, method: str, path: str) -> None:
    res = client.request(method, path)
    assert res.status_code == 401
    assert res.json() == UNAUTHORIZED


# --- the device route ----------------------------------------------------------------------


def test_find_returns_the_state_in_force_now(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    device = make_user(db, roles={cid: Role.read})
    mid = _meter(client, actor, cid)
    now = int(time.time() * 1000)
    new_state(client, actor, cid, mid, since=T0, till=now - DAY, meter_eid="SN-9")
    current = new_state(client, actor, cid, mid, since=now - DAY, meter_eid="SN-9")
    res = client.get(
        "/api/sensors/states/find",
        params={"meter_dev": "SN-9", "meter_type_name": "whatever"},
        headers=device.headers,
    )
    assert res.status_code == 200, res.text
    assert res.json() == current
    assert {"client_cid", "sensor_mid", "sensor_state_id", "since"} <= set(res.json())


def test_find_ignores_removed_future_and_foreign_meters(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    other_cid, stranger = make_tenant(db)
    now = int(time.time() * 1000)
    mid = _meter(client, actor, cid)
    new_state(client, actor, cid, mid, since=T0, till=now - DAY, meter_eid="OLD")
    new_state(client, actor, cid, mid, since=now + DAY, meter_eid="FUTURE")
    new_state(client, stranger, other_cid, _meter(client, stranger, other_cid), meter_eid="THEIRS")
    for serial in ("OLD", "FUTURE", "THEIRS", "NONE"):
        res = client.get(
            "/api/sensors/states/find", params={"meter_dev": serial}, headers=actor.headers
        )
        assert res.status_code == 404, serial
        assert res.json() == f"Sensor state for meter {serial} not found"


def test_find_prefers_the_named_meter_type(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    a, b = _meter(client, actor, cid), _meter(client, actor, cid)
    ami = new_state(client, actor, cid, a, since=T0, meter_eid="DUP", meter_type_id=AMI_3P)
    plain = new_state(
        client, actor, cid, b, since=T0 + 1, meter_eid="DUP", meter_type_id=THREE_PHASE
    )

    def found(**params: Any) -> int:
        res = client.get(
            "/api/sensors/states/find", params={"meter_dev": "DUP", **params}, headers=actor.headers
        )
        assert res.status_code == 200
        state_id: int = res.json()["sensor_state_id"]
        return state_id

    assert found(meter_type_name="3-phase ami") == ami["sensor_state_id"]
    assert found(meter_type_name="3-phase electronic") == plain["sensor_state_id"]
    assert found() == plain["sensor_state_id"]  # the latest installation


def test_find_needs_a_serial(client: TestClient, db: Database) -> None:
    _, actor = make_tenant(db)
    res = client.get("/api/sensors/states/find", headers=actor.headers)
    assert loc_of(res) == ["query", "meter_dev"]
    for serial in ("", "SN\x00"):
        res = client.get(
            "/api/sensors/states/find", params={"meter_dev": serial}, headers=actor.headers
        )
        assert loc_of(res) == ["query", "meter_dev"]
