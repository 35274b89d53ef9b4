"""Reads at the edges of what is stored (#14): counter neighbours past tombstones and however
far, `as_of` on the data routes, unbounded raw windows, and meter swaps that lack a reading."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from tests.api.signal_helpers import get, make_sensor, make_state, moid, put
from tests.factories import Actor, make_tenant

T = 1_767_225_600_000  # 2026-01-01T00:00Z
H = 3_600_000
D = 24 * H
MANY = "/api/sensors/signals/data/v2"
LEGACY = "/api/sensors/signals/data"


@pytest.fixture
def owner(db: Database) -> tuple[int, int, Actor]:
    cid, actor = make_tenant(db, Role.write)
    return cid, make_sensor(db, cid), actor


def hours(
    client: TestClient, a: Actor, cid: int, mid: int, since: int, till: int, **kw: Any
) -> Any:
    """The A+ register at each hour of the window (delta_t=60): (times, values)."""
    data = get(client, a.headers, cid, mid, moid("A+"), since, till, delta_t=60, **kw)["data"]
    return data["time"], data["value"]


def item(cid: int, mid: int, since: int, till: int, **kw: Any) -> dict[str, Any]:
    return {
        "client_cid": cid,
        "sensor_mid": mid,
        "signal_type_moid": moid("A+"),
        "since": since,
        "till": till,
        **kw,
    }


# --- 1. neighbours among the live versions ---------------------------------------------------


@pytest.mark.parametrize("origin", [None, 1])
def test_counter_neighbour_before_the_window_skips_a_removed_reading(
    client: TestClient, owner: tuple[int, int, Actor], origin: int | None
) -> None:
    cid, mid, a = owner
    m = moid("A+")
    put(client, a.headers, cid, mid, m, {"time": [T, T + D, T + 2 * D], "value": [100, 124, 148]})
    put(client, a.headers, cid, mid, m, {"time": [T + D], "type": ["RM"]})
    kw = {} if origin is None else {"signal_origin_id": origin}
    want = [T + D + 6 * H, T + D + 7 * H, T + D + 8 * H]
    # Between 100 at T and 148 at T + 2D: one per hour.
    assert hours(client, a, cid, mid, T + D + 6 * H, T + D + 9 * H, **kw) == (
        want,
        [130.0, 131.0, 132.0],
    )
    # The same hours of a window that holds the readings themselves.
    times, values = hours(client, a, cid, mid, T, T + D + 9 * H, **kw)
    assert values[times.index(want[0]) :] == [130.0, 131.0, 132.0]


def test_counter_neighbour_after_the_window_skips_a_removed_reading(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    m = moid("A+")
    body = {"time": [T, T + D, T + 2 * D, T + 3 * D], "value": [100, 124, 999, 172]}
    put(client, a.headers, cid, mid, m, body)
    put(client, a.headers, cid, mid, m, {"time": [T + 2 * D], "type": ["RM"]})
    # Between 124 at T + D and 172 at T + 3D, the RM'd 999 unseen.
    assert hours(client, a, cid, mid, T + D + 6 * H, T + D + 9 * H)[1] == [130.0, 131.0, 132.0]
    res = client.post(
        MANY, json=[item(cid, mid, T + D + 6 * H, T + D + 9 * H, delta_t=60)], headers=a.headers
    )
    assert res.status_code == 200, res.text
    assert res.json()[0]["data"]["value"] == [130.0, 131.0, 132.0]


def test_counter_neighbours_of_each_origin_apart(
    client: TestClient, owner: tuple[int, int, Actor]
) -> None:
    """Origin 2's neighbours are its own, however far, even where origin 1 reads densely."""
    cid, mid, a = owner
    m = moid("A+")
    dense = [T + k * H for k in range(0, 20 * 24)]
    put(client, a.headers, cid, mid, m, {"time": dense, "value": [float(k) for k in range(480)]})
    put(
        client,
        a.headers,
        cid,
        mid,
        m,
        {"time": [T, T + 40 * D], "value": [0, 960], "origin": [2, 2]},
    )
    data = get(client, a.headers, cid, mid, m, T + 10 * D, T + 10 * D + 2 * H, delta_t=60)["data"]
    got = sorted(zip(data["origin"], data["time"], data["value"], strict=True))
    assert got == [
        (1, T + 10 * D, 240.0),
        (1, T + 10 * D + H, 241.0),
        (2, T + 10 * D, 240.0),
        (2, T + 10 * D + H, 241.0),
    ]


# --- 2. however far ---------------------------------------------------------------------------


@pytest.mark.parametrize("gap_days", [45, 800])
def test_counter_interpolation_does_not_depend_on_the_window(
    client: TestClient, owner: tuple[int, int, Actor], gap_days: int
) -> None:
    cid, mid, a = owner
    m = moid("A+")
    end = T + gap_days * D
    put(client, a.headers, cid, mid, m, {"time": [T, end], "value": [0, 24 * gap_days]})
    short = hours(client, a, cid, mid, T + 10 * D, T + 10 * D + 2 * H)
    assert short == ([T + 10 * D, T + 10 * D + H], [240.0, 241.0])
    times, values = hours(client, a, cid, mid, T + 5 * D, T + 15 * D)
    assert values[times.index(T + 10 * D)] == 240.0
    # A window after the last reading: never extrapolated.
    assert hours(client, a, cid, mid, end + H, end + 3 * H) == ([], [])


