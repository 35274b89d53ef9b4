"""Discovery: GET /api/clients and GET /api/sensors/find; tenants, filters, pages, bad input."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.users import service as users
from tests.api.sensor_helpers import DAY, ENERGY_METER, PV, T0, loc_of, new_sensor, new_state
from tests.factories import Actor, make_client, make_tenant, make_user

UNAUTHORIZED = {"detail": "Not valid authentication credentials"}
FIND = "/api/sensors/find"


def _find(client: TestClient, actor: Actor, **params: Any) -> list[dict[str, Any]]:
    res = client.get(FIND, params=params, headers=actor.headers)
    assert res.status_code == 200, res.text
    body: list[dict[str, Any]] = res.json()
    return body


def _mids(items: list[dict[str, Any]]) -> list[int]:
    return [s["sensor_mid"] for s in items]


# --- GET /api/clients ----------------------------------------------------------------------


def test_clients_lists_each_of_mine_with_my_role(client: TestClient, db: Database) -> None:
    a, b, c = (make_client(db, name) for name in ("Alpha", "Beta", "Gamma"))
    stranger_cid = make_client(db, "Not mine")
    actor = make_user(db, roles={c: Role.read, a: Role.owner, b: Role.write})
    res = client.get("/api/clients", headers=actor.headers)
    assert res.status_code == 200
    assert res.json() == [
        {"client_cid": a, "name": "Alpha", "role": "owner", "timezone": "UTC"},
        {"client_cid": b, "name": "Beta", "role": "write", "timezone": "UTC"},
        {"client_cid": c, "name": "Gamma", "role": "read", "timezone": "UTC"},
    ]
    assert stranger_cid not in {x["client_cid"] for x in res.json()}


def test_clients_of_a_user_without_roles_is_empty(client: TestClient, db: Database) -> None:
    make_tenant(db)
    assert client.get("/api/clients", headers=make_user(db).headers).json() == []


def test_clients_needs_a_token(client: TestClient) -> None:
    res = client.get("/api/clients")
    assert res.status_code == 401
    assert res.json() == UNAUTHORIZED


# --- GET /api/sensors/find: who sees what ------------------------------------------------


def test_find_lists_my_sensors_as_get_sensor_shows_them(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    other_cid, other = make_tenant(db)
    first = new_sensor(client, owner, cid, name="Meter A", sensor_type_id=ENERGY_METER)
    second = new_sensor(client, owner, cid, name="PV roof", sensor_type_id=PV, sensor_eid="pv-1")
    new_sensor(client, other, other_cid, name="Meter A")
    found = _find(client, owner)
    assert found == [first, second]
    for item in found:
        res = client.get(f"/api/sensors/{cid}.{item['sensor_mid']}", headers=owner.headers)
        assert res.json() == item


def test_find_never_lists_another_tenants_sensors(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    other_cid, other = make_tenant(db)
    theirs = new_sensor(client, other, other_cid, name="Shared name", sensor_eid="E-1")
    new_state(client, other, other_cid, theirs["sensor_mid"], since=T0, meter_eid="SN-1")
    mine = new_sensor(client, owner, cid, name="shared NAME")
    for params in (
        {},
        {"name": "shared"},
        {"sensor_eid": "E-1"},
        {"meter_eid": "SN-1"},
        {"sensor_type_id": ENERGY_METER},
        {"limit": 1000},
    ):
        assert other_cid not in {s["client_cid"] for s in _find(client, owner, **params)}
    assert _mids(_find(client, owner, name="shared")) == [mine["sensor_mid"]]


def test_find_in_a_client_i_cannot_read_is_404_like_a_missing_one(
    client: TestClient, db: Database
) -> None:
    cid, owner = make_tenant(db)
    other_cid, other = make_tenant(db)
    new_sensor(client, other, other_cid)
    hidden = client.get(FIND, params={"client_cid": other_cid}, headers=owner.headers)
    missing = client.get(FIND, params={"client_cid": 999_999}, headers=owner.headers)
    assert (hidden.status_code, hidden.json()) == (404, f"Client {other_cid} not found")
    assert (missing.status_code, missing.json()) == (404, "Client 999999 not found")
    # the same answer as the states collection gives
    states = client.get(
        "/api/sensors/states", params={"client_cid": other_cid}, headers=owner.headers
    )
    assert (states.status_code, states.json()) == (404, hidden.json())
    assert _find(client, owner, client_cid=cid) == []


def test_find_by_reader_and_admin(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    other_cid, other = make_tenant(db)
    reader = make_user(db, roles={cid: Role.read})
    admin = make_user(db, admin=True)
    mine = new_sensor(client, owner, cid)["sensor_mid"]
    theirs = new_sensor(client, other, other_cid)["sensor_mid"]
    as_reader = _find(client, reader)
    assert _mids(as_reader) == [mine]
    assert (as_reader[0]["write"], as_reader[0]["execute"]) == (False, False)
    assert {mine, theirs} <= set(_mids(_find(client, admin, limit=1000)))
    assert _mids(_find(client, admin, client_cid=other_cid)) == [theirs]
    res = client.get(FIND, params={"client_cid": 999_999}, headers=admin.headers)
    assert res.status_code == 404


def test_find_leaves_out_system_clients_unless_named(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    with db.transaction() as conn:
        system_cid = users.create_client(conn, name="weather grid", is_system=True)
    admin = make_user(db, admin=True)
    mine = new_sensor(client, owner, cid)["sensor_mid"]
    grid = new_sensor(client, admin, system_cid, name="grid point")["sensor_mid"]
    assert _mids(_find(client, admin, limit=1000)) == [mine]
    listed = client.get("/api/clients", headers=admin.headers).json()
    assert system_cid not in {c["client_cid"] for c in listed}
    assert _mids(_find(client, admin, client_cid=system_cid)) == [grid]
    res = client.get(FIND, params={"client_cid": system_cid}, headers=owner.headers)
    assert (res.status_code, res.json()) == (404, f"Client {system_cid} not found")


def test_find_without_readable_clients_is_empty(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    new_sensor(client, owner, cid)
    assert _find(client, make_user(db)) == []


def test_find_needs_a_token(client: TestClient) -> None:
    res = client.get(FIND)
    assert res.status_code == 401
    assert res.json() == UNAUTHORIZED


# --- filters -------------------------------------------------------------------------------


def test_find_filters_combine(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    second_cid = make_client(db)
    owner2 = make_user(db, roles={cid: Role.owner, second_cid: Role.owner})
    a = new_sensor(client, owner, cid, name="Kiosk meter", sensor_type_id=ENERGY_METER)
    b = new_sensor(client, owner, cid, name="Roof PV", sensor_type_id=PV, sensor_eid="roof")
    c = new_sensor(client, owner2, second_cid, name="Another meter", sensor_type_id=ENERGY_METER)
    assert _mids(_find(client, owner2)) == _mids([a, b, c])
    assert _mids(_find(client, owner2, client_cid=second_cid)) == [c["sensor_mid"]]
    assert _mids(_find(client, owner2, sensor_type_id=ENERGY_METER)) == _mids([a, c])
    assert _mids(_find(client, owner2, sensor_type_id=ENERGY_METER, client_cid=cid)) == _mids([a])
    assert _mids(_find(client, owner2, sensor_eid="roof")) == [b["sensor_mid"]]
    assert _find(client, owner2, sensor_eid="ROOF") == []  # exact, unlike name
    assert _find(client, owner2, sensor_eid="") == []
    assert _find(client, owner2, sensor_type_id=ENERGY_METER, name="roof") == []


@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        pytest.param("meter", ["Main METER", "meter 2", "Sub-meter"], id="any-case"),
        pytest.param("MAIN", ["Main METER"], id="upper-needle"),
        pytest.param("100%", ["100% load"], id="percent-is-literal"),
        pytest.param("a_b", ["a_b feeder"], id="underscore-is-literal"),
        pytest.param("\\", ["back\\slash"], id="backslash-is-literal"),
        pytest.param("/", ["slash/point"], id="escape-char-is-literal"),
        pytest.param("", None, id="empty-matches-all"),
        pytest.param("nothing like it", [], id="no-match"),
    ],
)
def test_find_by_name_substring_ignoring_case(
    client: TestClient, db: Database, needle: str, expected: list[str] | None
) -> None:
    cid, owner = make_tenant(db)
    names = [
        "Main METER",
        "meter 2",
        "Sub-meter",
        "100% load",
        "1000 load",
        "a_b feeder",
        "axb feeder",
        "back\\slash",
        "slash/point",
    ]
    for name in names:
        new_sensor(client, owner, cid, name=name)
    found = [s["name"] for s in _find(client, owner, name=needle)]
    assert found == (names if expected is None else expected)


def test_find_by_meter_in_force_now(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    now = int(time.time() * 1000)
    swapped = new_sensor(client, owner, cid, name="swapped")["sensor_mid"]
    new_state(client, owner, cid, swapped, since=T0 - DAY, till=now - DAY, meter_eid="OLD")
    new_state(client, owner, cid, swapped, since=now - DAY, meter_eid="NEW")
    planned = new_sensor(client, owner, cid, name="planned")["sensor_mid"]
    new_state(client, owner, cid, planned, since=now + DAY, meter_eid="FUTURE")
    ending = new_sensor(client, owner, cid, name="ending")["sensor_mid"]
    new_state(client, owner, cid, ending, since=T0 - DAY, till=now + DAY, meter_eid="NEW")
    assert _mids(_find(client, owner, meter_eid="NEW")) == [swapped, ending]
    assert _find(client, owner, meter_eid="OLD") == []
    assert _find(client, owner, meter_eid="FUTURE") == []
    assert _find(client, owner, meter_eid="new") == []
    assert _mids(_find(client, owner, meter_eid="NEW", name="end")) == [ending]


# --- pages ---------------------------------------------------------------------------------


def _many(db: Database, cid: int, n: int) -> list[int]:
    with db.transaction() as conn:
        return [
            int(
                conn.execute(
                    insert(sensors)
                    .values(client_cid=cid, name=f"bulk {i:04}", created_at=T0)
                    .returning(sensors.c.mid)
                ).scalar_one()
            )
            for i in range(n)
        ]


def test_find_pages_in_sensor_mid_order(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    mids = _many(db, cid, 1005)
    assert _mids(_find(client, owner)) == mids[:100]  # default limit
    assert _mids(_find(client, owner, limit=1000)) == mids[:1000]
    assert _mids(_find(client, owner, limit=1000, offset=1000)) == mids[1000:]
    pages: list[int] = []
    for offset in range(0, 1010, 250):
        pages += _mids(_find(client, owner, limit=250, offset=offset))
    assert pages == mids
    assert _find(client, owner, offset=5000) == []
    assert _mids(_find(client, owner, name="bulk 0003", limit=1)) == [mids[3]]


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"limit": 0}, ["query", "limit"], id="limit-0"),
        pytest.param({"limit": 1001}, ["query", "limit"], id="limit-over-1000"),
        pytest.param({"limit": "ten"}, ["query", "limit"], id="limit-not-int"),
        pytest.param({"offset": -1}, ["query", "offset"], id="offset-negative"),
        pytest.param({"offset": 2**31}, ["query", "offset"], id="offset-too-big"),
        pytest.param({"client_cid": -1}, ["query", "client_cid"], id="cid-negative"),
        pytest.param({"client_cid": 2**40}, ["query", "client_cid"], id="cid-too-big"),
        pytest.param({"sensor_type_id": "x"}, ["query", "sensor_type_id"], id="type-not-int"),
        pytest.param({"sensor_type_id": 99_999}, ["query", "sensor_type_id"], id="type-unknown"),
        pytest.param({"name": "a\x00b"}, ["query", "name"], id="name-nul"),
        pytest.param({"sensor_eid": "\x00"}, ["query", "sensor_eid"], id="eid-nul"),
        pytest.param({"meter_eid": "S\x00N"}, ["query", "meter_eid"], id="meter-nul"),
        pytest.param({"meter_eid": "x" * 201}, ["query", "meter_eid"], id="meter-too-long"),
    ],
)
def test_find_rejects_bad_input(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    _, owner = make_tenant(db)
    assert loc_of(client.get(FIND, params=params, headers=owner.headers)) == loc


def test_find_is_not_taken_for_a_sensor_address(client: TestClient, db: Database) -> None:
    _, owner = make_tenant(db)
    for path in (FIND, f"{FIND}/"):
        res = client.get(path, headers=owner.headers, follow_redirects=True)
        assert res.status_code == 200, (path, res.text)
        assert res.json() == []


def test_openapi_documents_discovery(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/clients", FIND):
        op = paths[path]["get"]
        assert op["summary"]
        assert op["description"]
        assert "401" in op["responses"]
    find = paths[FIND]["get"]
    assert {"404", "422"} <= set(find["responses"])
    assert {p["name"] for p in find["parameters"]} == {
        "client_cid",
        "sensor_type_id",
        "name",
        "sensor_eid",
        "meter_eid",
        "limit",
        "offset",
    }
    items = find["responses"]["200"]["content"]["application/json"]["schema"]["items"]
    assert items == {"$ref": "#/components/schemas/SensorResponse"}
