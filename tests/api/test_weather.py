"""GET /api/weather/{lat}/{lon}/{moid}/data: auth, grid lookup, IDW, versions, units, GHI_CS."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from besmart_server.server.db import Database
from besmart_server.server.signals.service import DELTA_T_MAX
from besmart_server.server.users import service as users
from besmart_server.server.weather import service
from besmart_server.server.weather.grid import haversine_km
from besmart_server.server.weather.providers import (
    ORIGIN_FORECAST,
    ORIGIN_MODEL,
    ProviderResult,
    ProviderSeries,
)
from tests.factories import make_client, make_user

H = 3_600_000
M = 60_000
T0 = 1_718_928_000_000  # 2024-06-21T00:00Z
T_AIR, GHI, GHI_CS, PRECIP, A_PLUS = 139, 1031, 1034, 1046, 32
K, DEG_C, W = 21, 22, 1  # unit ids
A = (50.0, 20.0)
B = (50.0, 20.5)


def series(values: list[float], *, step: int = H, origin: int = ORIGIN_MODEL, acq: int = 1) -> Any:
    times = np.array([T0 + i * step for i in range(len(values))], dtype=np.int64)
    return ProviderSeries(times, np.array(values, dtype=np.float64), origin, acq)


def run(lat: float, lon: float, **by_symbol: Any) -> ProviderResult:
    return ProviderResult(by_symbol, lat=lat, lon=lon, source="test")


def load(db: Database, result: ProviderResult) -> service.ImportSummary:
    with db.transaction() as conn:
        return service.import_weather(conn, result)


@pytest.fixture
def api_key(db: Database) -> dict[str, str]:
    cid = make_client(db)
    with db.transaction() as conn:
        key = users.create_api_key(conn, client_cid=cid, name="weather test")
    return {"X-Auth": key}


@pytest.fixture
def grid(db: Database) -> None:
    """Two grid points 35.8 km apart: A hourly 280..283 K, B 290..293 K; B lacks hour 2."""
    load(db, run(*A, T_AIR=series([280.0, 281.0, 282.0, 283.0])))
    b = series([290.0, 291.0, 293.0])
    b = ProviderSeries(b.time[[0, 1, 2]] + np.array([0, 0, H]), b.value, b.origin, b.acq_time)
    load(db, run(*B, T_AIR=b))


def url(lat: float | str, lon: float | str, moid: int) -> str:
    return f"/api/weather/{lat}/{lon}/{moid}/data"


def get(
    client: TestClient, headers: dict[str, str], lat: Any, lon: Any, moid: int, **params: Any
) -> dict[str, Any]:
    params = {"since": T0, "till": T0 + 4 * H, **params}
    r = client.get(url(lat, lon, moid), params=params, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# --- authentication ---------------------------------------------------------------------------


@pytest.mark.usefixtures("grid")
def test_api_key_reads_an_exact_grid_point(client: TestClient, api_key: dict[str, str]) -> None:
    body = get(client, api_key, *A, T_AIR)
    assert body["client_cid"] is None
    assert body["sensor_mid"] is None
    assert body["signal_type_moid"] == T_AIR
    assert body["unit"] == "K"
    assert body["data"]["time"] == [T0 + i * H for i in range(4)]
    assert body["data"]["value"] == [280.0, 281.0, 282.0, 283.0]
    assert body["data"]["origin"] == [ORIGIN_MODEL] * 4
    assert body["data"]["type"] == ["DBL"] * 4
    assert body["data"]["acq_time"] == [1] * 4
    assert body["time_tstorage"] >= 0
    assert body["time_other"] >= 0


@pytest.mark.usefixtures("grid")
def test_bearer_token_reads_too(client: TestClient, db: Database) -> None:
    actor = make_user(db)  # no role anywhere: weather is shared data
    body = get(client, actor.headers, *B, T_AIR)
    assert body["data"]["value"] == [290.0, 291.0, 293.0]


@pytest.mark.usefixtures("grid")
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Auth": "bsk_not-a-key"}, {"Authorization": "Bearer nope"}],
    ids=["neither", "bad-key", "bad-token"],
)
def test_401_without_valid_credentials(client: TestClient, headers: dict[str, str]) -> None:
    r = client.get(url(*A, T_AIR), params={"since": T0, "till": T0 + H}, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"detail": "Not valid authentication credentials"}
    assert r.headers["WWW-Authenticate"] == "Bearer"


# --- interpolation ----------------------------------------------------------------------------


@pytest.mark.usefixtures("grid")
def test_between_points_inverse_distance(client: TestClient, api_key: dict[str, str]) -> None:
    lat, lon = 50.0, 20.1
    da = float(haversine_km(lat, lon, *A))
    db_ = float(haversine_km(lat, lon, *B))
    wa = (1 / da**2) / (1 / da**2 + 1 / db_**2)
    body = get(client, api_key, lat, lon, T_AIR)
    assert body["data"]["time"] == [T0 + i * H for i in range(4)]
    expected = [
        wa * 280 + (1 - wa) * 290,
        wa * 281 + (1 - wa) * 291,
        282.0,  # B has no value at hour 2: A alone
        wa * 283 + (1 - wa) * 293,
    ]
    assert body["data"]["value"] == pytest.approx(expected, abs=1e-9)
    assert wa == pytest.approx(16 / 17, abs=0.01)  # 1:4 distances → 16:1 weights


@pytest.mark.usefixtures("grid")
def test_outside_the_radius_is_404(client: TestClient, api_key: dict[str, str]) -> None:
    r = client.get(url(10, 10, T_AIR), params={"since": T0, "till": T0 + H}, headers=api_key)
    assert r.status_code == 404
    assert r.json() == "No weather grid point within 50 km of (10, 10)"
    # 0.7° south of A is 77.8 km away: beyond the default 50 km
    r = client.get(url(49.3, 20, T_AIR), params={"since": T0, "till": T0 + H}, headers=api_key)
    assert r.status_code == 404


def test_no_weather_at_all_is_404(client: TestClient, api_key: dict[str, str]) -> None:
    r = client.get(url(*A, T_AIR), params={"since": T0, "till": T0 + H}, headers=api_key)
    assert r.status_code == 404


def test_radius_and_neighbours_are_settings(
    db: Database, grid: None, api_key: dict[str, str]
) -> None:
    from fastapi.testclient import TestClient as Client

    from besmart_server.server.app import create_app
    from besmart_server.server.config import Settings

    settings = Settings(
        database_url=db.engine.url.render_as_string(hide_password=False),
        demo=False,
        weather_radius_km=100,
        weather_neighbours=1,
    )
    with Client(create_app(settings)) as c:
        body = get(c, api_key, 49.7, 20.5, T_AIR)  # 33 km from B, 38 km from A: B alone
        assert body["data"]["value"] == [290.0, 291.0, 293.0]
        r = c.get(url(49.3, 20, T_AIR), params={"since": T0, "till": T0 + H}, headers=api_key)
        assert r.status_code == 200


def test_across_the_date_line(db: Database, client: TestClient, api_key: dict[str, str]) -> None:
    load(db, run(-16.5, 179.9, T_AIR=series([300.0])))
    load(db, run(-16.5, -179.9, T_AIR=series([302.0])))
    body = get(client, api_key, -16.5, 180, T_AIR, till=T0 + H)
    assert body["data"]["value"] == pytest.approx([301.0])
    body = get(client, api_key, -16.5, -180, T_AIR, till=T0 + H)
    assert body["data"]["value"] == pytest.approx([301.0])


# --- the signal read's parameters ---------------------------------------------------------------


@pytest.mark.usefixtures("grid")
@pytest.mark.parametrize("flag", ["true", "True", "1"])
def test_is_chart_gives_celsius(client: TestClient, api_key: dict[str, str], flag: str) -> None:
    body = get(client, api_key, *A, T_AIR, is_chart=flag)
    assert body["unit"] == "°C"
    assert body["data"]["value"] == pytest.approx([6.85, 7.85, 8.85, 9.85])


@pytest.mark.usefixtures("grid")
def test_output_unit(client: TestClient, api_key: dict[str, str]) -> None:
    body = get(client, api_key, 50.0, 20.1, T_AIR, output_unit_id=DEG_C, is_chart="False")
    kelvin = get(client, api_key, 50.0, 20.1, T_AIR)
    assert body["unit"] == "°C"
    assert body["data"]["value"] == pytest.approx(
        [v - 273.15 for v in kelvin["data"]["value"]], abs=1e-9
    )
    r = client.get(
        url(*A, T_AIR),
        params={"since": T0, "till": T0 + H, "output_unit_id": W},
        headers=api_key,
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "output_unit_id"]


def test_aggregation_delta_t_60(db: Database, client: TestClient, api_key: dict[str, str]) -> None:
    quarter = 15 * M
    load(
        db,
        run(
            *A,
            T_AIR=series([280, 281, 282, 283, 290, 290, 290, 294], step=quarter),
            PRECIP=series([0.5, 0.5, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0], step=quarter),
        ),
    )
    body = get(client, api_key, *A, T_AIR, delta_t=60, till=T0 + 2 * H)
    assert body["data"]["time"] == [T0, T0 + H]
    assert body["data"]["value"] == pytest.approx([281.5, 291.0])  # means
    body = get(client, api_key, *A, PRECIP, delta_t=60, till=T0 + 2 * H)
    assert body["unit"] == "mm"
    assert body["data"]["value"] == pytest.approx([2.0, 2.0])  # sums
    # interpolated and aggregated: A alone within reach of (50.0, 20.05)
    body = get(client, api_key, 50.0, 20.05, T_AIR, delta_t=60, till=T0 + 2 * H)
    assert body["data"]["value"] == pytest.approx([281.5, 291.0])


def test_forecast_runs_are_versions(
    db: Database, client: TestClient, api_key: dict[str, str]
) -> None:
    load(db, run(*A, T_AIR=series([280.0, 281.0], origin=ORIGIN_FORECAST, acq=1000)))
    load(db, run(*A, T_AIR=series([285.0, 286.0], origin=ORIGIN_FORECAST, acq=2000)))
    load(db, run(*A, T_AIR=series([279.0, 279.5], origin=ORIGIN_MODEL, acq=1500)))
    every = get(client, api_key, *A, T_AIR, till=T0 + 2 * H)
    assert every["data"]["value"] == [280.0, 285.0, 279.0, 281.0, 286.0, 279.5]
    assert every["data"]["origin"] == [2, 2, 3, 2, 2, 3]
    assert every["data"]["acq_time"] == [1000, 2000, 1500, 1000, 2000, 1500]
    newest = get(client, api_key, *A, T_AIR, till=T0 + 2 * H, get_last="True")
    assert newest["data"]["value"] == [285.0, 279.0, 286.0, 279.5]
    forecast = get(client, api_key, *A, T_AIR, till=T0 + 2 * H, get_last="true", signal_origin_id=2)
    assert forecast["data"]["value"] == [285.0, 286.0]
    # re-importing a run (same acq_time) replaces it rather than adding a version
    load(db, run(*A, T_AIR=series([285.5, 286.5], origin=ORIGIN_FORECAST, acq=2000)))
    again = get(client, api_key, *A, T_AIR, till=T0 + 2 * H, signal_origin_id=2)
    assert again["data"]["value"] == [280.0, 285.5, 281.0, 286.5]


def test_interpolation_uses_newest_versions(
    db: Database, client: TestClient, api_key: dict[str, str]
) -> None:
    load(db, run(*A, T_AIR=series([280.0], acq=1)))
    load(db, run(*A, T_AIR=series([284.0], acq=2)))
    load(db, run(*B, T_AIR=series([290.0], acq=3)))
    body = get(client, api_key, 50.0, 20.25, T_AIR, till=T0 + H)  # the midpoint
    assert body["data"]["value"] == pytest.approx([287.0])
    assert body["data"]["acq_time"] == [3]


# --- GHI_CS -------------------------------------------------------------------------------------


def test_clear_sky_anywhere_without_data(client: TestClient, api_key: dict[str, str]) -> None:
    body = get(client, api_key, -33.92, 18.42, GHI_CS, till=T0 + 24 * H, delta_t=60)
    assert body["unit"] == "W/m2"
    assert body["data"]["time"] == [T0 + i * H for i in range(24)]
    assert set(body["data"]["origin"]) == {3}
    values = body["data"]["value"]
    assert values[0] == 0.0  # 02:00 local: night
    assert 300 < max(values) < 700  # a southern-winter noon
    raw = get(client, api_key, -33.92, 18.42, GHI_CS, till=T0 + H)
    assert len(raw["data"]["time"]) == 4  # every 15 minutes
    kw = get(client, api_key, 50.06, 19.94, GHI_CS, since=T0 + 10 * H, till=T0 + 11 * H)
    kw2 = get(
        client,
        api_key,
        50.06,
        19.94,
        GHI_CS,
        since=T0 + 10 * H,
        till=T0 + 11 * H,
        output_unit_id=25,
    )
    assert kw2["unit"] == "kW/m2"
    assert kw2["data"]["value"] == pytest.approx([v / 1000 for v in kw["data"]["value"]])
    none = get(client, api_key, 0, 0, GHI_CS, signal_origin_id=1)
    assert none["data"]["value"] == []


# --- 404 and 422 ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("grid")
def test_not_a_weather_signal_is_404(client: TestClient, api_key: dict[str, str]) -> None:
    for moid in (A_PLUS, 999_999):
        r = client.get(url(*A, moid), params={"since": T0, "till": T0 + H}, headers=api_key)
        assert r.status_code == 404
        assert r.json() == f"Signal type {moid} is not a weather signal"


@pytest.mark.parametrize(
    ("lat", "lon", "params", "where"),
    [
        (90.5, 0, {}, ["path", "lat"]),
        (-91, 0, {}, ["path", "lat"]),
        (0, 180.01, {}, ["path", "lon"]),
        (0, -181, {}, ["path", "lon"]),
        ("north", 0, {}, ["path", "lat"]),
        (0, "east", {}, ["path", "lon"]),
        ("nan", 0, {}, ["path", "lat"]),
        (0, "inf", {}, ["path", "lon"]),
        (0, 0, {"since": T0 + H, "till": T0}, ["query", "since"]),
        (0, 0, {"delta_t": 0}, ["query", "delta_t"]),
        (0, 0, {"delta_t": 2**53}, ["query", "delta_t"]),  # its ms overflow int64
        (0, 0, {"signal_origin_id": 9}, ["query", "signal_origin_id"]),
        (0, 0, {"since": "yesterday"}, ["query", "since"]),
    ],
    ids=[
        "lat>90",
        "lat<-90",
        "lon>180",
        "lon<-180",
        "lat-text",
        "lon-text",
        "lat-nan",
        "lon-inf",
        "since>=till",
        "delta_t=0",
        "delta_t-overflow",
        "origin",
        "since-text",
    ],
)
def test_422(
    client: TestClient,
    api_key: dict[str, str],
    lat: Any,
    lon: Any,
    params: dict[str, Any],
    where: list[str],
) -> None:
    query = {"since": T0, "till": T0 + H, **params}
    r = client.get(url(lat, lon, T_AIR), params=query, headers=api_key)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == where


def test_float_times_are_floored(db: Database, client: TestClient, api_key: dict[str, str]) -> None:
    load(db, run(*A, T_AIR=series([280.0, 281.0])))
    # since floors to T0 (included), till to T0 + H (excluded: half-open)
    body = get(client, api_key, *A, T_AIR, since=T0 + 0.9, till=T0 + H + 0.5)
    assert body["data"]["time"] == [T0]


@pytest.mark.usefixtures("grid")
@pytest.mark.parametrize("delta_t", [2**53, 2**63, 10**30])
def test_delta_t_beyond_64_bit_ms_is_422_with_data(
    client: TestClient, api_key: dict[str, str], delta_t: int
) -> None:
    # With points to aggregate, the bucket arithmetic overflowed (500) before the bound.
    r = client.get(
        url(*A, T_AIR),
        params={"since": T0, "till": T0 + 4 * H, "delta_t": delta_t},
        headers=api_key,
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "delta_t"]
    # The largest accepted delta_t still aggregates: one bucket holding the window's mean.
    got = get(client, api_key, *A, T_AIR, delta_t=DELTA_T_MAX)
    assert got["data"]["value"] == [281.5]


@pytest.mark.parametrize(
    ("since", "till", "params"),
    [
        (-(2**62), -(2**62) + 24 * H, {"delta_t": 60}),  # year -146 million: a 500 before
        (2**62 - 24 * H, 2**62 - 1, {}),
        (-(2**62), -(2**62) + 24 * H, {"delta_t": 1440, "tz": "Europe/Warsaw"}),
    ],
)
def test_clear_sky_beyond_computable_times_is_empty(
    client: TestClient, api_key: dict[str, str], since: int, till: int, params: dict[str, Any]
) -> None:
    """Any window within ±2**62 ms may be asked for; GHI_CS has no points where pandas and
    pvlib cannot hold the time (before 1677, after 2262)."""
    body = get(client, api_key, 50.06, 19.94, GHI_CS, since=since, till=till, **params)
    assert body["data"]["time"] == []


def test_clear_sky_window_across_the_computable_edge(
    client: TestClient, api_key: dict[str, str]
) -> None:
    """A window from far in the past into 1677 answers the points it can compute, and they
    are the ones a window within the computable times gives."""
    first = -9_223_372_036_854 + 1  # ms: the first whole ms pandas holds (1677-09-21)
    day = -(-first // (24 * H)) * 24 * H  # the next UTC midnight
    wide = get(client, api_key, 50.06, 19.94, GHI_CS, since=-(2**62), till=day + 24 * H)
    narrow = get(client, api_key, 50.06, 19.94, GHI_CS, since=day, till=day + 24 * H)
    assert narrow["data"]["time"][0] == day
    assert wide["data"]["time"][-96:] == narrow["data"]["time"]
    assert wide["data"]["value"][-96:] == narrow["data"]["value"]
    assert max(narrow["data"]["value"]) > 0  # the sun rose over Kraków in 1677 too


def test_clear_sky_values_keep_15_significant_digits(
    client: TestClient, api_key: dict[str, str]
) -> None:
    """GHI_CS is computed, averaged and converted like a read's values and rounded like them
    (issue #14, item 21): kW/m2 are the W/m2 divided by 1000, without binary noise."""
    kw = get(client, api_key, 50.06, 19.94, GHI_CS, till=T0 + 24 * H, delta_t=60, output_unit_id=25)
    w = get(client, api_key, 50.06, 19.94, GHI_CS, till=T0 + 24 * H, delta_t=60)
    assert kw["data"]["value"] == [float(f"{v / 1000:.15g}") for v in w["data"]["value"]]
    assert all(v == float(f"{v:.15g}") for v in w["data"]["value"])
    assert max(w["data"]["value"]) > 500
