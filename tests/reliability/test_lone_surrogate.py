"""A lone UTF-16 surrogate escape ("\\ud800") in a JSON body is a 422 on every route, before
any runs: it is no character, and the graph routes (parsed with `json`, which lets it through)
answered 500 when they stored or recorded it (found by the black-box run after issue #14)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from besmart_server.server.db import Database
from tests.api.signal_helpers import T0, make_sensor
from tests.factories import Actor, make_tenant

DAY = 86_400_000
JSON = {"content-type": "application/json"}


@pytest.fixture
def owner(db: Database) -> tuple[int, int, Actor]:
    cid, actor = make_tenant(db)
    return cid, make_sensor(db, cid), actor


def _json_invalid(res: Any) -> None:
    assert res.status_code == 422, res.text
    [error] = res.json()["detail"]
    assert error["loc"] == ["body"]
    assert error["type"] == "json_invalid"
    assert "surrogate" in error["msg"]


@pytest.mark.parametrize("text", [b'"x": "\\ud800"', b'"\\uDC00": 1', b'"x": "a\\udfffb"'])
def test_graph_put_and_run(client: TestClient, owner: tuple[int, int, Actor], text: bytes) -> None:
    cid, mid, actor = owner
    headers = {**actor.headers, **JSON}
    graph = (
        b'{"nodes": [{"function": "signals", "params": {"client_cid": %d, "sensor_mid": %d, '
        b'"moid": 1001, %s}}], "edges": []}' % (cid, mid, text)
    )
    res = client.put(
        "/api/tasks/graphs/g1", params={"client_cid": cid}, content=graph, headers=headers
    )
    _json_invalid(res)
    assert client.get("/api/tasks/graphs/g1", headers=actor.headers).status_code == 404
    body = b'{"client_cid": %d, "sensor_mid": %d, "moid": 1001, %s}' % (cid, mid, text)
    for task_async in ("false", "true"):
        res = client.post(
            "/api/tasks/graphs/run/name",
            params={
                "graph_name": "gap_fill",
                "since": T0,
                "till": T0 + DAY,
                "task_async": task_async,
            },
            content=body,
            headers=headers,
        )
        _json_invalid(res)
    assert client.get("/api/tasks/runs", headers=actor.headers).json() == []


def test_pairs_and_escaped_backslashes_are_text(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    """A surrogate pair is one character (😀); "\\\\ud800" is six ordinary characters."""
    cid, mid, actor = owner
    headers = {**actor.headers, **JSON}
    for text in (b'"\\ud83d\\ude00"', b'"\\\\ud800"'):
        body = b'{"client_cid": %d, "sensor_mid": %d, "moid": 1001, "note": %s}' % (cid, mid, text)
        res = client.post(
            "/api/tasks/graphs/run/name",
            params={"graph_name": "gap_fill", "since": T0, "till": T0 + DAY},
            content=body,
            headers=headers,
        )
        assert res.status_code == 201, res.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/clients/{cid}/quality/thresholds"),  # a pydantic body: was FastAPI's 400
        ("PUT", "/api/sensors/{cid}.{mid}/signals/32/data/v2"),  # columns parsed by orjson
        ("POST", "/api/devices"),
    ],
)
def test_a_body_that_is_not_utf8_is_a_422_on_every_route(
    client: TestClient, owner: tuple[int, int, Actor], method: str, path: str
) -> None:
    cid, mid, actor = owner
    body = b'{"thresholds": {"gap_factor": 2}, "x": "caf\xe9"}'  # Latin-1, not UTF-8
    res = client.request(
        method, path.format(cid=cid, mid=mid), content=body, headers={**actor.headers, **JSON}
    )
    assert res.status_code == 422, res.text
    [error] = res.json()["detail"]
    assert (error["loc"], error["type"]) == (["body"], "json_invalid")
    at = body.index(b"\xe9")
    assert error["msg"] == f"Body is not valid JSON: not UTF-8 at byte {at}"
    assert (
        client.get(f"/api/clients/{cid}/quality/thresholds", headers=actor.headers).json()[
            "overrides"
        ]
        == {}
    )  # nothing changed