# --- 11. as_of ------------------------------------------------------------------------------


def test_as_of_on_every_data_route(client: TestClient, owner: tuple[int, int, Actor]) -> None:
    """Versions acquired before as_of only: the raw read, get_last, counter buckets (their
    neighbours too) and the multi-series POSTs (v2 and legacy) all travel back alike."""
    cid, mid, a = owner
    m = moid("A+")
    first = {"time": [T, T + D, T + 2 * D], "value": [100, 124, 148], "acq_time": [T] * 3}
    put(client, a.headers, cid, mid, m, first)
    # Later: T + D is corrected to 200, then T + 2D removed.
    put(client, a.headers, cid, mid, m, {"time": [T + D], "value": [200], "acq_time": [T + 5 * D]})
    put(
        client,
        a.headers,
        cid,
        mid,
        m,
        {"time": [T + 2 * D], "type": ["RM"], "value": [None], "acq_time": [T + 6 * D]},
    )
    window = (T + D + 6 * H, T + D + 9 * H)
    then = T + 4 * D
    assert hours(client, a, cid, mid, *window, as_of=then)[1] == [130.0, 131.0, 132.0]
    # Between the corrections: 200 at T + D and the still live 148 at T + 2D.
    mid_way = hours(client, a, cid, mid, *window, as_of=T + 5 * D + 1)[1]
    assert mid_way == pytest.approx([200 - 52 * 6 / 24, 200 - 52 * 7 / 24, 200 - 52 * 8 / 24])
    # Now: no reading after T + D, so nothing to interpolate.
    assert hours(client, a, cid, mid, *window) == ([], [])
    raw = get(client, a.headers, cid, mid, m, T, T + 3 * D, as_of=then)["data"]
    assert raw["value"] == [100.0, 124.0, 148.0]
    last = get(client, a.headers, cid, mid, m, T, T + 3 * D, get_last=True, as_of=then)["data"]
    assert last["value"] == [100.0, 124.0, 148.0]
    assert get(client, a.headers, cid, mid, m, T, T + 3 * D, get_last=True)["data"]["value"] == [
        100.0,
        200.0,
    ]
    for url, last_key in ((MANY, "last_acq"), (LEGACY, "get_last")):
        body = [
            item(cid, mid, *window, delta_t=60, as_of=then),
            item(cid, mid, T, T + 3 * D, as_of=then, **{last_key: True}),
            item(cid, mid, T, T + 3 * D, **{last_key: True}),
        ]
        res = client.post(url, json=body, headers=a.headers)
        assert res.status_code == 200, res.text
        got = [r["data"]["value"] for r in res.json()]
        assert got == [[130.0, 131.0, 132.0], [100.0, 124.0, 148.0], [100.0, 200.0]]


@pytest.mark.parametrize("as_of", [2**62 + 1, -(2**62) - 1, 2**70])
def test_as_of_beyond_the_time_range_is_422_naming_it(
    client: TestClient, owner: tuple[int, int, Actor], as_of: int
) -> None:
    """as_of has the bounds of since and till (the chart route echoed 2**70 into a 500)."""
    cid, mid, a = owner
    m = moid("A+")
    url = f"/api/sensors/{cid}.{mid}/signals/{m}/data"
    res = client.get(url, params={"since": T, "till": T + D, "as_of": as_of}, headers=a.headers)
    assert res.status_code == 422, res.text
    assert res.json()["detail"][0]["loc"] == ["query", "as_of"]
    for path in (MANY, LEGACY):
        body = [item(cid, mid, T, T + D), item(cid, mid, T, T + D, as_of=as_of)]
        res = client.post(path, json=body, headers=a.headers)
        assert res.status_code == 422, res.text
        assert res.json()["detail"][0]["loc"] == ["body", 1, "as_of"]
    edge = get(client, a.headers, cid, mid, m, T, T + D, as_of=2**62)  # the bound itself reads
    assert edge["data"]["time"] == []


