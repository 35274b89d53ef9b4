"""Quick in-process throughput check of the signal data routes (TestClient, no network).

    .venv/bin/python bench/quick_signals.py                       # temporary SQLite file
    .venv/bin/python bench/quick_signals.py postgresql://postgres@127.0.0.1:5432/test

Writes `--rounds` multi-series PUTs of `--series` x `--points` points, then reads one series'
whole window back and aggregates it. On PostgreSQL a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import orjson
from fastapi.testclient import TestClient

from bench.scratch import scratch_database
from besmart_server.schemas.users import Role
from besmart_server.server import migrate
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.users import service

Q = 15 * 60_000


def _prepare(url: str, n_sensors: int) -> tuple[int, list[int], str]:
    db = Database(url)
    migrate.upgrade(db)
    with db.transaction() as conn:
        cid = service.create_client(conn, name="bench")
        uid = service.create_user(conn, login=f"bench-{uuid.uuid4().hex[:6]}", password="x" * 12)
        service.grant_role(conn, user_id=uid, client_cid=cid, role=Role.write)
        token = service.issue_token(conn, user_id=uid, ttl_seconds=3600).token
        mids = [
            int(
                conn.execute(
                    sensors.insert()
                    .values(client_cid=cid, name=f"m{i}", created_at=now_ms())
                    .returning(sensors.c.mid)
                ).scalar_one()
            )
            for i in range(n_sensors)
        ]
    db.dispose()
    return cid, mids, token


def run(url: str, *, series: int, points: int, rounds: int) -> None:
    cid, mids, token = _prepare(url, series)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % Q
    settings = Settings(database_url=url, demo=False)
    with TestClient(create_app(settings)) as client:
        put_s: list[float] = []
        for r in range(rounds):
            times = [t0 + (r * points + i) * Q for i in range(points)]
            body = orjson.dumps(
                [
                    {
                        "client_cid": cid,
                        "sensor_mid": mid,
                        "signal_type_moid": 1001,
                        "data": {"time": times, "value": [float(i % 97) for i in range(points)]},
                    }
                    for mid in mids
                ]
            )
            start = time.perf_counter()
            resp = client.put("/api/sensors/signals/data/v2", content=body, headers=headers)
            put_s.append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.text
        total = series * points
        med = statistics.median(put_s)
        print(f"PUT  {series} series x {points} pts = {total} pts: median {med * 1000:.0f} ms, "
              f"{total / med / 1e6:.2f} M pts/s")  # fmt: skip
        till = t0 + rounds * points * Q
        url_get = f"/api/sensors/{cid}.{mids[0]}/signals/1001/data"
        for label, extra in (("GET raw", {}), ("GET last", {"get_last": "true"}),
                             ("GET 1h mean", {"delta_t": 60})):  # fmt: skip
            times_s = []
            for _ in range(5):
                start = time.perf_counter()
                resp = client.get(
                    url_get, params={"since": t0, "till": till, **extra}, headers=headers
                )
                times_s.append(time.perf_counter() - start)
                assert resp.status_code == 200, resp.text
            n = len(resp.json()["data"]["time"])
            med = statistics.median(times_s)
            print(f"{label:12s} {rounds * points} stored -> {n} pts: median {med * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", nargs="?", default="sqlite")
    parser.add_argument("--series", type=int, default=10)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with scratch_database(None if args.url == "sqlite" else args.url, "besmart_bench") as url:
        run(url, series=args.series, points=args.points, rounds=args.rounds)


if __name__ == "__main__":
    main()
