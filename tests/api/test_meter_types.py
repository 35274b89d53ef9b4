"""Meter types: the seeded catalog, a client's own (owner role), in use → 409, tenants."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.errors import AppError, Conflict, Invalid
from besmart_server.server.meters import service as meters
from besmart_server.server.meters.catalog import METER_TYPES
from besmart_server.server.meters.tables import meter_types
from besmart_server.server.states import service as states
from besmart_server.server.users import service as users
from tests.api.sensor_helpers import ENERGY_METER, T0, THREE_PHASE, loc_of, new_sensor, new_state
from tests.factories import Actor, make_client, make_tenant, make_user

UNAUTHORIZED = {"detail": "Not valid authentication credentials"}
METERS = "/api/sensors/meters"
KEYS = {
    "id",
    "client_cid",
    "meter_type_name",
    "description",
    "number_of_phases",
    "is_ami",
    "is_dcu",
    "is_balance",
}
SYSTEM_IDS = [m.id for m in METER_TYPES]


def _count(db: Database) -> int:
    with db.transaction(write=False) as conn:
        return int(conn.scalar(select(func.count()).select_from(meter_types)) or 0)


def _list(client: TestClient, actor: Actor, **params: Any) -> list[dict[str, Any]]:
    res = client.get(METERS, params=params, headers=actor.headers)
    assert res.status_code == 200, res.text
    body: list[dict[str, Any]] = res.json()
    return body


def _new(client: TestClient, actor: Actor, cid: int, name: str, **params: Any) -> dict[str, Any]:
    res = client.post(
        METERS, params={"client_cid": cid, "meter_type_name": name, **params}, headers=actor.headers
    )
    assert res.status_code == 201, res.text
    body: dict[str, Any] = res.json()
    return body


def _meter_sensor(client: TestClient, actor: Actor, cid: int) -> int:
    mid: int = new_sensor(client, actor, cid, sensor_type_id=ENERGY_METER)["sensor_mid"]
    return mid


# --- list ----------------------------------------------------------------------------------


def test_system_types_are_seeded_and_listed(client: TestClient, db: Database) -> None:
    _, actor = make_tenant(db, Role.read)
    listed = _list(client, actor)
    assert [t["id"] for t in listed] == SYSTEM_IDS
    assert all(set(t) == KEYS and t["client_cid"] is None for t in listed)
    by_name = {t["meter_type_name"]: t for t in listed}
    assert by_name["1-phase electronic"]["number_of_phases"] == 1
    assert by_name["3-phase AMI"] == {
        "id": 5,
        "client_cid": None,
        "meter_type_name": "3-phase AMI",
        "description": "Three-phase smart meter with remote reading",
        "number_of_phases": 3,
        "is_ami": True,
        "is_dcu": False,
        "is_balance": False,
    }
    assert by_name["Data concentrator"]["is_dcu"] is True
    assert by_name["Data concentrator"]["number_of_phases"] is None
    assert by_name["Balancing meter"]["is_balance"] is True
    # a user without any client still sees the system catalog
    assert [t["id"] for t in _list(client, make_user(db))] == SYSTEM_IDS


def test_list_shows_my_clients_types_and_never_anothers(client: TestClient, db: Database) -> None:
    a, owner_a = make_tenant(db)
    b, owner_b = make_tenant(db)
    reader = make_user(db, roles={a: Role.read})
    both = make_user(db, roles={a: Role.read, b: Role.read})
    admin = make_user(db, admin=True)
    mine = _new(client, owner_a, a, "Private CT meter", number_of_phases=3)
    theirs = _new(client, owner_b, b, "Their DCU", is_dcu=True)
    for actor in (owner_a, reader):
        ids = [t["id"] for t in _list(client, actor)]
        assert ids == [*SYSTEM_IDS, mine["id"]]
        assert [t["id"] for t in _list(client, actor, client_cid=a)] == ids
    assert [t["id"] for t in _list(client, owner_b)] == [*SYSTEM_IDS, theirs["id"]]
    assert [t["id"] for t in _list(client, both)] == [*SYSTEM_IDS, mine["id"], theirs["id"]]
    assert [t["id"] for t in _list(client, both, client_cid=b)] == [*SYSTEM_IDS, theirs["id"]]
    assert {mine["id"], theirs["id"]} <= {t["id"] for t in _list(client, admin)}
    assert _list(client, reader)[-1] == mine


def test_list_leaves_out_system_clients_unless_named(client: TestClient, db: Database) -> None:
    with db.transaction() as conn:
        system_cid = users.create_client(conn, name="weather grid", is_system=True)
    admin = make_user(db, admin=True)
    internal = _new(client, admin, system_cid, "Internal")
    assert internal["id"] not in {t["id"] for t in _list(client, admin)}
    assert [t["id"] for t in _list(client, admin, client_cid=system_cid)] == [
        *SYSTEM_IDS,
        internal["id"],
    ]


def test_list_for_a_client_i_cannot_read_is_404_like_a_missing_one(
    client: TestClient, db: Database
) -> None:
    _, owner = make_tenant(db)
    other, other_owner = make_tenant(db)
    _new(client, other_owner, other, "Hidden")
    hidden = client.get(METERS, params={"client_cid": other}, headers=owner.headers)
    missing = client.get(METERS, params={"client_cid": 999_999}, headers=owner.headers)
    assert (hidden.status_code, hidden.json()) == (404, f"Client {other} not found")
    assert (missing.status_code, missing.json()) == (404, "Client 999999 not found")
    admin = make_user(db, admin=True)
    res = client.get(METERS, params={"client_cid": 999_999}, headers=admin.headers)
    assert res.status_code == 404


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"client_cid": -1}, ["query", "client_cid"], id="negative"),
        pytest.param({"client_cid": 2**40}, ["query", "client_cid"], id="too-big"),
        pytest.param({"client_cid": "x"}, ["query", "client_cid"], id="not-int"),
    ],
)
def test_list_rejects_bad_input(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    _, owner = make_tenant(db)
    assert loc_of(client.get(METERS, params=params, headers=owner.headers)) == loc


# --- create --------------------------------------------------------------------------------


def test_owner_creates_a_type_for_the_client(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    res = client.post(
        METERS,
        params={
            "client_cid": cid,
            "meter_type_name": "Landis+Gyr E450",
            "description": "AMI meter of our DSO",
            "number_of_phases": 3,
            "is_ami": True,
            "is_balance": "true",
        },
        headers=owner.headers,
    )
    assert res.status_code == 201, res.text
    body = res.json()
    assert set(body) == KEYS
    assert body["id"] not in SYSTEM_IDS
    assert {k: v for k, v in body.items() if k != "id"} == {
        "client_cid": cid,
        "meter_type_name": "Landis+Gyr E450",
        "description": "AMI meter of our DSO",
        "number_of_phases": 3,
        "is_ami": True,
        "is_dcu": False,
        "is_balance": True,
    }
    minimal = _new(client, owner, cid, "Bare")
    assert (minimal["description"], minimal["number_of_phases"]) == ("", None)
    assert (minimal["is_ami"], minimal["is_dcu"], minimal["is_balance"]) == (False, False, False)
    assert _new(client, owner, cid, "No phases", number_of_phases=0)["number_of_phases"] is None


def test_create_needs_owner_role_on_a_visible_client(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    writer = make_user(db, roles={cid: Role.write})
    reader = make_user(db, roles={cid: Role.read})
    _, stranger = make_tenant(db)
    admin = make_user(db, admin=True)
    params: dict[str, Any] = {"client_cid": cid, "meter_type_name": "X"}
    before = _count(db)
    for actor in (writer, reader):
        res = client.post(METERS, params=params, headers=actor.headers)
        assert (res.status_code, res.json()) == (403, f"owner role on client {cid} required")
    res = client.post(METERS, params=params, headers=stranger.headers)
    assert (res.status_code, res.json()) == (404, f"Client {cid} not found")
    res = client.post(METERS, params={**params, "client_cid": 999_999}, headers=admin.headers)
    assert (res.status_code, res.json()) == (404, "Client 999999 not found")
    res = client.post(METERS, params=params)
    assert (res.status_code, res.json()) == (401, UNAUTHORIZED)
    assert _count(db) == before
    assert _new(client, admin, cid, "By admin")["client_cid"] == cid
    assert _new(client, owner, cid, "By owner")["client_cid"] == cid


def test_names_are_unique_among_what_a_client_sees(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    other, other_owner = make_tenant(db)
    first = _new(client, owner, cid, "Private meter")
    for name, message in (
        ("3-PHASE ami", "Meter type 3-phase AMI already exists: 5"),
        ("private METER", f"Meter type Private meter already exists: {first['id']}"),
    ):
        res = client.post(
            METERS, params={"client_cid": cid, "meter_type_name": name}, headers=owner.headers
        )
        assert (res.status_code, res.json()) == (409, message)
    # another client may use the same name: it never sees ours
    assert _new(client, other_owner, other, "Private meter")["client_cid"] == other


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"meter_type_name": None}, ["query", "meter_type_name"], id="no-name"),
        pytest.param({"meter_type_name": ""}, ["query", "meter_type_name"], id="empty-name"),
        pytest.param({"meter_type_name": "   "}, ["query", "meter_type_name"], id="blank-name"),
        pytest.param({"meter_type_name": "x" * 201}, ["query", "meter_type_name"], id="long"),
        pytest.param({"meter_type_name": "a\x00b"}, ["query", "meter_type_name"], id="name-nul"),
        pytest.param({"description": "\x00"}, ["query", "description"], id="description-nul"),
        pytest.param({"number_of_phases": 4}, ["query", "number_of_phases"], id="phases-4"),
        pytest.param({"number_of_phases": -1}, ["query", "number_of_phases"], id="phases-neg"),
        pytest.param({"is_ami": "perhaps"}, ["query", "is_ami"], id="flag-not-bool"),
        pytest.param({"client_cid": None}, ["query", "client_cid"], id="no-client"),
        pytest.param({"client_cid": 2**40}, ["query", "client_cid"], id="client-too-big"),
    ],
)
def test_create_rejects_bad_input(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    cid, owner = make_tenant(db)
    query = {"client_cid": cid, "meter_type_name": "Good", **params}
    query = {k: v for k, v in query.items() if v is not None}
    before = _count(db)
    assert loc_of(client.post(METERS, params=query, headers=owner.headers)) == loc
    assert _count(db) == before


# --- update --------------------------------------------------------------------------------


def test_put_changes_only_what_it_is_given(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    created = _new(client, owner, cid, "Old", description="d", number_of_phases=1, is_ami=True)
    url = f"{METERS}/{created['id']}"
    res = client.put(url, params={"is_dcu": True}, headers=owner.headers)
    assert res.status_code == 200, res.text
    assert res.json() == {**created, "is_dcu": True}
    res = client.put(
        url,
        params={
            "meter_type_name": "New",
            "description": "",
            "number_of_phases": 0,
            "is_ami": False,
            "is_dcu": False,
            "is_balance": True,
        },
        headers=owner.headers,
    )
    assert res.json() == {
        **created,
        "meter_type_name": "New",
        "description": "",
        "number_of_phases": None,
        "is_ami": False,
        "is_balance": True,
    }
    assert client.put(url, headers=owner.headers).json() == res.json()
    assert _list(client, owner, client_cid=cid)[-1] == res.json()
    # a new case of its own name is no clash
    renamed = client.put(url, params={"meter_type_name": "NEW"}, headers=owner.headers)
    assert renamed.json()["meter_type_name"] == "NEW"


def test_put_shows_in_the_states_that_name_the_type(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    own = _new(client, owner, cid, "Own DCU")
    state = new_state(
        client, owner, cid, _meter_sensor(client, owner, cid), meter_type_id=own["id"]
    )
    assert (state["meter_type_name"], state["meter_type_is_dcu"]) == ("Own DCU", False)
    client.put(
        f"{METERS}/{own['id']}",
        params={"meter_type_name": "DCU", "is_dcu": 1},
        headers=owner.headers,
    )
    listed = client.get("/api/sensors/states", params={"client_cid": cid}, headers=owner.headers)
    assert (listed.json()[0]["meter_type_name"], listed.json()[0]["meter_type_is_dcu"]) == (
        "DCU",
        True,
    )


def test_put_to_a_taken_name_is_409(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    first = _new(client, owner, cid, "First")
    second = _new(client, owner, cid, "Second")
    url = f"{METERS}/{second['id']}"
    res = client.put(url, params={"meter_type_name": "first"}, headers=owner.headers)
    assert (res.status_code, res.json()) == (409, f"Meter type First already exists: {first['id']}")
    res = client.put(url, params={"meter_type_name": "Data Concentrator"}, headers=owner.headers)
    assert res.status_code == 409
    assert _list(client, owner, client_cid=cid)[-1] == second


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_system_types_cannot_be_changed(client: TestClient, db: Database, method: str) -> None:
    _, owner = make_tenant(db)
    admin = make_user(db, admin=True)
    for actor in (owner, admin):
        res = client.request(
            method, f"{METERS}/{THREE_PHASE}", params={"is_ami": True}, headers=actor.headers
        )
        assert (res.status_code, res.json()) == (
            403,
            f"Meter type {THREE_PHASE} is a system type and cannot be changed",
        )
    assert _list(client, owner)[THREE_PHASE - 1]["is_ami"] is False


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_another_tenants_type_is_404_like_a_missing_one(
    client: TestClient, db: Database, method: str
) -> None:
    cid, owner = make_tenant(db)
    _, stranger = make_tenant(db)
    own = _new(client, owner, cid, "Mine")
    for type_id in (own["id"], 999_999):
        res = client.request(
            method, f"{METERS}/{type_id}", params={"is_ami": True}, headers=stranger.headers
        )
        assert (res.status_code, res.json()) == (404, f"Meter type {type_id} not found")
    assert _list(client, owner, client_cid=cid)[-1] == own


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_change_needs_owner_role(client: TestClient, db: Database, method: str) -> None:
    cid, owner = make_tenant(db)
    own = _new(client, owner, cid, "Mine")
    for role in (Role.read, Role.write):
        actor = make_user(db, roles={cid: role})
        res = client.request(
            method, f"{METERS}/{own['id']}", params={"is_ami": True}, headers=actor.headers
        )
        assert (res.status_code, res.json()) == (403, f"owner role on client {cid} required")
    res = client.request(method, f"{METERS}/{own['id']}")
    assert (res.status_code, res.json()) == (401, UNAUTHORIZED)
    assert _list(client, owner, client_cid=cid)[-1] == own


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        pytest.param("x", {}, ["path", "meter_type_id"], id="id-not-int"),
        pytest.param("-1", {}, ["path", "meter_type_id"], id="id-negative"),
        pytest.param(str(2**40), {}, ["path", "meter_type_id"], id="id-too-big"),
        pytest.param(None, {"meter_type_name": ""}, ["query", "meter_type_name"], id="empty"),
        pytest.param(None, {"meter_type_name": " "}, ["query", "meter_type_name"], id="blank"),
        pytest.param(None, {"meter_type_name": "\x00"}, ["query", "meter_type_name"], id="nul"),
        pytest.param(None, {"number_of_phases": 9}, ["query", "number_of_phases"], id="phases"),
        pytest.param(None, {"is_balance": "maybe"}, ["query", "is_balance"], id="flag"),
    ],
)
def test_put_rejects_bad_input(
    client: TestClient, db: Database, path: str | None, params: dict[str, Any], loc: list[str]
) -> None:
    cid, owner = make_tenant(db)
    own = _new(client, owner, cid, "Mine")
    url = f"{METERS}/{own['id'] if path is None else path}"
    assert loc_of(client.put(url, params=params, headers=owner.headers)) == loc
    assert _list(client, owner, client_cid=cid)[-1] == own


# --- delete --------------------------------------------------------------------------------


def test_delete_removes_an_unused_type(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    own = _new(client, owner, cid, "Short-lived")
    res = client.delete(f"{METERS}/{own['id']}", headers=owner.headers)
    assert (res.status_code, res.content) == (204, b"")
    assert [t["id"] for t in _list(client, owner)] == SYSTEM_IDS
    res = client.delete(f"{METERS}/{own['id']}", headers=owner.headers)
    assert (res.status_code, res.json()) == (404, f"Meter type {own['id']} not found")
    # the name is free again
    assert _new(client, owner, cid, "short-lived")["meter_type_name"] == "short-lived"


def test_delete_of_a_type_in_use_is_409(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    own = _new(client, owner, cid, "In use")
    mid = _meter_sensor(client, owner, cid)
    state = new_state(client, owner, cid, mid, since=T0, meter_type_id=own["id"])
    url = f"{METERS}/{own['id']}"
    res = client.delete(url, headers=owner.headers)
    assert (res.status_code, res.json()) == (
        409,
        f"Meter type {own['id']} is used by 1 sensor state(s)",
    )
    assert _list(client, owner, client_cid=cid)[-1] == own
    # clear the state's type, then the type can go
    res = client.put(
        f"/api/sensors/states/{state['sensor_state_id']}",
        params={"meter_type_id": ""},
        headers=owner.headers,
    )
    assert res.json()["meter_type_id"] is None
    assert client.delete(url, headers=owner.headers).status_code == 204


def test_delete_waits_for_a_state_being_created_then_is_409(
    client: TestClient, db: Database
) -> None:
    cid, owner = make_tenant(db)
    own = _new(client, owner, cid, "Contested")
    mid = _meter_sensor(client, owner, cid)
    outcome: list[AppError | None] = []

    def delete_it() -> None:
        try:
            with db.transaction() as conn:
                principal = users.authenticate_token(conn, owner.token)
                meters.delete_meter_type(conn, principal, own["id"])
            outcome.append(None)
        except AppError as exc:
            outcome.append(exc)

    deleter = threading.Thread(target=delete_it)
    with db.transaction() as conn:
        principal = users.authenticate_token(conn, owner.token)
        fields = states.StateFields(since=T0, meter_type_id=own["id"])
        states.create_state(conn, principal, client_cid=cid, sensor_mid=mid, fields=fields)
        deleter.start()
        deleter.join(timeout=0.5)
        assert deleter.is_alive()  # it waits for the state's transaction
    deleter.join(timeout=30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], Conflict)
    assert _list(client, owner, client_cid=cid)[-1] == own


def test_a_state_waiting_on_a_delete_finds_the_type_gone(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    own = _new(client, owner, cid, "Going")
    mid = _meter_sensor(client, owner, cid)
    outcome: list[AppError | None] = []

    def create_state() -> None:
        try:
            with db.transaction() as conn:
                principal = users.authenticate_token(conn, owner.token)
                fields = states.StateFields(since=T0, meter_type_id=own["id"])
                states.create_state(conn, principal, client_cid=cid, sensor_mid=mid, fields=fields)
            outcome.append(None)
        except AppError as exc:
            outcome.append(exc)

    creator = threading.Thread(target=create_state)
    with db.transaction() as conn:
        principal = users.authenticate_token(conn, owner.token)
        meters.delete_meter_type(conn, principal, own["id"])
        creator.start()
        creator.join(timeout=0.5)
        assert creator.is_alive()  # it waits for the delete's transaction
    creator.join(timeout=30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], Invalid)
    assert outcome[0].loc == ["query", "meter_type_id"]


# --- states name only visible types ---------------------------------------------------------


def test_states_name_system_or_own_types_only(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    other, other_owner = make_tenant(db)
    mine = _new(client, owner, cid, "Mine", is_ami=True)
    theirs = _new(client, other_owner, other, "Theirs")
    mid = _meter_sensor(client, owner, cid)
    params = {"client_cid": cid, "sensor_mid": mid, "since": T0}
    for bad in (theirs["id"], 999_999):
        res = client.post(
            "/api/sensors/states", params={**params, "meter_type_id": bad}, headers=owner.headers
        )
        assert loc_of(res) == ["query", "meter_type_id"]
        assert res.json()["detail"][0]["msg"] == f"Meter type {bad} not found"
    state = new_state(client, owner, cid, mid, since=T0, meter_type_id=mine["id"])
    assert (state["meter_type_name"], state["meter_type_is_ami"]) == ("Mine", True)
    url = f"/api/sensors/states/{state['sensor_state_id']}"
    res = client.put(url, params={"meter_type_id": str(theirs["id"])}, headers=owner.headers)
    assert loc_of(res) == ["query", "meter_type_id"]
    res = client.put(url, params={"meter_type_id": str(THREE_PHASE)}, headers=owner.headers)
    assert res.json()["meter_type_name"] == "3-phase electronic"


def test_system_types_are_seen_by_every_client(client: TestClient, db: Database) -> None:
    cid = make_client(db)
    writer = make_user(db, roles={cid: Role.write})
    mid = _meter_sensor(client, writer, cid)
    for type_id in SYSTEM_IDS:
        since = T0 + type_id * 1000
        state = new_state(
            client, writer, cid, mid, since=since, till=since + 1, meter_type_id=type_id
        )
        assert state["meter_type_id"] == type_id


# --- routing and OpenAPI -----------------------------------------------------------------


def test_meter_paths_are_not_taken_for_sensor_addresses(client: TestClient, db: Database) -> None:
    _, owner = make_tenant(db)
    assert client.get(METERS, headers=owner.headers).status_code == 200
    res = client.get(f"{METERS}/1", headers=owner.headers)
    assert res.status_code == 405  # GET of one type is not a route; nothing swallows the path


def test_openapi_documents_the_meter_type_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        (METERS, "get"): {"401", "404", "422"},
        (METERS, "post"): {"401", "403", "404", "409", "422"},
        (f"{METERS}/{{meter_type_id}}", "put"): {"401", "403", "404", "409", "422"},
        (f"{METERS}/{{meter_type_id}}", "delete"): {"401", "403", "404", "409", "422"},
    }
    for (path, method), codes in expected.items():
        op = paths[path][method]
        assert op["summary"]
        assert op["description"]
        assert codes <= set(op["responses"]), (path, method)
    post = {p["name"] for p in paths[METERS]["post"]["parameters"]}
    assert post == {
        "client_cid",
        "meter_type_name",
        "description",
        "number_of_phases",
        "is_ami",
        "is_dcu",
        "is_balance",
    }
