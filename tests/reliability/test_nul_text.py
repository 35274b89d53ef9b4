"""U+0000 anywhere in a request's text is a 422 naming where, on both engines, before any
route runs: PostgreSQL cannot hold it in text (it answered 500 where SQLite answered 401/404).
Path, query (also JSON inside a query value, like `info`), headers and JSON bodies alike."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from besmart_server.server.db import Database
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.users import service as users
from tests.api.signal_helpers import T0, data_url, make_sensor, moid
from tests.factories import Actor, make_tenant

NUL = "\x00"
MSG = "The NUL character (U+0000) is not allowed in text"


@pytest.fixture
def owner(db: Database) -> tuple[int, int, Actor]:
    cid, actor = make_tenant(db)
    return cid, make_sensor(db, cid), actor


def _where(res: Any) -> list[Any]:
    assert res.status_code == 422, res.text
    [error] = res.json()["detail"]
    assert error["msg"] == MSG
    assert error["type"] == "string_nul"
    loc: list[Any] = error["loc"]
    return loc


def test_login_body(client: TestClient, db: Database) -> None:
    res = client.post("/api/users/token", json={"login": f"u{NUL}1", "password": "x"})
    assert _where(res) == ["body", "login"]
    res = client.post("/api/users/token", json={"login": "u1", "password": f"p{NUL}"})
    assert _where(res) == ["body", "password"]


def test_escaped_backslash_is_no_nul(client: TestClient, owner: tuple[int, int, Actor]) -> None:
    """The six characters \\u0000 (an escaped backslash) are ordinary text."""
    res = client.post("/api/users/token", json={"login": "u\\u00001", "password": "x"})
    assert res.status_code == 401, res.text
    cid, _mid, actor = owner
    name = "meter \\u0000 two"
    res = client.post(
        "/api/sensors", params={"client_cid": cid, "name": name}, headers=actor.headers
    )
    assert res.status_code in (200, 201), res.text
    got = client.get(f"/api/sensors/{cid}.{res.json()['sensor_mid']}", headers=actor.headers)
    assert got.json()["name"] == name


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_graph_name_in_path(client: TestClient, owner: tuple[int, int, Actor], method: str) -> None:
    _cid, _mid, actor = owner
    res = client.request(method, "/api/tasks/graphs/a%00b", headers=actor.headers, json={})
    assert _where(res) == ["path"]


def _count(db: Database, cid: int) -> int:
    with db.transaction() as conn:
        q = select(func.count()).select_from(sensors).where(sensors.c.client_cid == cid)
        return int(conn.execute(q).scalar_one())


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"name": f"m{NUL}"}, ["query", "name"]),
        ({"name": "m", "sensor_eid": f"e{NUL}"}, ["query", "sensor_eid"]),
        ({"name": "m", "comments": NUL}, ["query", "comments"]),
        ({"name": "m", "info": '{"a": {"b": ["x", "y\\u0000"]}}'}, ["query", "info", "a", "b", 1]),
        ({"name": "m", "info": '{"k\\u0000": 1}'}, ["query", "info"]),
        ({"name": "m", "annotations": f'["{NUL}"]'}, ["query", "annotations"]),
        ({"name": "m", f"x{NUL}": "1"}, ["query", "x"]),
    ],
    ids=["name", "eid", "comments", "info-escaped", "info-key", "annotations", "param-name"],
)
def test_sensor_text_changes_nothing(
    client: TestClient,
    db: Database,
    owner: tuple[int, int, Actor],
    params: dict[str, str],
    where: list[Any],
) -> None:
    cid, mid, actor = owner
    before = _count(db, cid)
    res = client.post("/api/sensors", params={"client_cid": cid, **params}, headers=actor.headers)
    assert _where(res) == where
    res = client.put(f"/api/sensors/{cid}.{mid}", params=params, headers=actor.headers)
    assert _where(res) == where
    assert _count(db, cid) == before
    assert client.get(f"/api/sensors/{cid}.{mid}", headers=actor.headers).json()["name"] == "meter"


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/api/sensors/find", {"name": NUL}),
        ("GET", "/api/sensors/find", {"meter_eid": NUL}),
        ("GET", "/api/sensors/states/find", {"meter_dev": f"SN{NUL}"}),
        ("POST", "/api/sensors/meters", {"meter_type_name": f"t{NUL}"}),
        ("PUT", "/api/sensors/meters/1", {"description": NUL}),
        ("POST", "/api/sensors/states", {"info": '{"a": "\\u0000"}'}),
        ("PUT", "/api/sensors/states/1", {"meter_eid": NUL}),
        ("POST", "/api/tasks/graphs/run/name", {"graph_name": f"g{NUL}"}),
        ("GET", "/api/time", {"unit": NUL}),
    ],
)
def test_query_text_on_every_kind_of_route(
    client: TestClient, owner: tuple[int, int, Actor], method: str, path: str, params: Any
) -> None:
    cid, _mid, actor = owner
    res = client.request(method, path, params={"client_cid": cid, **params}, headers=actor.headers)
    loc = _where(res)
    assert loc[:2] == ["query", next(iter(params))]


@pytest.mark.parametrize("header", ["X-Auth", "Authorization"])
def test_credentials_header(client: TestClient, header: str) -> None:
    res = client.get("/api/clients", headers={header: f"Bearer a{NUL}b"})
    assert _where(res) == ["header", header.lower()]


def test_api_key_with_nul_is_422_not_500(client: TestClient, db: Database) -> None:
    cid, _actor = make_tenant(db)
    with db.transaction() as conn:
        key = users.create_api_key(conn, client_cid=cid, name="k")
    clear_sky = "/api/weather/50/20/1034/data"  # GHI_CS: computed anywhere, no data needed
    params = {"since": T0, "till": T0 + 3_600_000}
    assert client.get(clear_sky, params=params, headers={"X-Auth": key}).status_code == 200
    res = client.get(clear_sky, params=params, headers={"X-Auth": key + NUL})
    assert _where(res) == ["header", "x-auth"]


def _str_points(text: str) -> dict[str, Any]:
    return {"time": [T0, T0 + 1], "value": [1.0, text], "type": ["DBL", "STR"]}


def test_str_values_of_signal_data(client: TestClient, owner: tuple[int, int, Actor]) -> None:
    cid, mid, actor = owner
    m = moid("P+")
    one = client.put(data_url(cid, mid, m), json=_str_points(f"x{NUL}"), headers=actor.headers)
    assert _where(one) == ["body", "value", 1]
    item = {"client_cid": cid, "sensor_mid": mid, "signal_type_moid": m}
    many = [{**item, "data": _str_points("ok")}, {**item, "data": _str_points(NUL)}]
    res = client.put("/api/sensors/signals/data/v2", json=many, headers=actor.headers)
    assert _where(res) == ["body", 1, "data", "value", 1]
    # Nothing of the rejected requests was written; the same points without NUL are.
    got = client.get(
        data_url(cid, mid, m, v2=False), params={"since": T0, "till": T0 + 2}, headers=actor.headers
    )
    assert got.json()["data"]["time"] == []
    ok = client.put(data_url(cid, mid, m), json=_str_points("x"), headers=actor.headers)
    assert ok.status_code == 200, ok.text


def test_raw_nul_byte_in_body_and_gzip_body(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, actor = owner
    raw = b'{"login": "u\x001", "password": "x"}'
    assert _where(client.post("/api/users/token", content=raw)) == ["body"]
    # The check runs on the decoded body: gzip hides nothing.
    body = gzip.compress(orjson.dumps(_str_points(NUL)))
    res = client.put(
        data_url(cid, mid, moid("P+")),
        content=body,
        headers={**actor.headers, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert _where(res) == ["body", "value", 1]
