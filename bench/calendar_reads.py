"""In-process cost of calendar buckets (issue 17): the same reads with and without `tz`.

    .venv/bin/python -m bench.calendar_reads                      # temporary SQLite file
    .venv/bin/python -m bench.calendar_reads postgresql://postgres@127.0.0.1:5432/test

Writes a year of 1-minute power (525,600 points) and ten years of 15-minute interval energy
(350,640 points), then reads them through the HTTP route (TestClient, no network):
`delta_t=1440` without and with `tz=Europe/Warsaw`, and `delta_t=month&tz=Europe/Warsaw`
over the ten years: the in-process side of `bench.run`'s rows 4b-4d (no peers, no server
process), from the blocks' summaries where a read can use them (README, "Calendar time").
On PostgreSQL a scratch database is made and dropped.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import orjson
from fastapi.testclient import TestClient

from bench.quick_signals import _prepare
from bench.scratch import scratch_database
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings

MIN = 60_000
YEAR_2025 = 1_735_686_000_000  # 2025-01-01 00:00 Europe/Warsaw
TEN_YEARS_FROM = 1_451_602_800_000  # 2016-01-01 00:00 Europe/Warsaw
TEN_YEARS_TILL = 1_767_222_000_000  # 2026-01-01 00:00 Europe/Warsaw
P_PLUS, EA_PLUS = 1001, 1011


def _put(client: TestClient, headers: dict[str, str], item: dict[str, Any], t: Any) -> None:
    for lo in range(0, len(t), 100_000):
        part = t[lo : lo + 100_000]
        values = ((part // MIN) % 97).astype(float) / 10
        body = [{**item, "data": {"time": part.tolist(), "value": values.tolist()}}]
        resp = client.put(
            "/api/sensors/signals/data/v2", content=orjson.dumps(body), headers=headers
        )
        assert resp.status_code == 200, resp.text


def _time(
    client: TestClient, headers: dict[str, str], url: str, params: dict[str, Any], reps: int
) -> tuple[float, float, int]:
    took = []
    for i in range(reps + 2):
        start = time.perf_counter()
        resp = client.get(url, params=params, headers=headers)
        if i >= 2:  # two warm-up reads
            took.append(time.perf_counter() - start)
        assert resp.status_code == 200, resp.text
    took.sort()
    p95 = took[min(len(took) - 1, round(0.95 * (len(took) - 1)))]
    return statistics.median(took) * 1000, p95 * 1000, len(resp.json()["data"]["time"])


def run(url: str, reps: int) -> None:
    cid, (power_mid, energy_mid), token = _prepare(url, 2)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    settings = Settings(database_url=url, demo=False, max_points_per_read=2_000_000)
    with TestClient(create_app(settings)) as client:
        minute = np.arange(YEAR_2025, YEAR_2025 + 525_600 * MIN, MIN, dtype=np.int64)
        _put(
            client,
            headers,
            {"client_cid": cid, "sensor_mid": power_mid, "signal_type_moid": P_PLUS},
            minute,
        )
        quarter = np.arange(
            TEN_YEARS_FROM, TEN_YEARS_FROM + 350_640 * 15 * MIN, 15 * MIN, dtype=np.int64
        )
        _put(
            client,
            headers,
            {"client_cid": cid, "sensor_mid": energy_mid, "signal_type_moid": EA_PLUS},
            quarter,
        )
        year = {"since": YEAR_2025, "till": int(minute[-1]) + MIN}
        ten = {"since": TEN_YEARS_FROM, "till": TEN_YEARS_TILL}
        waw = {"tz": "Europe/Warsaw"}
        cases: list[tuple[str, int, int, dict[str, Any]]] = [
            ("delta_t=1440, 525,600 1-min pts", power_mid, P_PLUS, {**year, "delta_t": 1440}),
            ("delta_t=1440&tz=Europe/Warsaw", power_mid, P_PLUS, {**year, "delta_t": 1440, **waw}),
            (
                "delta_t=month&tz=Europe/Warsaw, 350,640 15-min pts",
                energy_mid,
                EA_PLUS,
                {**ten, "delta_t": "month", **waw},
            ),
            (
                "delta_t=1440&tz=Europe/Warsaw over the 10 years",
                energy_mid,
                EA_PLUS,
                {**ten, "delta_t": 1440, **waw},
            ),
        ]
        for label, mid, moid, params in cases:
            path = f"/api/sensors/{cid}.{mid}/signals/{moid}/data"
            p50, p95, n = _time(client, headers, path, params, reps)
            print(f"{label:52s} -> {n:5d} buckets  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", nargs="?", default="sqlite")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    with scratch_database(None if args.url == "sqlite" else args.url, "besmart_cal") as url:
        run(url, args.reps)


if __name__ == "__main__":
    main()
