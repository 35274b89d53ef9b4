"""Sensor types and sensors: create, read, update, delete; tenants, roles and bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.demo_info import DemoInfo
from besmart_server.server.sensors import demo
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals import blocks as codec
from besmart_server.server.signals.pipeline import Frame
from besmart_server.server.signals.store import COLUMNS, stored_row
from besmart_server.server.signals.tables import blocks, series
from besmart_server.server.states.tables import sensor_states, signal_states
from tests.api.sensor_helpers import (
    A_PLUS,
    DAY,
    ENERGY_METER,
    PV,
    STATION,
    T0,
    loc_of,
    new_sensor,
    new_signal_state,
    new_state,
)
from tests.factories import make_client, make_tenant, make_user

UNAUTHORIZED = {"detail": "Not valid authentication credentials"}


def _count(db: Database, table: Any, *where: Any) -> int:
    with db.transaction(write=False) as conn:
        return int(conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def _stored_points(db: Database) -> dict[int, int]:
    """Points held in day blocks, per series id."""
    with db.transaction(write=False) as conn:
        rows = conn.execute(
            select(blocks.c.series_id, func.sum(blocks.c.n)).group_by(blocks.c.series_id)
        )
        return {int(sid): int(n) for sid, n in rows}


# --- sensor types ------------------------------------------------------------------------


def test_sensor_types_are_listed_with_their_schemas(client: TestClient, db: Database) -> None:
    _, actor = make_tenant(db, Role.read)
    res = client.get("/api/sensors/types", headers=actor.headers)
    assert res.status_code == 200
    types = {t["name"]: t for t in res.json()}
    for name in (
        "virtual",
        "energy meter",
        "station",
        "transformer",
        "PV installation",
        "wind turbine",
        "storage",
        "EV charger",
        "heat pump",
        "weather point",
    ):
        assert types[name]["is_system_type"] is True
        assert types[name]["description"]
    pv = types["PV installation"]
    assert set(pv) == {
        "id",
        "name",
        "description",
        "sensor_state_custom_fields",
        "sensor_custom_fields",
        "is_system_type",
    }
    # The custom fields are JSON Schema documents, served as strings (as the spec types them).
    assert {"kwp", "tilt", "azimuth"} <= set(orjson.loads(pv["sensor_custom_fields"])["properties"])
    state_fields = orjson.loads(pv["sensor_state_custom_fields"])["properties"]
    assert {"current_ratio", "voltage_ratio", "tariff"} <= set(state_fields)
    assert types["virtual"]["sensor_custom_fields"] is None


def test_sensor_types_need_a_token(client: TestClient) -> None:
    res = client.get("/api/sensors/types")
    assert res.status_code == 401
    assert res.json() == UNAUTHORIZED


# --- create ------------------------------------------------------------------------------


def test_create_returns_the_sensor_with_every_field(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    parent = new_sensor(client, actor, cid, name="station", sensor_type_id=STATION)
    res = client.post(
        "/api/sensors",
        params={
            "client_cid": cid,
            "name": "PV roof",
            "sensor_type_id": PV,
            "sensor_eid": "PV-1",
            "lat": 50.06,
            "lon": 19.94,
            "info": '{"kwp": 9.8, "tilt": 35, "azimuth": 180}',
            "comments": "south roof",
            "uncertain": "True",
            "negligible": "1",
            "balance_calculation": "true",
            "node_id": parent["sensor_mid"],
            "annotations": '[{"at": 1, "text": "installed"}]',
        },
        headers=actor.headers,
    )
    assert res.status_code == 201, res.text
    body = res.json()
    assert body["client_cid"] == cid
    assert isinstance(body["sensor_mid"], int)
    assert body["sensor_mid"] != parent["sensor_mid"]
    expected = {
        "name": "PV roof",
        "sensor_type_id": PV,
        "sensor_type_name": "PV installation",
        "sensor_eid": "PV-1",
        "lat": 50.06,
        "lon": 19.94,
        "node_id": parent["sensor_mid"],
        "info": {"kwp": 9.8, "tilt": 35, "azimuth": 180},
        "annotations": [{"at": 1, "text": "installed"}],
        "comments": "south roof",
        "uncertain": True,
        "negligible": True,
        "balance_calculation": True,
        "write": True,
        "execute": True,
    }
    assert {k: body[k] for k in expected} == expected
    got = client.get(f"/api/sensors/{cid}.{body['sensor_mid']}", headers=actor.headers)
    assert got.status_code == 200
    assert got.json() == body


def test_create_minimal_sensor_has_defaults(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    body = new_sensor(client, actor, cid, name="bare")
    assert body["sensor_type_id"] is None
    assert body["sensor_eid"] is None
    assert body["info"] is None
    assert body["annotations"] is None
    assert (body["uncertain"], body["negligible"], body["balance_calculation"]) == (
        False,
        False,
        False,
    )


def test_create_needs_write_role_and_a_visible_client(client: TestClient, db: Database) -> None:
    cid, reader = make_tenant(db, Role.read)
    other_cid, _ = make_tenant(db)
    res = client.post(
        "/api/sensors", params={"client_cid": cid, "name": "x"}, headers=reader.headers
    )
    assert res.status_code == 403
    assert isinstance(res.json(), str)
    res = client.post(
        "/api/sensors", params={"client_cid": other_cid, "name": "x"}, headers=reader.headers
    )
    assert res.status_code == 404
    assert res.json() == f"Client {other_cid} not found"
    res = client.post(
        "/api/sensors", params={"client_cid": 999_999, "name": "x"}, headers=reader.headers
    )
    assert res.status_code == 404
    assert res.json() == "Client 999999 not found"
    res = client.post("/api/sensors", params={"client_cid": cid, "name": "x"})
    assert res.status_code == 401
    assert _count(db, sensors) == 0


def test_sensor_eid_is_unique_per_client(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    other_cid = make_client(db)
    both = make_user(db, roles={cid: Role.write, other_cid: Role.write})
    first = new_sensor(client, actor, cid, sensor_eid="PPE-1")
    res = client.post(
        "/api/sensors",
        params={"client_cid": cid, "name": "dup", "sensor_eid": "PPE-1"},
        headers=actor.headers,
    )
    assert res.status_code == 409
    assert res.json() == f"Sensor with sensor_eid PPE-1 already exists: {cid}.{first['sensor_mid']}"
    # Another client may use the same external id.
    new_sensor(client, both, other_cid, sensor_eid="PPE-1")
    assert _count(db, sensors) == 2


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"name": None}, ["query", "name"], id="missing-name"),
        pytest.param({"name": ""}, ["query", "name"], id="empty-name"),
        pytest.param({"client_cid": None}, ["query", "client_cid"], id="missing-client"),
        pytest.param({"client_cid": "abc"}, ["query", "client_cid"], id="client-not-int"),
        pytest.param({"client_cid": 2**40}, ["query", "client_cid"], id="client-too-big"),
        pytest.param({"lat": 90.5}, ["query", "lat"], id="lat-range"),
        pytest.param({"lat": "nan"}, ["query", "lat"], id="lat-nan"),
        pytest.param({"lon": -180.5}, ["query", "lon"], id="lon-range"),
        pytest.param({"lon": "east"}, ["query", "lon"], id="lon-not-number"),
        pytest.param({"uncertain": "maybe"}, ["query", "uncertain"], id="bool"),
        pytest.param({"info": "{not json"}, ["query", "info"], id="info-not-json"),
        pytest.param({"info": "[1, 2]"}, ["query", "info"], id="info-not-object"),
        pytest.param({"info": '{"x": NaN}'}, ["query", "info"], id="info-nan"),
        pytest.param({"annotations": "{"}, ["query", "annotations"], id="annotations"),
        pytest.param({"sensor_type_id": 999}, ["query", "sensor_type_id"], id="unknown-type"),
        pytest.param(
            {"sensor_type_id": PV, "info": '{"kwp": -1}'}, ["query", "info"], id="schema-min"
        ),
        pytest.param(
            {"sensor_type_id": PV, "info": '{"tilt": "steep"}'}, ["query", "info"], id="schema-type"
        ),
        pytest.param(
            {"sensor_type_id": ENERGY_METER, "info": '{"phases": 2}'},
            ["query", "info"],
            id="schema-enum",
        ),
        pytest.param({"node_id": 999_999}, ["query", "node_id"], id="unknown-node"),
        pytest.param({"sensor_eid": "x" * 201}, ["query", "sensor_eid"], id="eid-too-long"),
        pytest.param({"name": "a\x00b"}, ["query", "name"], id="name-nul"),
        pytest.param({"sensor_eid": "\x00"}, ["query", "sensor_eid"], id="eid-nul"),
        pytest.param({"comments": "x\x00"}, ["query", "comments"], id="comments-nul"),
    ],
)
def test_create_rejects_bad_input(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    cid, actor = make_tenant(db, Role.write)
    query = {"client_cid": cid, "name": "meter", **params}
    query = {k: v for k, v in query.items() if v is not None}
    res = client.post("/api/sensors", params=query, headers=actor.headers)
    assert loc_of(res) == loc
    assert _count(db, sensors) == 0


def test_escaped_nul_inside_json_is_422(client: TestClient, db: Database) -> None:
    """A NUL in a string of the info JSON is a NUL in text like any other (issue #14: one
    rule for every string of a request); an escaped backslash before u0000 is not one."""
    cid, actor = make_tenant(db, Role.write)
    query = {"client_cid": cid, "name": "meter", "info": '{"note": "a\\u0000b"}'}
    res = client.post("/api/sensors", params=query, headers=actor.headers)
    assert loc_of(res) == ["query", "info", "note"]
    assert _count(db, sensors) == 0
    body = new_sensor(client, actor, cid, info='{"note": "a\\\\u0000b"}')
    assert body["info"] == {"note": "a\\u0000b"}


def test_schema_error_names_the_field(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    res = client.post(
        "/api/sensors",
        params={"client_cid": cid, "name": "pv", "sensor_type_id": PV, "info": '{"kwp": 0}'},
        headers=actor.headers,
    )
    assert res.status_code == 422
    assert "kwp" in res.json()["detail"][0]["msg"]


def test_node_of_another_tenant_is_unknown(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    other_cid, other = make_tenant(db)
    foreign = new_sensor(client, other, other_cid)
    res = client.post(
        "/api/sensors",
        params={"client_cid": cid, "name": "x", "node_id": foreign["sensor_mid"]},
        headers=actor.headers,
    )
    assert loc_of(res) == ["query", "node_id"]


# --- read --------------------------------------------------------------------------------


def test_other_tenants_sensor_is_404_exactly_like_a_missing_one(
    client: TestClient, db: Database
) -> None:
    cid, owner = make_tenant(db)
    _, stranger = make_tenant(db)
    mid = new_sensor(client, owner, cid)["sensor_mid"]
    foreign = client.get(f"/api/sensors/{cid}.{mid}", headers=stranger.headers)
    missing = client.get(f"/api/sensors/{cid}.{mid + 1000}", headers=owner.headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == f"Sensor {cid}.{mid} not found"
    assert missing.json() == f"Sensor {cid}.{mid + 1000} not found"
    # The right mid under the wrong client is missing too.
    wrong = client.get(f"/api/sensors/{cid + 1}.{mid}", headers=owner.headers)
    assert wrong.status_code == 404


def test_reader_sees_sensor_without_write_rights(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    reader = make_user(db, roles={cid: Role.read})
    mid = new_sensor(client, owner, cid)["sensor_mid"]
    res = client.get(f"/api/sensors/{cid}.{mid}", headers=reader.headers)
    assert res.status_code == 200
    assert (res.json()["write"], res.json()["execute"]) == (False, False)


def test_admin_sees_every_tenant(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    admin = make_user(db, admin=True)
    mid = new_sensor(client, owner, cid)["sensor_mid"]
    assert client.get(f"/api/sensors/{cid}.{mid}", headers=admin.headers).status_code == 200
    assert new_sensor(client, admin, cid, name="by admin")["client_cid"] == cid
    res = client.post(
        "/api/sensors", params={"client_cid": 777_777, "name": "x"}, headers=admin.headers
    )
    assert res.status_code == 404
    assert res.json() == "Client 777777 not found"


@pytest.mark.parametrize(
    ("key", "loc"),
    [
        pytest.param("abc.5", ["path", "client_cid"], id="cid-not-int"),
        pytest.param("5.x", ["path", "sensor_mid"], id="mid-not-int"),
        pytest.param("5", ["path", "sensor_mid"], id="no-dot"),
        pytest.param("1.2.3", ["path", "client_cid"], id="two-dots"),
        pytest.param("-1.5", ["path", "client_cid"], id="negative"),
        pytest.param("99999999999.5", ["path", "client_cid"], id="too-big"),
        pytest.param("5.99999999999", ["path", "sensor_mid"], id="mid-too-big"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_malformed_sensor_address_is_422(
    client: TestClient, db: Database, key: str, loc: list[str], method: str
) -> None:
    _, actor = make_tenant(db)
    res = client.request(method, f"/api/sensors/{key}", headers=actor.headers)
    assert loc_of(res) == loc


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_sensor_routes_need_a_token(client: TestClient, db: Database, method: str) -> None:
    cid, owner = make_tenant(db)
    mid = new_sensor(client, owner, cid)["sensor_mid"]
    res = client.request(method, f"/api/sensors/{cid}.{mid}")
    assert res.status_code == 401
    assert res.json() == UNAUTHORIZED
    assert _count(db, sensors) == 1


# --- update ------------------------------------------------------------------------------


def test_put_changes_only_what_it_is_given(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    before = new_sensor(
        client,
        actor,
        cid,
        name="m",
        sensor_type_id=ENERGY_METER,
        sensor_eid="E1",
        lat=50.0,
        lon=19.0,
        info='{"phases": 3}',
        comments="c",
        uncertain=True,
    )
    mid = before["sensor_mid"]
    res = client.put(
        f"/api/sensors/{cid}.{mid}",
        params={"name": "renamed", "negligible": "True", "annotations": '{"tag": "x"}'},
        headers=actor.headers,
    )
    assert res.status_code == 200, res.text
    after = res.json()
    assert after == {
        **before,
        "name": "renamed",
        "negligible": True,
        "annotations": {"tag": "x"},
    }
    assert client.get(f"/api/sensors/{cid}.{mid}", headers=actor.headers).json() == after


def test_put_every_field(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    parent = new_sensor(client, actor, cid, name="station")["sensor_mid"]
    mid = new_sensor(client, actor, cid, name="m")["sensor_mid"]
    params = {
        "node_id": parent,
        "name": "pv",
        "sensor_type_id": PV,
        "sensor_eid": "PV-9",
        "lat": -33.9,
        "lon": 151.2,
        "annotations": '["a"]',
        "info": '{"kwp": 5}',
        "comments": "moved",
        "uncertain": "true",
        "negligible": "1",
        "balance_calculation": "True",
    }
    res = client.put(f"/api/sensors/{cid}.{mid}", params=params, headers=actor.headers)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["node_id"] == parent
    assert body["sensor_type_name"] == "PV installation"
    assert body["info"] == {"kwp": 5}
    assert body["annotations"] == ["a"]
    assert (body["lat"], body["lon"], body["sensor_eid"]) == (-33.9, 151.2, "PV-9")
    assert body["uncertain"] is True
    assert body["negligible"] is True
    assert body["balance_calculation"] is True


def test_put_clears_eid_parent_and_json(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    parent = new_sensor(client, actor, cid, name="p")["sensor_mid"]
    mid = new_sensor(
        client, actor, cid, sensor_eid="E", node_id=parent, info='{"a": 1}', annotations="[1]"
    )["sensor_mid"]
    res = client.put(
        f"/api/sensors/{cid}.{mid}",
        params={"sensor_eid": "", "node_id": 0, "info": "null", "annotations": "null"},
        headers=actor.headers,
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["sensor_eid"], body["node_id"], body["info"], body["annotations"]) == (
        None,
        None,
        None,
        None,
    )


def test_put_rejects_a_cycle_in_the_tree(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    station = new_sensor(client, actor, cid, name="station")["sensor_mid"]
    trafo = new_sensor(client, actor, cid, name="trafo", node_id=station)["sensor_mid"]
    meter = new_sensor(client, actor, cid, name="meter", node_id=trafo)["sensor_mid"]
    for node, parent in ((station, meter), (station, trafo), (trafo, trafo)):
        res = client.put(
            f"/api/sensors/{cid}.{node}", params={"node_id": parent}, headers=actor.headers
        )
        assert loc_of(res) == ["query", "node_id"]
    got = client.get(f"/api/sensors/{cid}.{station}", headers=actor.headers).json()
    assert got["node_id"] is None
    # Moving a subtree elsewhere is fine.
    other = new_sensor(client, actor, cid, name="other")["sensor_mid"]
    res = client.put(
        f"/api/sensors/{cid}.{trafo}", params={"node_id": other}, headers=actor.headers
    )
    assert res.status_code == 200
    assert res.json()["node_id"] == other


def test_put_conflicting_eid_is_409(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    new_sensor(client, actor, cid, sensor_eid="A")
    mid = new_sensor(client, actor, cid, sensor_eid="B")["sensor_mid"]
    res = client.put(f"/api/sensors/{cid}.{mid}", params={"sensor_eid": "A"}, headers=actor.headers)
    assert res.status_code == 409
    assert isinstance(res.json(), str)
    # Its own eid again is no conflict.
    res = client.put(f"/api/sensors/{cid}.{mid}", params={"sensor_eid": "B"}, headers=actor.headers)
    assert res.status_code == 200


def test_put_type_change_revalidates_info(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = new_sensor(client, actor, cid, info='{"kwp": "big"}')["sensor_mid"]
    res = client.put(
        f"/api/sensors/{cid}.{mid}", params={"sensor_type_id": PV}, headers=actor.headers
    )
    assert loc_of(res) == ["query", "sensor_type_id"]
    assert (
        client.get(f"/api/sensors/{cid}.{mid}", headers=actor.headers).json()["sensor_type_id"]
        is None
    )


def test_failed_put_changes_nothing(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    before = new_sensor(client, actor, cid, name="keep", sensor_type_id=PV)
    mid = before["sensor_mid"]
    res = client.put(
        f"/api/sensors/{cid}.{mid}",
        params={"name": "changed", "comments": "x", "info": '{"kwp": -5}'},
        headers=actor.headers,
    )
    assert loc_of(res) == ["query", "info"]
    assert client.get(f"/api/sensors/{cid}.{mid}", headers=actor.headers).json() == before


def test_put_by_reader_is_403_and_by_stranger_404(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    reader = make_user(db, roles={cid: Role.read})
    _, stranger = make_tenant(db)
    before = new_sensor(client, owner, cid, name="n")
    mid = before["sensor_mid"]
    res = client.put(f"/api/sensors/{cid}.{mid}", params={"name": "x"}, headers=reader.headers)
    assert res.status_code == 403
    assert res.json() == f"write role on client {cid} required"
    res = client.put(f"/api/sensors/{cid}.{mid}", params={"name": "x"}, headers=stranger.headers)
    assert res.status_code == 404
    assert res.json() == f"Sensor {cid}.{mid} not found"
    assert client.get(f"/api/sensors/{cid}.{mid}", headers=owner.headers).json() == before


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"name": ""}, ["query", "name"], id="empty-name"),
        pytest.param({"lat": -91}, ["query", "lat"], id="lat"),
        pytest.param({"lon": "inf"}, ["query", "lon"], id="lon-inf"),
        pytest.param({"info": "nope"}, ["query", "info"], id="info"),
        pytest.param({"annotations": "{'a': 1}"}, ["query", "annotations"], id="annotations"),
        pytest.param({"sensor_type_id": 12345}, ["query", "sensor_type_id"], id="type"),
        pytest.param({"node_id": 12345678}, ["query", "node_id"], id="node"),
        pytest.param({"node_id": "x"}, ["query", "node_id"], id="node-not-int"),
        pytest.param({"balance_calculation": "yes please"}, ["query", "balance_calculation"]),
        pytest.param({"comments": "\x00"}, ["query", "comments"], id="comments-nul"),
    ],
)
def test_put_rejects_bad_input(
    client: TestClient, db: Database, params: dict[str, Any], loc: list[str]
) -> None:
    cid, actor = make_tenant(db, Role.write)
    mid = new_sensor(client, actor, cid)["sensor_mid"]
    res = client.put(f"/api/sensors/{cid}.{mid}", params=params, headers=actor.headers)
    assert loc_of(res) == loc


# --- delete ------------------------------------------------------------------------------


def test_delete_removes_states_series_and_points(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db, Role.write)
    parent = new_sensor(client, actor, cid, name="station")["sensor_mid"]
    mid = new_sensor(client, actor, cid, node_id=parent)["sensor_mid"]
    child = new_sensor(client, actor, cid, name="child", node_id=mid)["sensor_mid"]
    keep = new_sensor(client, actor, cid, name="keep")["sensor_mid"]
    state = new_state(client, actor, cid, mid, since=T0)
    new_signal_state(client, actor, state["sensor_state_id"], A_PLUS, value_for_since=1)
    kept_state = new_state(client, actor, cid, keep, since=T0)
    new_signal_state(client, actor, kept_state["sensor_state_id"], A_PLUS)
    # Three points over two days (two blocks) per series, stored directly with the codec.
    three = Frame.from_columns([T0, T0 + 1, T0 + DAY], [1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 1, 2])
    sids: dict[int, int] = {}
    with db.transaction() as conn:
        for sensor_mid in (mid, keep):
            sid = conn.execute(
                insert(series)
                .values(sensor_mid=sensor_mid, signal_type_moid=A_PLUS)
                .returning(series.c.id)
            ).scalar_one()
            sids[sensor_mid] = sid
            for _, e in codec.encode_batch(np.full(3, sid, dtype=np.int64), three):
                conn.execute(
                    insert(blocks).values(dict(zip(COLUMNS, stored_row(sid, e), strict=True)))
                )
    assert _stored_points(db) == {sids[mid]: 3, sids[keep]: 3}
    res = client.delete(f"/api/sensors/{cid}.{mid}", headers=actor.headers)
    assert res.status_code == 204
    assert res.content == b""
    assert client.get(f"/api/sensors/{cid}.{mid}", headers=actor.headers).status_code == 404
    assert _count(db, sensor_states) == 1
    assert _count(db, signal_states) == 1
    assert _count(db, series) == 1
    assert _stored_points(db) == {sids[keep]: 3}  # the deleted sensor's points are gone
    # Children stay, detached; the parent is untouched.
    got = client.get(f"/api/sensors/{cid}.{child}", headers=actor.headers).json()
    assert got["node_id"] is None
    assert client.get(f"/api/sensors/{cid}.{parent}", headers=actor.headers).status_code == 200
    # Deleting again: it is gone.
    again = client.delete(f"/api/sensors/{cid}.{mid}", headers=actor.headers)
    assert again.status_code == 404
    assert again.json() == f"Sensor {cid}.{mid} not found"


def test_delete_by_reader_is_403_and_by_stranger_404(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    reader = make_user(db, roles={cid: Role.read})
    _, stranger = make_tenant(db)
    mid = new_sensor(client, owner, cid)["sensor_mid"]
    new_state(client, owner, cid, mid, since=T0)
    assert client.delete(f"/api/sensors/{cid}.{mid}", headers=reader.headers).status_code == 403
    res = client.delete(f"/api/sensors/{cid}.{mid}", headers=stranger.headers)
    assert res.status_code == 404
    assert res.json() == f"Sensor {cid}.{mid} not found"
    assert _count(db, sensors) == 1
    assert _count(db, sensor_states) == 1


# --- the contract ------------------------------------------------------------------------

SPEC_OPERATIONS = {
    ("get", "/api/sensors/types"): (
        "Get list of sensor types",
        "api_endpoints_sensors_get_types_api_sensors_types_get",
    ),
    ("post", "/api/sensors"): ("Create new sensor", "api_endpoints_sensors_post_api_sensors_post"),
    ("get", "/api/sensors/{client_cid}.{sensor_mid}"): (
        "Get sensor",
        "api_endpoints_sensors_get_id_api_sensors__client_cid___sensor_mid__get",
    ),
    ("put", "/api/sensors/{client_cid}.{sensor_mid}"): (
        "Update sensor",
        "api_endpoints_sensors_put_id_api_sensors__client_cid___sensor_mid__put",
    ),
    ("delete", "/api/sensors/{client_cid}.{sensor_mid}"): (
        "Remove sensor",
        "api_endpoints_sensors_delete_id_api_sensors__client_cid___sensor_mid__delete",
    ),
    ("get", "/api/sensors/states"): (
        "Get sensor states",
        "api_endpoints_sensors_get_states_api_sensors_states_get",
    ),
    ("post", "/api/sensors/states"): (
        "Create sensor state",
        "api_endpoints_sensors_post_states_api_sensors_states_post",
    ),
    ("put", "/api/sensors/states/{sensor_state_id}"): (
        "Update sensor state",
        "api_endpoints_sensors_put_states_id_api_sensors_states__sensor_state_id__put",
    ),
    ("delete", "/api/sensors/states/{sensor_state_id}"): (
        "Delete sensor state",
        "api_endpoints_sensors_delete_states_id_api_sensors_states__sensor_state_id__delete",
    ),
    ("get", "/api/sensors/states/signals"): (
        "Get sensor states for signal",
        "api_endpoints_sensors_get_states_signals_api_sensors_states_signals_get",
    ),
    ("post", "/api/sensors/states/{sensor_state_id}/signals"): (
        "Create sensor state for signal",
        "api_endpoints_sensors_post_states_id_signals_api_sensors_states__sensor_state_id__signals_post",
    ),
    ("put", "/api/sensors/states/signals/{signal_state_id}"): (
        "Update sensor state for signal",
        "api_endpoints_sensors_put_states_signals_id_api_sensors_states_signals__signal_state_id__put",
    ),
    ("delete", "/api/sensors/states/signals/{signal_state_id}"): (
        "Delete sensor state for signal",
        "api_endpoints_sensors_delete_states_signals_id_api_sensors_states_signals__signal_state_id__delete",
    ),
}


def test_openapi_has_the_specs_operations(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for (method, path), (summary, operation_id) in SPEC_OPERATIONS.items():
        op = paths[path][method]
        assert op["summary"] == summary
        assert op["operationId"] == operation_id
        assert op["description"]
        assert "401" in op["responses"]
        if method != "get" or "{" in path:
            assert "404" in op["responses"] or path == "/api/sensors/types"
        if method in ("post", "put", "delete") and path != "/api/sensors":
            assert "403" in op["responses"]
    create = {p["name"] for p in paths["/api/sensors"]["post"]["parameters"]}
    assert {
        "client_cid",
        "name",
        "sensor_type_id",
        "sensor_eid",
        "lat",
        "lon",
        "info",
        "comments",
        "uncertain",
        "negligible",
        "balance_calculation",
    } <= create
    update = {
        p["name"] for p in paths["/api/sensors/{client_cid}.{sensor_mid}"]["put"]["parameters"]
    }
    assert {"node_id", "annotations", "info", "balance_calculation"} <= update


# --- demo sensors ------------------------------------------------------------------------


def test_demo_loader_builds_the_grid(client: TestClient, db: Database) -> None:
    cid, owner = make_tenant(db)
    info = DemoInfo(client_cid=cid, login=owner.login, password=owner.password)
    with db.transaction() as conn:
        demo.load(conn, info)
    assert set(info.sensors) == {"station", "transformer", "meter_1", "meter_2", "pv"}

    def sensor(role: str) -> dict[str, Any]:
        res = client.get(f"/api/sensors/{cid}.{info.sensors[role]}", headers=owner.headers)
        assert res.status_code == 200
        body: dict[str, Any] = res.json()
        return body

    assert sensor("station")["sensor_type_name"] == "station"
    assert sensor("transformer")["node_id"] == info.sensors["station"]
    for role in ("meter_1", "meter_2"):
        assert sensor(role)["node_id"] == info.sensors["transformer"]
        assert sensor(role)["balance_calculation"] is True
    pv = sensor("pv")
    # Behind meter 2 (its surplus is meter 2's export), so no member of the balance.
    assert pv["node_id"] == info.sensors["meter_2"]
    assert pv["balance_calculation"] is False
    assert pv["info"] == {"kwp": 9.8, "tilt": 35, "azimuth": 180}
    assert (round(pv["lat"]), round(pv["lon"])) == (50, 20)

    states = client.get(
        "/api/sensors/states",
        params={"client_cid": cid, "sensor_mid": info.sensors["meter_2"]},
        headers=owner.headers,
    ).json()
    assert [(s["since"], s["till"]) for s in states] == [
        (demo.INSTALLED_MS, demo.SWAP_MS),
        (demo.SWAP_MS, None),
    ]
    readings = [
        {
            s["signal_type_moid"]: (s["value_for_since"], s["value_for_till"])
            for s in st["signal_states"]
        }
        for st in states
    ]
    assert readings == [demo.METER_2_READINGS["old"], demo.METER_2_READINGS["new"]]
    meter_1 = client.get(
        "/api/sensors/states", params={"sensor_mid": info.sensors["meter_1"]}, headers=owner.headers
    ).json()
    assert meter_1[0]["info"] == {"current_ratio": 40, "voltage_ratio": 1}
