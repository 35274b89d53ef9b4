"""What validation after writes costs per request of a bulk load, in-process: the benchmark's
multi-series PUTs (100 series, 10,000 points each, as row 1 of bench.run sends them) through
one app (which queues windows and validates none), and the validation queue they fill
drained by `vee.worker.process` every `--every` requests (as a validation worker would
between its rests), timed apart from the writes. CPU time of the drains per request, and per request
of the writes, median of `--runs` runs.

    .venv/bin/python -m bench.vee_drain [--requests 200] [--every 25] [--runs 3] [PG_URL]

Run it with another checkout's src first on PYTHONPATH to compare two versions of the code
(the script only calls `process(db, store, max_points)`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import orjson
from fastapi.testclient import TestClient
from sqlalchemy import insert

from bench.besmart import PUT_MULTI
from bench.scratch import scratch_database
from bench.workload import FULL, generate
from besmart_server.schemas.users import Role
from besmart_server.server import migrate
from besmart_server.server.app import create_app
from besmart_server.server.config import Settings
from besmart_server.server.db import Database, now_ms
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.users import service as users
from besmart_server.server.vee.worker import process


def one_run(url: str | None, requests: int, every: int) -> tuple[float, float]:
    """(write CPU s, drain CPU s) per request of one run on a fresh database."""
    wl = generate(FULL)
    with scratch_database(url, "veedrain") as db_url:
        db = Database(db_url)
        migrate.upgrade(db)
        mids: dict[str, int] = {}
        with db.transaction() as conn:
            cid = users.create_client(conn, name="bench")
            for name in wl.sensors:
                row = insert(sensors).values(client_cid=cid, name=name, created_at=now_ms())
                mids[name] = int(conn.execute(row.returning(sensors.c.mid)).scalar_one())
            uid = users.create_user(conn, login="bench", password="bench bench bench")
            users.grant_role(conn, user_id=uid, client_cid=cid, role=Role.write)
            token = users.issue_token(conn, user_id=uid, ttl_seconds=3600).token
        db.dispose()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        settings = Settings(database_url=db_url, demo=False)
        app = create_app(settings)
        bodies = [
            orjson.dumps(
                [
                    {
                        "client_cid": cid,
                        "sensor_mid": mids[c.series.sensor],
                        "signal_type_moid": c.series.moid,
                        "data": {"time": c.time, "value": c.value, "origin": np.ones(len(c))},
                    }
                    for c in batch.chunks
                ],
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            for batch in wl.ingest_batches("time")[:requests]
        ]
        write_s = drain_s = 0.0
        with TestClient(app) as client:
            for i, body in enumerate(bodies, 1):
                t0 = time.process_time()
                r = client.put(PUT_MULTI, content=body, headers=headers)
                write_s += time.process_time() - t0
                assert r.status_code in (200, 204), r.text[:300]
                if i % every == 0 or i == len(bodies):
                    t0 = time.process_time()
                    process(app.state.db, app.state.store, settings.max_points_per_read)
                    drain_s += time.process_time() - t0
        return write_s / requests, drain_s / requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pg_url", nargs="?", default=None, help="PostgreSQL server (else SQLite)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--every", type=int, default=25, help="requests between drains")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    got = [one_run(a.pg_url, a.requests, a.every) for _ in range(a.runs)]
    write = statistics.median(w for w, _ in got)
    drain = statistics.median(d for _, d in got)
    print(
        f"{'postgres' if a.pg_url else 'sqlite'}: {a.requests} requests, a drain every "
        f"{a.every}: CPU per request: writes {write * 1000:.1f} ms, validation "
        f"{drain * 1000:.1f} ms (validation / writes {drain / write:.2f}; median of {a.runs})"
    )


if __name__ == "__main__":
    main()
