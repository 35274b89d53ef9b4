"""delta_t on every signal read route: a bucket whose milliseconds overflow int64 is a 422
naming the field (it was a 500 once there were points to aggregate), the largest bound works."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from besmart_server.server.db import Database
from besmart_server.server.signals.service import DELTA_T_MAX
from tests.api.signal_helpers import T0, Q, data_url, make_sensor, moid, put
from tests.factories import make_tenant

TILL = T0 + 4 * Q
TOO_BIG = [DELTA_T_MAX + 1, 9_007_199_254_740_992, 2**63, 10**30]


@pytest.fixture
def series(client: TestClient, db: Database) -> tuple[int, int, dict[str, str]]:
    """A P+ series of 4 quarter-hours (1, 2, 3, 4 kW)."""
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    body = {"time": [T0 + i * Q for i in range(4)], "value": [1.0, 2.0, 3.0, 4.0]}
    put(client, actor.headers, cid, mid, moid("P+"), body)
    return cid, mid, actor.headers


def _get(client: TestClient, cid: int, mid: int, h: dict[str, str], delta_t: int) -> Any:
    params = {"since": T0, "till": TILL, "delta_t": delta_t}
    return client.get(data_url(cid, mid, moid("P+"), v2=False), params=params, headers=h)


def _post(
    client: TestClient, path: str, cid: int, mid: int, h: dict[str, str], delta_t: int
) -> Any:
    ok = {"client_cid": cid, "sensor_mid": mid, "signal_type_moid": moid("P+")}
    items = [
        {**ok, "since": T0, "till": TILL},
        {**ok, "since": T0, "till": TILL, "delta_t": delta_t},
    ]
    return client.post(path, json=items, headers=h)


@pytest.mark.parametrize("delta_t", TOO_BIG)
def test_get_422(client: TestClient, series: tuple[int, int, dict[str, str]], delta_t: int) -> None:
    res = _get(client, *series, delta_t)
    assert res.status_code == 422, res.text
    assert res.json()["detail"][0]["loc"] == ["query", "delta_t"]


@pytest.mark.parametrize("path", ["/api/sensors/signals/data/v2", "/api/sensors/signals/data"])
@pytest.mark.parametrize("delta_t", TOO_BIG)
def test_multi_series_post_422_names_the_item(
    client: TestClient, series: tuple[int, int, dict[str, str]], path: str, delta_t: int
) -> None:
    res = _post(client, path, *series, delta_t)
    assert res.status_code == 422, res.text
    assert res.json()["detail"][0]["loc"] == ["body", 1, "delta_t"]


def test_largest_delta_t_is_one_bucket(
    client: TestClient, series: tuple[int, int, dict[str, str]]
) -> None:
    res = _get(client, *series, DELTA_T_MAX)
    assert res.status_code == 200, res.text
    assert res.json()["data"]["value"] == [2.5]  # P+ is instantaneous: the mean
    for path in ("/api/sensors/signals/data/v2", "/api/sensors/signals/data"):
        res = _post(client, path, *series, DELTA_T_MAX)
        assert res.status_code == 200, res.text
        assert [item["data"]["value"] for item in res.json()] == [[1.0, 2.0, 3.0, 4.0], [2.5]]


@pytest.mark.parametrize("path", ["/api/sensors/signals/data/v2", "/api/sensors/signals/data"])
@pytest.mark.parametrize("delta_t", [1.5, "week", True, [], {}, -1.0, "1e3"])
def test_multi_series_post_bad_delta_t_is_one_422_naming_it(
    client: TestClient, series: tuple[int, int, dict[str, str]], path: str, delta_t: Any
) -> None:
    """One error naming the item's delta_t, not one per member of its type; JSON `true` is
    no number of minutes (it read as 1 minute, 200: black-box run after issue #14)."""
    res = _post(client, path, *series, delta_t)
    assert res.status_code == 422, res.text
    assert [e["loc"] for e in res.json()["detail"]] == [["body", 1, "delta_t"]]


@pytest.mark.parametrize("delta_t", [60.0, " 60 ", "60"])
def test_multi_series_post_whole_minutes_in_any_spelling(
    client: TestClient, series: tuple[int, int, dict[str, str]], delta_t: Any
) -> None:
    res = _post(client, "/api/sensors/signals/data/v2", *series, delta_t)
    assert res.status_code == 200, res.text
    assert res.json()[1]["data"]["value"] == [2.5]
