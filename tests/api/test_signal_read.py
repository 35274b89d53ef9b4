"""Reading signals: versions, origins, windows, multiplier, stitching, aggregation, units,
the multi-series POST and the cap route."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.users import service as users
from tests.api.signal_helpers import MIN, T0, Q, data_url, get, make_sensor, make_state, moid, put
from tests.factories import Actor, make_tenant, make_user

H = 60 * MIN
MANY = "/api/sensors/signals/data/v2"


@pytest.fixture
def owner(db: Database) -> tuple[int, int, Actor]:
    cid, actor = make_tenant(db, Role.write)
    return cid, make_sensor(db, cid), actor


def unit_id(client: TestClient, actor: Actor, symbol: str) -> int:
    units = client.get("/api/units", headers=actor.headers).json()
    return int(next(u["unit_id"] for u in units if u["symbol"] == symbol))


# --- versions, origins, windows -------------------------------------------------------------


def test_versions_tombstones_and_get_last(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    m = moid("P+")
    put(client, a.headers, cid, mid, m, {"time": [T0, T0 + Q], "value": [1, 10]})
    put(client, a.headers, cid, mid, m, {"time": [T0], "value": [2]})
    put(client, a.headers, cid, mid, m, {"time": [T0 + Q], "type": ["RM"]})
    every = get(client, a.headers, cid, mid, m, T0, T0 + H)["data"]
    assert every["time"] == [T0, T0, T0 + Q, T0 + Q]
    assert every["value"] == [1.0, 2.0, 10.0, None]
    assert every["type"] == ["DBL", "DBL", "DBL", "RM"]
    assert every["origin"] == [1, 1, 1, 1]
    acq = every["acq_time"]
    assert acq[0] <= acq[1]
    assert acq[2] <= acq[3]
    assert acq[0] == acq[2]
    last = get(client, a.headers, cid, mid, m, T0, T0 + H, get_last=True)["data"]
    assert last["time"] == [T0]
    assert last["value"] == [2.0]
    # A write after the tombstone brings the point back.
    put(client, a.headers, cid, mid, m, {"time": [T0 + Q], "value": [11]})
    assert get(client, a.headers, cid, mid, m, T0, T0 + H, get_last="True")["data"]["value"] == [
        2.0,
        11.0,
    ]


@pytest.mark.parametrize("params", [{"get_last": True}, {"delta_t": 60}])
def test_counter_whose_points_are_all_removed_reads_empty(
    client: TestClient, owner: tuple[int, int, Actor], params: dict[str, Any]
) -> None:
    """A stitched counter with nothing left after its tombstones: empty data (was a 500)."""
    cid, mid, a = owner
    m = moid("A+")
    put(client, a.headers, cid, mid, m, {"time": [T0], "value": [1]})
    put(client, a.headers, cid, mid, m, {"time": [T0], "type": ["RM"]})
    assert get(client, a.headers, cid, mid, m, T0, T0 + H, **params)["data"]["time"] == []


def test_writes_in_the_same_millisecond_stay_ordered(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    m = moid("P+")
    for i in range(15):
        put(client, a.headers, cid, mid, m, {"time": [T0], "value": [i]})
    every = get(client, a.headers, cid, mid, m, T0, T0 + 1)["data"]
    assert every["value"] == [float(i) for i in range(15)]  # sorted by acq = arrival
    assert get(client, a.headers, cid, mid, m, T0, T0 + 1, get_last=1)["data"]["value"] == [14.0]


def test_origins_and_their_filter(client: TestClient, owner: tuple[int, int, Actor]) -> None:
    cid, mid, a = owner
    m = moid("P+")
    put(
        client,
        a.headers,
        cid,
        mid,
        m,
        {"time": [T0, T0, T0 + Q], "value": [1, 2, 3], "origin": [1, 2, 2]},
    )
    both = get(client, a.headers, cid, mid, m, T0, T0 + H)["data"]
    assert list(zip(both["time"], both["origin"], both["value"], strict=True)) == [
        (T0, 1, 1.0),
        (T0, 2, 2.0),
        (T0 + Q, 2, 3.0),
    ]
    two = get(client, a.headers, cid, mid, m, T0, T0 + H, signal_origin_id=2)["data"]
    assert two["value"] == [2.0, 3.0]
    r = client.get(
        data_url(cid, mid, m, v2=False),
        params={"since": T0, "till": T0 + H, "signal_origin_id": 9},
        headers=a.headers,
    )
    assert r.status_code == 422


def test_window_is_half_open(client: TestClient, owner: tuple[int, int, Actor]) -> None:
    cid, mid, a = owner
    m = moid("P+")
    put(
        client,
        a.headers,
        cid,
        mid,
        m,
        {"time": [T0 - 1, T0, T0 + Q - 1, T0 + Q], "value": [0, 1, 2, 3]},
    )
    assert get(client, a.headers, cid, mid, m, T0, T0 + Q)["data"]["value"] == [1.0, 2.0]
    url = data_url(cid, mid, m, v2=False)
    for since, till in ((T0, T0), (T0 + 1, T0)):
        r = client.get(url, params={"since": since, "till": till}, headers=a.headers)
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["query", "since"]
    assert client.get(url, params={"since": T0}, headers=a.headers).status_code == 422


def test_read_access(client: TestClient, db: Database, owner: tuple[int, int, Actor]) -> None:
    cid, mid, a = owner
    m = moid("P+")
    put(client, a.headers, cid, mid, m, {"time": [T0], "value": [1]})
    reader = make_user(db, roles={cid: Role.read})
    assert get(client, reader.headers, cid, mid, m, T0, T0 + 1)["data"]["value"] == [1.0]
    _, stranger = make_tenant(db)
    url = data_url(cid, mid, m, v2=False)
    params = {"since": T0, "till": T0 + 1}
    r = client.get(url, params=params, headers=stranger.headers)
    assert r.status_code == 404
    assert r.json() == f"Sensor {cid}.{mid} not found"
    assert client.get(url, params=params).status_code == 401
    # The route checks the token itself, in the read's transaction: an unknown or revoked
    # token is refused there as by every other route.
    unknown = {"Authorization": "Bearer bst_" + "x" * 43}
    assert client.get(url, params=params, headers=unknown).status_code == 401
    with db.transaction() as conn:
        users.revoke_token(conn, reader.token)
    assert client.get(url, params=params, headers=reader.headers).status_code == 401
    r = client.get(data_url(cid, mid, 99_999, v2=False), params=params, headers=a.headers)
    assert r.status_code == 404
    # An existing sensor and type without any point: 200, empty columns.
    empty = get(client, a.headers, cid, mid, moid("U1"), T0, T0 + 1)
    assert empty["data"] == {"time": [], "value": [], "type": [], "origin": [], "acq_time": []}
    assert empty["unit"] == "V"
    assert empty["time_tstorage"] >= 0
    assert empty["time_other"] >= 0


def test_a_read_gives_its_connection_back(
    app: FastAPI, client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    """The route's connection, opened with the caller's check, goes back to the pool however
    the request ends: read, refused by the route, by its parameters, or by the store."""
    cid, mid, a = owner
    m = moid("P+")
    put(client, a.headers, cid, mid, m, {"time": [T0], "value": [1]})
    url = data_url(cid, mid, m, v2=False)
    pool = app.state.db.engine.pool
    for params, status in (
        ({"since": T0, "till": T0 + 1}, 200),
        ({"since": T0, "till": T0 + 1, "delta_t": "fortnight"}, 422),  # in the route
        ({"since": T0}, 422),  # before it: a missing parameter
        ({"since": T0, "till": T0 + 1, "tz": "Mars/Olympus"}, 422),  # in the service
    ):
        assert client.get(url, params=params, headers=a.headers).status_code == status
        assert pool.checkedout() == 0, params
    r = client.get(data_url(cid, mid + 1, m, v2=False), params={"since": T0, "till": T0 + 1})
    assert r.status_code == 401
    assert pool.checkedout() == 0


def test_str_and_int_points(client: TestClient, owner: tuple[int, int, Actor]) -> None:
    cid, mid, a = owner
    m = moid("SOC")
    put(
        client,
        a.headers,
        cid,
        mid,
        m,
        {"time": [T0, T0 + 1], "value": [55, "calibrating"], "type": ["INT", "STR"]},
    )
    data = get(client, a.headers, cid, mid, m, T0, T0 + 2)["data"]
    assert data["value"] == [55, "calibrating"]
    assert data["type"] == ["INT", "STR"]


# --- multiplier and meter swaps -------------------------------------------------------------


def test_multiplier_per_state(
    client: TestClient, db: Database, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    make_state(db, mid, T0, T0 + H, info={"current_ratio": 40, "voltage_ratio": 2})
    make_state(db, mid, T0 + H, None, info={"current_ratio": 10})
    p, u = moid("P+"), moid("U1")
    times = [T0 - Q, T0, T0 + H]
    put(client, a.headers, cid, mid, p, {"time": times, "value": [1, 1, 1]})
    put(client, a.headers, cid, mid, u, {"time": times, "value": [1, 1, 1]})
    since, till = T0 - H, T0 + 2 * H
    assert get(client, a.headers, cid, mid, p, since, till)["data"]["value"] == [1.0, 1.0, 1.0]
    assert get(client, a.headers, cid, mid, p, since, till, apply_multiplier=True)["data"][
        "value"
    ] == [1.0, 80.0, 10.0]
    assert get(client, a.headers, cid, mid, u, since, till, apply_multiplier=True)["data"][
        "value"
    ] == [1.0, 2.0, 1.0]
    # P_PV asks for no ratio.
    pv = moid("P_PV")
    put(client, a.headers, cid, mid, pv, {"time": [T0], "value": [3]})
    assert get(client, a.headers, cid, mid, pv, since, till, apply_multiplier=True)["data"][
        "value"
    ] == [3.0]


def test_multiplier_key_stands_for_both_ratios(
    client: TestClient, db: Database, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    make_state(db, mid, T0, None, info={"multiplier": 60})
    put(client, a.headers, cid, mid, moid("P+"), {"time": [T0], "value": [2]})
    put(client, a.headers, cid, mid, moid("U1"), {"time": [T0], "value": [2]})
    assert get(client, a.headers, cid, mid, moid("P+"), T0, T0 + 1, apply_multiplier=True)["data"][
        "value"
    ] == [120.0]
    assert get(client, a.headers, cid, mid, moid("U1"), T0, T0 + 1, apply_multiplier=True)["data"][
        "value"
    ] == [2.0]


@pytest.fixture
def swapped(
    client: TestClient, db: Database, owner: tuple[int, int, Actor]
) -> tuple[int, int, Actor]:
    """A+ on two meters: the first from 1000 to 1500 kWh, the second from 5 (CT 2 on it)."""
    cid, mid, a = owner
    m = moid("A+")
    make_state(db, mid, T0, T0 + 5 * H, info={"current_ratio": 1}, readings={m: (1000.0, 1500.0)})
    make_state(db, mid, T0 + 5 * H, None, info={"current_ratio": 2}, readings={m: (5.0, None)})
    times = [T0 + i * H for i in range(9)]
    raw = [1000, 1100, 1200, 1300, 1400, 5, 55, 105, 155]
    put(client, a.headers, cid, mid, m, {"time": times, "value": raw})
    return owner


def test_stitching_across_a_meter_swap(client: TestClient, swapped: tuple[int, int, Actor]) -> None:
    cid, mid, a = swapped
    m = moid("A+")
    since, till = T0, T0 + 9 * H
    raw = get(client, a.headers, cid, mid, m, since, till, raw=True)["data"]["value"]
    assert raw == [1000, 1100, 1200, 1300, 1400, 5, 55, 105, 155]
    stitched = get(client, a.headers, cid, mid, m, since, till, get_last=True)["data"]["value"]
    assert stitched == [1000, 1100, 1200, 1300, 1400, 1500, 1550, 1600, 1650]
    multiplied = get(client, a.headers, cid, mid, m, since, till, apply_multiplier=True)["data"]
    assert multiplied["value"] == [1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800]
    # Hourly consumption from the interpolated counter: no energy lost or invented at the swap.
    hourly = get(client, a.headers, cid, mid, m, since, till, delta_t=60)["data"]["value"]
    steps = [b - c for c, b in itertools.pairwise(hourly)]
    assert steps == [100, 100, 100, 100, 100, 50, 50, 50]
    raw_hourly = get(client, a.headers, cid, mid, m, since, till, delta_t=60, raw=True)["data"]
    assert raw_hourly["value"][5] == 5.0


# --- aggregation ----------------------------------------------------------------------------


def test_instantaneous_mean_and_interval_sum(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    times = [T0 + i * Q for i in range(8)]
    put(
        client,
        a.headers,
        cid,
        mid,
        moid("P+"),
        {"time": times, "value": [1, 2, 3, 4, 10, 10, 10, 30]},
    )
    put(
        client,
        a.headers,
        cid,
        mid,
        moid("EA+"),
        {"time": times, "value": [1, 2, 3, 4, 10, 10, 10, 30]},
    )
    mean = get(client, a.headers, cid, mid, moid("P+"), T0, T0 + 2 * H, delta_t=60)["data"]
    assert mean["time"] == [T0, T0 + H]
    assert mean["value"] == [2.5, 15.0]
    assert mean["type"] == ["DBL", "DBL"]
    total = get(client, a.headers, cid, mid, moid("EA+"), T0, T0 + 2 * H, delta_t=60)["data"]
    assert total["value"] == [10.0, 60.0]
    # Versions are resolved before aggregating.
    put(client, a.headers, cid, mid, moid("P+"), {"time": [T0], "value": [5]})
    assert get(client, a.headers, cid, mid, moid("P+"), T0, T0 + H, delta_t=60)["data"][
        "value"
    ] == [3.5]


def test_cumulative_interpolates_at_bucket_starts_with_outside_neighbours(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    m = moid("A+")
    put(
        client,
        a.headers,
        cid,
        mid,
        m,
        {
            "time": [T0 - 5 * MIN, T0 + 10 * MIN, T0 + 70 * MIN, T0 + 200 * MIN],
            "value": [100, 110, 170, 300],
        },
    )
    out = get(client, a.headers, cid, mid, m, T0, T0 + 2 * H, delta_t=60)["data"]
    assert out["time"] == [T0, T0 + H]
    assert out["value"] == pytest.approx([100 + 10 * 5 / 15, 110 + 60 * 50 / 60])
    # Never extrapolated: no reading after T0 + 200 min, so no value at T0 + 4 h.
    late = get(client, a.headers, cid, mid, m, T0 + 3 * H, T0 + 5 * H, delta_t=60)["data"]
    assert late["time"] == [T0 + 3 * H]


def test_delta_t_must_be_positive(client: TestClient, owner: tuple[int, int, Actor]) -> None:
    cid, mid, a = owner
    r = client.get(
        data_url(cid, mid, moid("P+"), v2=False),
        params={"since": T0, "till": T0 + H, "delta_t": 0},
        headers=a.headers,
    )
    assert r.status_code == 422


# --- units out ------------------------------------------------------------------------------


def test_output_unit(client: TestClient, owner: tuple[int, int, Actor]) -> None:
    cid, mid, a = owner
    m = moid("P+")
    put(client, a.headers, cid, mid, m, {"time": [T0], "value": [1.5]})
    w = get(client, a.headers, cid, mid, m, T0, T0 + 1, output_unit_id=unit_id(client, a, "W"))
    assert w["unit"] == "W"
    assert w["data"]["value"] == [1500.0]
    url = data_url(cid, mid, m, v2=False)
    for bad in (unit_id(client, a, "kWh"), 99_999):
        r = client.get(
            url, params={"since": T0, "till": T0 + 1, "output_unit_id": bad}, headers=a.headers
        )
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["query", "output_unit_id"]


def test_is_chart_converts_weather_to_chart_unit(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    m = moid("T_AIR")
    put(client, a.headers, cid, mid, m, {"time": [T0], "value": [293.15]})
    assert get(client, a.headers, cid, mid, m, T0, T0 + 1)["unit"] == "K"
    chart = get(client, a.headers, cid, mid, m, T0, T0 + 1, is_chart=True)
    assert chart["unit"] == "°C"
    assert chart["data"]["value"] == pytest.approx([20.0])


# --- multi-series POST ----------------------------------------------------------------------


def _q(cid: int, mid: int, symbol: str, **extra: Any) -> dict[str, Any]:
    return {
        "client_cid": cid,
        "sensor_mid": mid,
        "signal_type_moid": moid(symbol),
        "since": T0,
        "till": T0 + H,
        **extra,
    }


@pytest.mark.parametrize("path", [MANY, "/api/sensors/signals/data"])
def test_post_many_in_request_order_with_item_errors(
    client: TestClient, db: Database, owner: tuple[int, int, Actor], path: str
) -> None:
    cid, mid, a = owner
    put(
        client,
        a.headers,
        cid,
        mid,
        moid("P+"),
        {"time": [T0, T0], "value": [1, 2], "origin": [1, 2]},
    )
    put(client, a.headers, cid, mid, moid("U1"), {"time": [T0], "value": [230]})
    other_cid, _ = make_tenant(db)
    foreign = make_sensor(db, other_cid)
    body = [
        _q(cid, mid, "U1"),
        _q(other_cid, foreign, "P+"),
        {**_q(cid, mid, "P+"), "signal_type_moid": 99_999},
        _q(cid, mid, "P+", origin_id=2, get_last="True", filters={"x": 1}, whatever=1),
        _q(cid, mid + 10_000, "P+"),
    ]
    r = client.post(path, json=body, headers=a.headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out) == 5
    assert out[0]["data"]["value"] == [230.0]
    assert "error" not in out[0]
    assert out[1]["error"] == {"status": 404, "detail": f"Sensor {other_cid}.{foreign} not found"}
    assert out[1]["data"]["value"] == []
    assert out[2]["error"]["status"] == 404
    assert out[3]["data"]["value"] == [2.0]
    assert out[3]["data"]["origin"] == [2]
    assert out[4]["error"]["status"] == 404
    assert [o["sensor_mid"] for o in out] == [mid, foreign, mid, mid, mid + 10_000]


def test_post_many_spec_names_and_aggregation(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    put(
        client,
        a.headers,
        cid,
        mid,
        moid("P+"),
        {"time": [T0, T0 + Q], "value": [1, 3], "origin": [1, 1]},
    )
    body = [
        _q(
            cid,
            mid,
            "P+",
            signal_origin_id=1,
            last_acq=True,
            delta_t=60,
            output_unit_id=unit_id(client, a, "W"),
            apply_multiplier=False,
        )
    ]
    r = client.post(MANY, json=body, headers=a.headers)
    assert r.status_code == 200
    assert r.json()[0]["data"]["value"] == [2000.0]
    assert r.json()[0]["unit"] == "W"


_IDS = {"client_cid": 1, "sensor_mid": 1, "signal_type_moid": 32}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param({"x": 1}, ["body"], id="not-list"),
        pytest.param([{**_IDS, "since": 5}], ["body", 0, "till"], id="no-till"),
        pytest.param([{**_IDS, "since": 5, "till": 5}], ["body", 0, "since"], id="empty-window"),
    ],
)
def test_post_many_validation(
    client: TestClient, owner: tuple[int, int, Actor], body: Any, loc: list[Any]
) -> None:
    _, _, a = owner
    r = client.post(MANY, json=body, headers=a.headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_post_many_needs_a_token(client: TestClient) -> None:
    assert client.post(MANY, json=[]).status_code == 401


# --- cap ------------------------------------------------------------------------------------


def test_cap(client: TestClient, db: Database, owner: tuple[int, int, Actor]) -> None:
    cid, mid, a = owner
    url = f"/api/sensors/{cid}.{mid}/signals/cap"
    assert client.get(url, headers=a.headers).json() == {"cap_max": None}
    put(
        client,
        a.headers,
        cid,
        mid,
        moid("P+"),
        {"time": [T0, T0 + Q], "value": [1, 2], "origin": [1, 2]},
    )
    put(client, a.headers, cid, mid, moid("U1"), {"time": [T0 + H], "value": [230]})
    assert client.get(url, headers=a.headers).json() == {"cap_max": T0 + H}
    r = client.get(url, params={"signal_type_moid": moid("P+")}, headers=a.headers)
    assert r.json() == {"cap_max": T0 + Q}
    r = client.get(
        url, params={"signal_type_moid": moid("P+"), "signal_origin_id": 1}, headers=a.headers
    )
    assert r.json() == {"cap_max": T0}
    _, stranger = make_tenant(db)
    assert client.get(url, headers=stranger.headers).status_code == 404
    assert (
        client.get(url, params={"signal_type_moid": 99_999}, headers=a.headers).status_code == 404
    )
