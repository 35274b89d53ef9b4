"""GET /api/sensors/{cid}.{mid}/signals/{moid}/chart: min/max reduction that keeps every peak,
origins apart, counters as energy per bucket, as_of, summary, tenancy and bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from besmart_server.server.db import Database
from tests.api.signal_helpers import MIN, make_sensor, make_state, moid, put
from tests.factories import make_tenant

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
HOUR = 3_600_000
DAY = 86_400_000


def chart(
    client: TestClient, headers: dict[str, str], cid: int, mid: int, m: int, **params: Any
) -> dict[str, Any]:
    res = client.get(f"/api/sensors/{cid}.{mid}/signals/{m}/chart", params=params, headers=headers)
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return body


def test_large_window_is_min_max_reduced_and_keeps_the_peaks(
    client: TestClient, db: Database
) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    n = 2 * 1440  # two days of 1-minute power
    t = T0 + np.arange(n, dtype=np.int64) * MIN
    v = np.sin(np.arange(n) / 50.0)
    v[1234] = 50.0  # a one-minute spike
    v[2000] = -30.0  # and a dip
    put(client, actor.headers, cid, mid, moid("P+"), {"time": t.tolist(), "value": v.tolist()})
    body = chart(
        client, actor.headers, cid, mid, moid("P+"), since=T0, till=T0 + 2 * DAY, max_points=200
    )
    assert body["mode"] == "minmax"
    (s,) = body["series"]
    assert s["origin"] == 1
    assert s["points"] == n
    assert len(s["time"]) <= 200
    assert s["time"] == sorted(s["time"])
    assert 50.0 in s["value"]
    assert -30.0 in s["value"]
    assert s["time"][s["value"].index(50.0)] == int(t[1234])  # at the time it happened
    assert body["summary"]["max"] == 50.0
    assert body["summary"]["min"] == -30.0
    assert body["summary"]["count"] == n
    # a window that fits is sent raw
    raw = chart(
        client, actor.headers, cid, mid, moid("P+"), since=T0, till=T0 + 60 * MIN, max_points=200
    )
    assert raw["mode"] == "raw"
    assert raw["series"][0]["time"] == t[:60].tolist()


def test_origins_come_apart(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    put(
        client,
        actor.headers,
        cid,
        mid,
        moid("P+"),
        {"time": [T0, T0 + MIN, T0, T0 + MIN], "value": [1, 2, 10, 20], "origin": [1, 1, 2, 2]},
    )
    body = chart(client, actor.headers, cid, mid, moid("P+"), since=T0, till=T0 + DAY)
    assert [(s["origin"], s["origin_name"], s["value"]) for s in body["series"]] == [
        (1, "measured", [1.0, 2.0]),
        (2, "predicted", [10.0, 20.0]),
    ]
    assert body["summary"]["mean"] == 1.5  # of the measured origin


def test_counter_is_energy_per_bucket_across_a_meter_swap(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    swap = T0 + 2 * 3_600_000
    a_plus = moid("A+")
    make_state(db, mid, T0, swap, readings={a_plus: (100.0, 102.0)})
    make_state(db, mid, swap, None, readings={a_plus: (0.0, None)})
    times = [T0 + i * 15 * MIN for i in range(17)]  # 4 h of 15-minute readings
    # 1 kWh per hour; the new meter starts again from 0 at the swap
    values = [
        100 + i * 0.25 if times[i] < swap else (times[i] - swap) / 3_600_000 for i in range(17)
    ]
    put(client, actor.headers, cid, mid, a_plus, {"time": times, "value": values})
    body = chart(
        client, actor.headers, cid, mid, a_plus, since=T0, till=T0 + 4 * 3_600_000, max_points=8
    )
    assert body["mode"] == "energy"
    assert body["bucket_ms"] == 60 * MIN
    (s,) = body["series"]
    assert s["time"] == [T0 + h * 3_600_000 for h in range(4)]
    assert np.allclose(s["value"], [1.0, 1.0, 1.0, 1.0])  # stitched: no drop at the swap
    assert np.isclose(body["summary"]["sum"], 4.0)
    register = chart(
        client, actor.headers, cid, mid, a_plus, since=T0, till=T0 + 4 * 3_600_000, register="true"
    )
    assert register["mode"] == "raw"
    assert np.isclose(register["series"][0]["value"][-1], 103.75)  # at 03:45, stitched


def test_as_of_draws_the_data_as_it_was_known(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    m = moid("P+")
    put(client, actor.headers, cid, mid, m, {"time": [T0], "value": [1.0], "acq_time": [T0 + 10]})
    put(client, actor.headers, cid, mid, m, {"time": [T0], "value": [7.0], "acq_time": [T0 + 20]})
    latest = chart(client, actor.headers, cid, mid, m, since=T0, till=T0 + DAY)
    assert latest["series"][0]["value"] == [7.0]
    then = chart(client, actor.headers, cid, mid, m, since=T0, till=T0 + DAY, as_of=T0 + 15)
    assert then["series"][0]["value"] == [1.0]
    assert then["as_of"] == T0 + 15


def test_bad_input_is_422_and_other_tenants_404(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    other_cid, other = make_tenant(db)
    url = f"/api/sensors/{cid}.{mid}/signals/{moid('P+')}/chart"
    res = client.get(
        url, params={"since": T0, "till": T0 + DAY, "max_points": 1}, headers=actor.headers
    )
    assert res.status_code == 422
    assert res.json()["detail"][0]["loc"] == ["query", "max_points"]
    res = client.get(url, params={"since": T0 + DAY, "till": T0}, headers=actor.headers)
    assert res.status_code == 422
    res = client.get(url, params={"since": T0, "till": T0 + DAY}, headers=other.headers)
    assert res.status_code == 404
    assert client.get(url, params={"since": T0, "till": T0 + DAY}).status_code == 401
    assert other_cid != cid


def test_completeness_per_day_and_gaps(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    q = 15 * MIN
    t = np.arange(T0, T0 + 2 * DAY, q, dtype=np.int64)
    t = t[(t < T0 + DAY + 6 * 3_600_000) | (t >= T0 + DAY + 12 * 3_600_000)]
    put(client, actor.headers, cid, mid, moid("P+"), {"time": t.tolist(), "value": [1.0] * len(t)})
    put(
        client,
        actor.headers,
        cid,
        mid,
        moid("P+"),
        {"time": [T0 + DAY + 7 * 3_600_000], "value": [9.0], "origin": [2]},
    )  # predicted
    url = f"/api/sensors/{cid}.{mid}/signals/{moid('P+')}/completeness"
    res = client.get(url, params={"since": T0, "till": T0 + 2 * DAY}, headers=actor.headers)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["step_ms"] == q
    assert body["days"]["count"] == [96, 72]  # the predicted point does not fill the gap
    assert body["days"]["expected"] == [96, 96]
    assert body["gaps"] == [
        {"since": T0 + DAY + 6 * 3_600_000, "till": T0 + DAY + 12 * 3_600_000, "missing": 24}
    ]
    # in a time zone the days are local: Warsaw's first day of the window ends at 23:00Z
    local = {"since": T0 - HOUR, "till": T0 + 2 * DAY - HOUR, "tz": "Europe/Warsaw"}
    body = client.get(url, params=local, headers=actor.headers).json()
    assert body["tz"] == "Europe/Warsaw"
    assert body["days"]["day"] == [T0 - HOUR, T0 + DAY - HOUR]
    assert body["days"]["count"] == [92, 72]  # 23:00-00:00Z before T0 holds no point
    bad = client.get(url, params={**local, "tz": "Mars/Olympus"}, headers=actor.headers)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "tz"]
    other_cid, other = make_tenant(db)
    res = client.get(url, params={"since": T0, "till": T0 + DAY}, headers=other.headers)
    assert res.status_code == 404
    assert other_cid != cid


def test_forecast_against_measured_mae_rmae_and_skill(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    hour = 3_600_000
    since, till = T0 + 7 * DAY, T0 + 10 * DAY
    t = np.arange(T0, till, hour, dtype=np.int64)  # a week of history before the window
    v = (np.arange(len(t)) % 5).astype(float)
    put(client, actor.headers, cid, mid, moid("P+"), {"time": t.tolist(), "value": v.tolist()})
    inside = t >= since
    pred = v[inside] + 0.25
    put(
        client,
        actor.headers,
        cid,
        mid,
        moid("P+"),
        {"time": t[inside].tolist(), "value": pred.tolist(), "origin": [2] * int(inside.sum())},
    )
    body = chart(client, actor.headers, cid, mid, moid("P+"), since=since, till=till)
    fc = body["forecast"]
    assert fc["compared"] == 72
    assert np.isclose(fc["mae"], 0.25)
    a = v[inside]
    assert np.isclose(fc["rmae"], 0.25 / (np.percentile(a, 99) - np.percentile(a, 1)))
    naive_1d = np.abs(a - v[np.flatnonzero(inside) - 24]).mean()
    assert np.isclose(fc["skill_1d"], 1 - 0.25 / naive_1d)
    # no predicted origin: no forecast figures
    only = chart(client, actor.headers, cid, mid, moid("P+"), since=T0, till=T0 + DAY)
    assert only["forecast"] is None


def test_what_the_read_assumed_comes_as_warnings(client: TestClient, db: Database) -> None:
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    swap = T0 + 2 * 3_600_000
    a_plus = moid("A+")
    # a meter swap without the old meter's reading at removal
    make_state(db, mid, T0, swap, readings={a_plus: (100.0, None)})
    make_state(db, mid, swap, None, readings={a_plus: (0.0, None)})
    times = [T0 + i * 15 * MIN for i in range(16)]
    values = [100 + i * 0.25 if t < swap else (t - swap) / 3_600_000 for i, t in enumerate(times)]
    put(client, actor.headers, cid, mid, a_plus, {"time": times, "value": values})
    body = chart(client, actor.headers, cid, mid, a_plus, since=T0, till=T0 + 4 * 3_600_000)
    data = client.get(
        f"/api/sensors/{cid}.{mid}/signals/{a_plus}/data",
        params={"since": T0, "till": T0 + 4 * 3_600_000, "get_last": "true"},
        headers=actor.headers,
    ).json()
    assert data.get("warnings")  # the data route assumed a reading at the swap
    assert body["warnings"] == data["warnings"]


def test_counter_energy_and_summary_keep_15_significant_digits(
    client: TestClient, db: Database
) -> None:
    """Energy per bucket is a difference of registers and the summary's mean and sum are
    computed: 15 significant digits, as every computed value (issue #14, item 21); the chart
    sent 0.19999999999999998 for 0.3 - 0.1."""
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    q = 15 * MIN
    registers = [0.1, 0.3, 0.6, 1.0, 1.1, 1.3, 1.6, 1.9]
    times = [T0 + i * q for i in range(len(registers))]
    put(client, actor.headers, cid, mid, moid("A+"), {"time": times, "value": registers})
    body = chart(client, actor.headers, cid, mid, moid("A+"), since=T0, till=T0 + 2 * 3_600_000)
    (s,) = body["series"]
    assert s["value"] == [0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.3]
    assert body["summary"] == {
        "count": 7,
        "mean": 0.257142857142857,
        "min": 0.1,
        "max": 0.4,
        "sum": 1.8,
    }


def test_windows_at_the_edges_of_time_never_answer_5xx(client: TestClient, db: Database) -> None:
    """Every window within ±2**62 ms is drawn (a counter's padding stays in the range, its
    buckets stay at most max_points/2, however long the window); an as_of outside it is a 422
    (the answer echoes it: orjson cannot write an integer beyond 64 bits, a 500); a
    completeness over more days than max_window_days is a 413 (a row per day)."""
    cid, actor = make_tenant(db)
    mid = make_sensor(db, cid)
    times = [T0 + i * 15 * MIN for i in range(8)]
    for sym in ("P+", "A+"):
        put(
            client,
            actor.headers,
            cid,
            mid,
            moid(sym),
            {"time": times, "value": [1.0 * i for i in range(8)]},
        )
    lo, hi = -(2**62), 2**62
    for sym in ("P+", "A+"):
        for max_points in (2, 2000):
            body = chart(
                client, actor.headers, cid, mid, moid(sym), since=lo, till=hi, max_points=max_points
            )
            assert body["series"][0]["points"] == 8
            assert len(body["series"][0]["time"]) <= max_points
        url = f"/api/sensors/{cid}.{mid}/signals/{moid(sym)}"
        for tail in ("chart", "completeness"):
            for as_of in (2**62 + 1, -(2**62) - 1, 2**70):
                res = client.get(
                    f"{url}/{tail}",
                    params={"since": T0, "till": T0 + DAY, "as_of": as_of},
                    headers=actor.headers,
                )
                assert res.status_code == 422, res.text
                assert res.json()["detail"][0]["loc"] == ["query", "as_of"]
        res = client.get(
            f"{url}/completeness", params={"since": lo, "till": hi}, headers=actor.headers
        )
        assert res.status_code == 413, res.text
        assert "max_window_days" in res.json()["detail"]
        res = client.get(
            f"{url}/completeness", params={"since": lo - 1, "till": T0}, headers=actor.headers
        )
        assert res.status_code == 422, res.text
        assert res.json()["detail"][0]["loc"] == ["query", "since"]