def test_as_of_is_documented_in_openapi(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    get_op = spec["paths"]["/api/sensors/{client_cid}.{sensor_mid}/signals/{signal_type_moid}/data"]
    params = {p["name"]: p for p in get_op["get"]["parameters"]}
    assert "acquired before" in params["as_of"]["description"]
    for path in (MANY, LEGACY):
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert "as_of" in schema["schema"]["items"]["properties"]


# --- 15. meter swaps that lack a reading ------------------------------------------------------


def test_swap_without_value_for_till_continues_from_the_last_reading(
    client: TestClient, db: Database, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    m = moid("A+")
    make_state(db, mid, T, T + D, readings={m: (0.0, None)})
    make_state(db, mid, T + D, None, readings={m: (0.0, None)})
    # Meter 1 counts to 50, meter 2 starts again at 0.
    put(
        client,
        a.headers,
        cid,
        mid,
        m,
        {"time": [T, T + 12 * H, T + D, T + D + 12 * H], "value": [0, 50, 0, 10]},
    )
    whole = get(client, a.headers, cid, mid, m, T, T + 2 * D, get_last=True)
    assert whole["data"]["value"] == [0.0, 50.0, 50.0, 60.0]  # never drops at the swap
    (warning,) = whole["warnings"]
    assert "value_for_till" in warning
    assert f"50 at {T + 12 * H}" in warning
    # The same values in a window of the second meter alone: read from the store, not the window.
    later = get(client, a.headers, cid, mid, m, T + D, T + 2 * D, get_last=True)
    assert later["data"]["value"] == [50.0, 60.0]
    assert later["warnings"] == whole["warnings"]
    # Consumption never negative across the swap.
    buckets = get(client, a.headers, cid, mid, m, T, T + D + 12 * H + 1, delta_t=360)["data"]
    assert buckets["value"] == sorted(buckets["value"])
    # raw: as the meters read them, nothing assumed.
    raw = get(client, a.headers, cid, mid, m, T, T + 2 * D, get_last=True, raw=True)
    assert raw["data"]["value"] == [0.0, 50.0, 0.0, 10.0]
    assert "warnings" not in raw
    # Before the swap nothing is shifted, so nothing is said.
    early = get(client, a.headers, cid, mid, m, T, T + 13 * H, get_last=True)
    assert "warnings" not in early


def test_swap_warnings_reach_the_multi_series_post(
    client: TestClient, db: Database, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    m = moid("A+")
    make_state(db, mid, T, T + D, readings={m: (0.0, None)})
    make_state(db, mid, T + D, T + 2 * D)  # no signal state for A+: not stitched
    make_state(db, mid, T + 2 * D, None, readings={m: (0.0, None)})
    times = [T + H, T + D + H, T + 2 * D + H]
    put(client, a.headers, cid, mid, m, {"time": times, "value": [7, 3, 1]})
    res = client.post(
        MANY,
        json=[
            item(cid, mid, T, T + 3 * D, last_acq=True),
            item(cid, mid, T, T + 3 * D, last_acq=True, raw=True),
        ],
        headers=a.headers,
    )
    assert res.status_code == 200, res.text
    stitched, raw = res.json()
    # Meter 1 stopped at its last reading (7); the middle period is left as read and the
    # chain goes on past it from meter 1.
    assert stitched["data"]["value"] == [7.0, 3.0, 8.0]
    assert len(stitched["warnings"]) == 2
    assert any("no value_for_since" in w for w in stitched["warnings"])
    assert "warnings" not in raw


def test_swap_with_both_readings_says_nothing(
    client: TestClient, db: Database, owner: tuple[int, int, Actor]
) -> None:
    cid, mid, a = owner
    m = moid("A+")
    make_state(db, mid, T, T + D, readings={m: (0.0, 60.0)})
    make_state(db, mid, T + D, None, readings={m: (0.0, None)})
    put(client, a.headers, cid, mid, m, {"time": [T, T + 12 * H, T + D + H], "value": [0, 50, 5]})
    body = get(client, a.headers, cid, mid, m, T, T + 2 * D, get_last=True)
    assert body["data"]["value"] == [0.0, 50.0, 65.0]
    assert "warnings" not in body


def test_assumed_swap_reading_is_scaled_by_its_meters_ratio(
    client: TestClient, db: Database, owner: tuple[int, int, Actor]
) -> None:
    """The assumed value_for_till is the old meter's raw reading, scaled by the old meter's
    ratio like a given one, so the chain stays right across transformer ratios."""
    cid, mid, a = owner
    m = moid("A+")
    make_state(db, mid, T, T + D, info={"multiplier": 40}, readings={m: (0.0, None)})
    make_state(db, mid, T + D, None, info={"multiplier": 1}, readings={m: (2.0, None)})
    put(
        client, a.headers, cid, mid, m, {"time": [T + H, T + 2 * H, T + D + H], "value": [1, 5, 12]}
    )
    body = get(client, a.headers, cid, mid, m, T, T + 2 * D, get_last=True, apply_multiplier=True)
    assert body["data"]["value"] == [40.0, 200.0, 210.0]
    assert len(body["warnings"]) == 1


def test_missing_value_for_till_before_an_unstitched_period_is_not_assumed(
    client: TestClient, db: Database, owner: tuple[int, int, Actor]
) -> None:
    """A value_for_till only shifts later stitched periods: with none after it, nothing is
    assumed (only the unstitched period is reported)."""
    cid, mid, a = owner
    m = moid("A+")
    make_state(db, mid, T, T + D, readings={m: (0.0, None)})
    make_state(db, mid, T + D, None)  # no signal state for A+
    put(client, a.headers, cid, mid, m, {"time": [T + H, T + D + H], "value": [7, 3]})
    body = get(client, a.headers, cid, mid, m, T, T + 2 * D, get_last=True)
    assert body["data"]["value"] == [7.0, 3.0]
    (warning,) = body["warnings"]
    assert "no value_for_since" in warning
