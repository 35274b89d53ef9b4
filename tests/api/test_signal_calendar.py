"""Calendar time through the HTTP routes: `tz` and `delta_t=month|quarter|year` on GET, on
the items of the multi-series POST and on the weather route, across Europe/Warsaw's DST days."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient

from besmart_server.schemas.users import Role
from besmart_server.server.db import Database
from besmart_server.server.users import service as users
from besmart_server.server.weather import service as weather
from besmart_server.server.weather.providers import ORIGIN_MODEL, ProviderResult, ProviderSeries
from tests.api.signal_helpers import Q, data_url, get, make_sensor, make_state, moid, put
from tests.factories import Actor, make_client, make_tenant

WAW = ZoneInfo("Europe/Warsaw")
H = 3_600_000
MANY = "/api/sensors/signals/data/v2"


def ms(y: int, m: int, d: int, hh: int = 0, tz: dt.tzinfo = WAW) -> int:
    return int(dt.datetime(y, m, d, hh, tzinfo=tz).timestamp() * 1000)


@pytest.fixture
def meter(client: TestClient, db: Database) -> tuple[int, int, Actor]:
    """Quarter-hour energy (EA+, 1 kWh each) and its register (A+, from 5000) over March and
    October 2026 in Warsaw, with a meter swap on 2026-10-10 whose new register starts at 0."""
    cid, actor = make_tenant(db, Role.write)
    mid = make_sensor(db, cid)
    swap = ms(2026, 10, 10, 12)
    # The old meter's reading at the swap, as a fitter would note it (see the register below).
    at_swap = 5000.0 + 10_000 + (swap - ms(2026, 10, 1)) // Q
    make_state(db, mid, ms(2026, 1, 1), swap, readings={moid("A+"): (5000.0, at_swap)})
    make_state(db, mid, swap, None, readings={moid("A+"): (0.0, None)})
    for first, last in ((ms(2026, 3, 1), ms(2026, 4, 2)), (ms(2026, 10, 1), ms(2026, 11, 2))):
        t = np.arange(first, last, Q, dtype=np.int64)
        put(
            client,
            actor.headers,
            cid,
            mid,
            moid("EA+"),
            {"time": t.tolist(), "value": [1] * len(t)},
        )
        # The register counts quarter hours: from 5000 in March, from 15000 in October.
        before = 0 if first == ms(2026, 3, 1) else 10_000
        count = before + np.arange(len(t))
        # The new meter reads 0 at the swap and counts on from there.
        reg = np.where(t < swap, 5000 + count, 5000 + count - at_swap)
        put(
            client, actor.headers, cid, mid, moid("A+"), {"time": t.tolist(), "value": reg.tolist()}
        )
    return cid, mid, actor


def test_local_days_across_both_changes(client: TestClient, meter: tuple[int, int, Actor]) -> None:
    cid, mid, a = meter
    for day, hours in (((2026, 3, 29), 23), ((2026, 10, 25), 25)):
        start = ms(*day)
        body = get(
            client, a.headers, cid, mid, moid("EA+"), start - 24 * H, start + (hours + 24) * H,
            delta_t=1440, tz="Europe/Warsaw",
        )  # fmt: skip
        assert body["tz"] == "Europe/Warsaw"
        assert body["data"]["time"] == [start - 86_400_000, start, start + hours * H]
        assert body["data"]["value"] == [96.0, hours * 4.0, 96.0]  # 92 and 100 quarter hours
        reg = get(
            client, a.headers, cid, mid, moid("A+"), start, start + hours * H + 1,
            delta_t=1440, tz="Europe/Warsaw",
        )["data"]  # fmt: skip
        # The register read at local midnight; the 23/25-hour day's energy is its difference.
        assert reg["time"] == [start, start + hours * H]
        assert reg["value"][1] - reg["value"][0] == hours * 4.0


def test_without_tz_nothing_changes(client: TestClient, meter: tuple[int, int, Actor]) -> None:
    cid, mid, a = meter
    start = ms(2026, 3, 29, tz=dt.UTC)
    body = get(client, a.headers, cid, mid, moid("EA+"), start, start + 86_400_000, delta_t=1440)
    assert "tz" not in body
    assert body["data"]["time"] == [start]
    assert body["data"]["value"] == [96.0]  # a UTC day is 24 hours, even on 29 March


def test_local_months_of_energy_and_register_across_a_swap(
    client: TestClient, meter: tuple[int, int, Actor]
) -> None:
    cid, mid, a = meter
    since, till = ms(2026, 3, 1), ms(2026, 11, 1) + 1
    energy = get(
        client, a.headers, cid, mid, moid("EA+"), since, till, delta_t="month", tz="Europe/Warsaw"
    )["data"]
    assert energy["time"] == [ms(2026, 3, 1), ms(2026, 4, 1), ms(2026, 10, 1), ms(2026, 11, 1)]
    # March has 31 days less an hour, October 31 days and an hour; the data run to 2 April,
    # and the window ends just after 1 November 00:00 (one quarter hour of November).
    assert energy["value"] == [(31 * 24 - 1) * 4.0, 96.0, (31 * 24 + 1) * 4.0, 1.0]
    reg = get(
        client, a.headers, cid, mid, moid("A+"), since, till, delta_t="month", tz="Europe/Warsaw"
    )["data"]
    assert reg["time"][0] == ms(2026, 3, 1)
    october = (
        reg["value"][reg["time"].index(ms(2026, 11, 1))]
        - reg["value"][reg["time"].index(ms(2026, 10, 1))]
    )
    assert october == (31 * 24 + 1) * 4.0  # the swap on 10 October is stitched over
    quarter = get(
        client, a.headers, cid, mid, moid("EA+"), since, till, delta_t="quarter", tz="Europe/Warsaw"
    )["data"]
    assert quarter["time"] == [ms(2026, 1, 1), ms(2026, 4, 1), ms(2026, 10, 1)]
    year = get(client, a.headers, cid, mid, moid("EA+"), since, till, delta_t="year")["data"]
    assert year["time"] == [ms(2026, 1, 1, tz=dt.UTC)]  # a UTC year without tz


def test_post_items_carry_their_own_tz(client: TestClient, meter: tuple[int, int, Actor]) -> None:
    cid, mid, a = meter
    start = ms(2026, 10, 25)
    item = {
        "client_cid": cid,
        "sensor_mid": mid,
        "signal_type_moid": moid("EA+"),
        "since": start,
        "till": start + 25 * H,
    }
    r = client.post(
        MANY,
        json=[
            {**item, "delta_t": 1440, "tz": "Europe/Warsaw"},
            {**item, "delta_t": 1440},
            {**item, "delta_t": "month", "tz": "Europe/Warsaw"},
        ],
        headers=a.headers,
    )
    assert r.status_code == 200, r.text
    local, utc, month = r.json()
    assert (local["tz"], local["data"]["time"], local["data"]["value"]) == (
        "Europe/Warsaw",
        [start],
        [100.0],
    )
    assert "tz" not in utc  # UTC days: 22:00-24:00 of the 24th, then the 25th until 23:00
    assert utc["data"]["time"] == [ms(2026, 10, 24, tz=dt.UTC), ms(2026, 10, 25, tz=dt.UTC)]
    assert utc["data"]["value"] == [8.0, 92.0]
    assert month["data"]["time"] == [ms(2026, 10, 1)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"delta_t": 1440, "tz": "Mars/Olympus"}, "tz"),
        ({"delta_t": 1440, "tz": "../../etc/passwd"}, "tz"),
        ({"delta_t": 7, "tz": "Europe/Warsaw"}, "delta_t"),
        ({"delta_t": "fortnight"}, "delta_t"),
    ],
)
def test_bad_zone_or_size_is_422(
    client: TestClient, meter: tuple[int, int, Actor], params: dict[str, Any], field: str
) -> None:
    cid, mid, a = meter
    r = client.get(
        data_url(cid, mid, moid("EA+"), v2=False),
        params={"since": ms(2026, 3, 1), "till": ms(2026, 3, 2), **params},
        headers=a.headers,
    )
    assert r.status_code == 422, r.text
    assert field in str(r.json())
    item = {
        "client_cid": cid,
        "sensor_mid": mid,
        "signal_type_moid": moid("EA+"),
        "since": ms(2026, 3, 1),
        "till": ms(2026, 3, 2),
        **params,
    }
    r = client.post(MANY, json=[item], headers=a.headers)
    assert r.status_code == 422, r.text


def test_weather_route_takes_tz(client: TestClient, db: Database) -> None:
    """Hourly air temperature at a grid point over Warsaw's 23-hour day: the local day's mean
    averages its 23 hours, at the point and between two points."""
    start = ms(2026, 3, 29)
    times = np.arange(start - 24 * H, start + 48 * H, H, dtype=np.int64)
    values = (times - start) / H  # the hour's index from local midnight
    for lon in (20.0, 20.5):
        with db.transaction() as conn:
            weather.import_weather(
                conn,
                ProviderResult(
                    {"T_AIR": ProviderSeries(times, values.astype(np.float64), ORIGIN_MODEL, 1)},
                    lat=50.0,
                    lon=lon,
                    source="test",
                ),
            )
    cid = make_client(db)
    with db.transaction() as conn:
        key = {"X-Auth": users.create_api_key(conn, client_cid=cid, name="tz")}
    for lon in (20.0, 20.25):
        r = client.get(
            f"/api/weather/50.0/{lon}/139/data",
            params={"since": start, "till": start + 23 * H, "delta_t": 1440, "tz": "Europe/Warsaw"},
            headers=key,
        )
        assert r.status_code == 200, r.text
        assert r.json()["tz"] == "Europe/Warsaw"
        assert r.json()["data"]["time"] == [start]
        assert r.json()["data"]["value"] == pytest.approx([sum(range(23)) / 23])
    r = client.get(
        "/api/weather/50.0/20.0/139/data",
        params={"since": start, "till": start + H, "delta_t": 60, "tz": "Nowhere/Land"},
        headers=key,
    )
    assert r.status_code == 422


def test_huge_sizes_with_tz_answer(client: TestClient, meter: tuple[int, int, Actor]) -> None:
    """A calendar bucket reaching past year 9999 ends there instead of failing the read."""
    cid, mid, a = meter
    since, till = ms(2020, 1, 1), ms(2030, 1, 1)  # within max_window_days
    for m in (moid("EA+"), moid("A+")):
        body = get(
            client, a.headers, cid, mid, m, since, till, delta_t=1440 * 10**10, tz="Europe/Warsaw"
        )
        assert len(body["data"]["time"]) == (1 if m == moid("EA+") else 0)
    kolkata = ZoneInfo("Asia/Kolkata")
    energy = get(
        client, a.headers, cid, mid, moid("EA+"), since, till, delta_t="year", tz=kolkata.key
    )
    assert energy["data"]["time"] == [ms(2026, 1, 1, tz=kolkata)]


def test_clear_sky_takes_calendar_buckets(client: TestClient, db: Database) -> None:
    """GHI_CS is computed, not stored: its buckets follow `tz` and `delta_t=month` too."""
    cid = make_client(db)
    with db.transaction() as conn:
        key = {"X-Auth": users.create_api_key(conn, client_cid=cid, name="cs")}
    params = {"since": ms(2026, 3, 1), "till": ms(2026, 4, 1), "tz": "Europe/Warsaw"}
    r = client.get(
        "/api/weather/50.06/19.94/1034/data", params={**params, "delta_t": "month"}, headers=key
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["time"] == [ms(2026, 3, 1)]
    r = client.get(
        "/api/weather/50.06/19.94/1034/data", params={**params, "delta_t": 1440}, headers=key
    )
    assert r.json()["data"]["time"][28:30] == [ms(2026, 3, 29), ms(2026, 3, 30)]
    assert len(r.json()["data"]["time"]) == 31
