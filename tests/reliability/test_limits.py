"""Every limit of a request: 413 (or 422) with a message naming the setting, configurable.

The app is built with small limits so that each is crossed by a small request; the same
request under the default settings passes, which shows the limit is the setting's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database
from besmart_server.server.signals.service import MS_PER_DAY
from tests.api.signal_helpers import T0, Q, make_sensor, moid
from tests.factories import Actor, make_tenant

LIMITS = {
    "max_body_bytes": 4096,
    "max_points_per_request": 50,
    "max_points_per_read": 30,
    "max_items_per_request": 3,
    "max_window_days": 10,
}


@pytest.fixture
def small(database_url: str, db: Database) -> Iterator[TestClient]:
    """The app with every limit small."""
    settings = Settings(database_url=database_url, demo=False, **LIMITS)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def owner(db: Database) -> tuple[int, int, Actor]:
    cid, actor = make_tenant(db)
    return cid, make_sensor(db, cid), actor


def _series(n: int, start: int = T0) -> dict[str, list[Any]]:
    return {"time": [start + i * Q for i in range(n)], "value": [float(i) for i in range(n)]}


def _detail(res: Any) -> str:
    body = res.json()
    return str(body["detail"])


def _one(cid: int, mid: int) -> str:
    return f"/api/sensors/{cid}.{mid}/signals/{moid('P+')}/data"


def _item(cid: int, mid: int, n: int) -> dict[str, Any]:
    return {
        "client_cid": cid,
        "sensor_mid": mid,
        "signal_type_moid": moid("P+"),
        "data": _series(n),
    }


def _read_item(cid: int, mid: int, since: int, till: int) -> dict[str, Any]:
    return {
        "client_cid": cid,
        "sensor_mid": mid,
        "signal_type_moid": moid("P+"),
        "since": since,
        "till": till,
    }


# --- body size --------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_by_content_length(
    small: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, actor = owner
    body = b'{"time": [], "value": []}' + b" " * LIMITS["max_body_bytes"]
    res = small.put(_one(cid, mid) + "/v2", content=body, headers=actor.headers)
    assert res.status_code == 413
    assert "larger than 4096 bytes" in _detail(res)
    assert res.headers["x-content-type-options"] == "nosniff"


def test_streamed_body_over_the_limit_is_413(
    small: TestClient, owner: tuple[int, int, Actor]
) -> None:
    """Chunked, without a Content-Length: counted as it arrives."""
    cid, mid, actor = owner

    def chunks() -> Iterator[bytes]:
        yield b'{"time": [], "value": []}'
        for _ in range(10):
            yield b" " * 1024

    res = small.put(_one(cid, mid) + "/v2", content=chunks(), headers=actor.headers)
    assert res.status_code == 413
    assert "larger than 4096 bytes" in _detail(res)


def test_body_under_the_limit_is_stored(small: TestClient, owner: tuple[int, int, Actor]) -> None:
    cid, mid, actor = owner
    res = small.put(_one(cid, mid) + "/v2", json=_series(10), headers=actor.headers)
    assert res.status_code == 200, res.text


def test_login_body_over_the_limit_is_413(small: TestClient) -> None:
    res = small.post("/api/users/token", content=b"x" * 5000)
    assert res.status_code == 413


# --- points per write request -------------------------------------------------------------


@pytest.mark.parametrize("v2", [True, False], ids=["v2", "legacy"])
def test_points_per_request_single_series(
    small: TestClient, db: Database, owner: tuple[int, int, Actor], v2: bool
) -> None:
    cid, mid, actor = owner
    url = _one(cid, mid) + ("/v2" if v2 else "")
    res = small.put(url, json=_series(51), headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "51 points in one request; at most 50 (max_points_per_request)" in _detail(res)
    ok = small.put(url, json=_series(50), headers=actor.headers)
    assert ok.status_code in (200, 204), ok.text


def test_points_per_request_counts_every_item(
    small: TestClient, owner: tuple[int, int, Actor]
) -> None:
    """Three items of 20 points: 60 > 50, though each item alone is under the limit."""
    cid, mid, actor = owner
    body = [_item(cid, mid, 20) for _ in range(3)]
    res = small.put("/api/sensors/signals/data/v2", json=body, headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "60 points in one request; at most 50" in _detail(res)
    # Nothing of the refused request was stored.
    got = small.get(
        _one(cid, mid), params={"since": T0, "till": T0 + 100 * Q}, headers=actor.headers
    )
    assert got.json()["data"]["time"] == []


# --- items per request ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/sensors/signals/data/v2", "/api/sensors/signals/data"])
def test_items_per_write_request(
    small: TestClient, owner: tuple[int, int, Actor], path: str
) -> None:
    cid, mid, actor = owner
    res = small.put(path, json=[_item(cid, mid, 1) for _ in range(4)], headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "4 items in one request; at most 3 (max_items_per_request)" in _detail(res)
    ok = small.put(path, json=[_item(cid, mid, 1) for _ in range(3)], headers=actor.headers)
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("path", ["/api/sensors/signals/data/v2", "/api/sensors/signals/data"])
def test_items_per_read_request(
    small: TestClient, owner: tuple[int, int, Actor], path: str
) -> None:
    cid, mid, actor = owner
    items = [_read_item(cid, mid, T0, T0 + Q) for _ in range(4)]
    res = small.post(path, json=items, headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "4 items in one request; at most 3 (max_items_per_request)" in _detail(res)
    ok = small.post(path, json=items[:3], headers=actor.headers)
    assert ok.status_code == 200, ok.text


# --- points per read ------------------------------------------------------------------------


def test_points_per_read(small: TestClient, owner: tuple[int, int, Actor]) -> None:
    cid, mid, actor = owner
    assert small.put(_one(cid, mid) + "/v2", json=_series(40), headers=actor.headers).is_success
    params = {"since": T0, "till": T0 + 40 * Q}
    res = small.get(_one(cid, mid), params=params, headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "more than 30 points (max_points_per_read)" in _detail(res)
    ok = small.get(_one(cid, mid), params={"since": T0, "till": T0 + 30 * Q}, headers=actor.headers)
    assert ok.status_code == 200
    assert len(ok.json()["data"]["time"]) == 30


def test_points_per_read_across_items(small: TestClient, owner: tuple[int, int, Actor]) -> None:
    """Two items of 20 points: 40 > 30 for the request as a whole."""
    cid, mid, actor = owner
    assert small.put(_one(cid, mid) + "/v2", json=_series(20), headers=actor.headers).is_success
    items = [_read_item(cid, mid, T0, T0 + 20 * Q) for _ in range(2)]
    res = small.post("/api/sensors/signals/data/v2", json=items, headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "max_points_per_read" in _detail(res)


def test_buckets_per_read(small: TestClient, owner: tuple[int, int, Actor]) -> None:
    """An aggregated read is limited by its buckets, even where no point is stored."""
    cid, mid, actor = owner
    params = {"since": T0, "till": T0 + 31 * Q, "delta_t": 15}
    res = small.get(_one(cid, mid), params=params, headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "max_points_per_read" in _detail(res)


# --- window length --------------------------------------------------------------------------


def test_window_length_single_read(small: TestClient, owner: tuple[int, int, Actor]) -> None:
    """Only a delta_t read is capped by max_window_days (its buckets grow with the window)."""
    cid, mid, actor = owner
    params = {"since": T0, "till": T0 + 10 * MS_PER_DAY + 1, "delta_t": 1440}
    res = small.get(_one(cid, mid), params=params, headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "at most 10 (max_window_days)" in _detail(res)
    assert "delta_t" in _detail(res)
    ok = small.get(
        _one(cid, mid),
        params={"since": T0, "till": T0 + 10 * MS_PER_DAY, "delta_t": 1440},
        headers=actor.headers,
    )
    assert ok.status_code == 200, ok.text


def test_raw_read_of_any_window_costs_its_points(
    small: TestClient, owner: tuple[int, int, Actor]
) -> None:
    """A read without delta_t is bounded by its points (max_points_per_read), not its window:
    since=0 till=<far future> answers what is stored (#14)."""
    cid, mid, actor = owner
    m = moid("P+")
    body = {"time": [T0, T0 + Q], "value": [1.0, 2.0]}
    put = small.put(
        f"/api/sensors/{cid}.{mid}/signals/{m}/data/v2", json=body, headers=actor.headers
    )
    assert put.status_code == 200, put.text
    params = {"since": 0, "till": 2**62}
    res = small.get(_one(cid, mid), params=params, headers=actor.headers)
    assert res.status_code == 200, res.text
    assert res.json()["data"]["value"] == [1.0, 2.0]
    items = [_read_item(cid, mid, 0, 2**62)]
    many = small.post("/api/sensors/signals/data/v2", json=items, headers=actor.headers)
    assert many.status_code == 200, many.text
    assert many.json()[0]["data"]["value"] == [1.0, 2.0]


def test_window_length_multi_read(small: TestClient, owner: tuple[int, int, Actor]) -> None:
    cid, mid, actor = owner
    items = [_read_item(cid, mid, T0, T0 + Q), {**_read_item(cid, mid, 0, T0), "delta_t": 60}]
    res = small.post("/api/sensors/signals/data/v2", json=items, headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "max_window_days" in _detail(res)


def test_window_length_weather(small: TestClient, owner: tuple[int, int, Actor]) -> None:
    """Checked before the grid lookup: no grid exists here, yet the answer is 413."""
    _cid, _mid, actor = owner
    ghi_cs = moid("GHI_CS")
    params = {"since": T0, "till": T0 + 11 * MS_PER_DAY, "delta_t": 1440}
    res = small.get(f"/api/weather/50.0/20.0/{ghi_cs}/data", params=params, headers=actor.headers)
    assert res.status_code == 413, res.text
    assert "max_window_days" in _detail(res)


def test_window_of_another_tenant_sensor_is_still_413(
    small: TestClient, db: Database, owner: tuple[int, int, Actor]
) -> None:
    """The window is checked before access: a foreign and a missing sensor answer alike."""
    _cid, _mid, actor = owner
    other_cid, _ = make_tenant(db)
    other_mid = make_sensor(db, other_cid)
    params = {"since": 0, "till": T0, "delta_t": 60}
    a = small.get(_one(other_cid, other_mid), params=params, headers=actor.headers)
    b = small.get(_one(other_cid, other_mid + 10_000), params=params, headers=actor.headers)
    assert a.status_code == b.status_code == 413


# --- defaults -------------------------------------------------------------------------------


def test_defaults_are_documented_and_generous() -> None:
    s = Settings(database_url="sqlite://")
    assert s.max_body_bytes == 64 * 1024 * 1024
    assert s.max_points_per_request == 2_000_000
    assert s.max_points_per_read == 5_000_000
    assert s.max_items_per_request == 10_000
    assert s.max_window_days == 3660


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BESMART_MAX_WINDOW_DAYS", "31")
    monkeypatch.setenv("BESMART_MAX_BODY_BYTES", "65536")
    s = Settings(database_url="sqlite://")
    assert (s.max_window_days, s.max_body_bytes) == (31, 65536)


def test_default_app_accepts_what_the_small_one_refuses(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, actor = owner
    assert client.put(_one(cid, mid) + "/v2", json=_series(60), headers=actor.headers).is_success
    res = client.get(
        _one(cid, mid), params={"since": T0, "till": T0 + 60 * MS_PER_DAY}, headers=actor.headers
    )
    assert res.status_code == 200
    assert len(res.json()["data"]["time"]) == 60
