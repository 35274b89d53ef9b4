"""Whether validation after writes slows the writes: the same PUTs through the HTTP API of two
apps on one fresh database, one with `validate_after_write` (the default: the windows are
queued in the write's transaction, for a validation worker in a process of its own) and one
without, interleaved request by request; the median time per request of each and their ratio,
then the time one drain takes to validate what was queued.

    .venv/bin/python -m bench.vee_write                      # SQLite in a temporary file
    .venv/bin/python -m bench.vee_write postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import insert

from bench.scratch import scratch_database
from besmart_server.schemas.users import Role
from besmart_server.server import migrate
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.users import service as users
from besmart_server.server.vee.worker import process

START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
Q = 900_000
EA_PLUS = 1011
METERS, DAYS = 10, 6  # each request: one meter's day of quarter-hours (96 points)


def main(argv: list[str]) -> None:
    with scratch_database(argv[0] if argv else None, "veewrite") as url:
        db = Database(url)
        migrate.upgrade(db)
        with db.transaction() as conn:
            cid = users.create_client(conn, name="bench")
            mids = [
                int(
                    conn.execute(
                        insert(sensors)
                        .values(client_cid=cid, name=f"m{i}", created_at=now_ms())
                        .returning(sensors.c.mid)
                    ).scalar_one()
                )
                for i in range(2 * METERS)
            ]
            uid = users.create_user(conn, login="bench", password="bench bench bench")
            users.grant_role(conn, user_id=uid, client_cid=cid, role=Role.write)
            token = users.issue_token(conn, user_id=uid, ttl_seconds=3600).token
        db.dispose()
        headers = {"Authorization": f"Bearer {token}"}
        on = create_app(Settings(database_url=url, demo=False))
        off = create_app(Settings(database_url=url, demo=False, validate_after_write=False))
        rng = np.random.default_rng(1)
        times: dict[bool, list[float]] = {True: [], False: []}
        with TestClient(on) as c_on, TestClient(off) as c_off:
            for day in range(DAYS):
                t = [START_MS + day * 86_400_000 + i * Q for i in range(96)]
                for m in range(METERS):
                    for validated in (True, False) if (day + m) % 2 else (False, True):
                        client = c_on if validated else c_off
                        mid = mids[m] if validated else mids[METERS + m]
                        body = {"time": t, "value": rng.uniform(0, 2, 96).round(3).tolist()}
                        url_ = f"/api/sensors/{cid}.{mid}/signals/{EA_PLUS}/data/v2"
                        s = time.perf_counter()
                        r = client.put(url_, json=body, headers=headers)
                        times[validated].append(time.perf_counter() - s)
                        assert r.status_code == 200, r.text
            s = time.perf_counter()
            process(on.state.db, on.state.store, on.state.settings.max_points_per_read)
            drained = time.perf_counter() - s
    with_v, without = statistics.median(times[True]), statistics.median(times[False])
    print(f"{len(times[True])} PUTs each of 96 points, interleaved")
    print(f"median with validation queued:    {with_v * 1000:.2f} ms")
    print(f"median without:                   {without * 1000:.2f} ms")
    print(f"ratio with/without:               {with_v / without:.3f}")
    print(f"the queue validated in one drain of {drained:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
