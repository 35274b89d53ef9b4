"""Where a 10,000-point multi-series write spends its time, in-process (no HTTP).

The benchmark's ingest request — 20 meters x 5 signals x 100 points, each day block written
twice as its day fills — through `signals.service.write` on a fresh database of either
engine: the median time per request, then the share of each storage step (timed around the
store's methods) and cProfile's top functions by their own time.

    .venv/bin/python -m bench.profile_write                      # SQLite in a temporary file
    .venv/bin/python -m bench.profile_write postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import cProfile
import dataclasses
import pstats
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import insert

from bench.scratch import scratch_database
from bench.workload import METER_SIGNALS, MS_15MIN, START_MS
from besmart_server.schemas.users import Role
from besmart_server.server import migrate
from besmart_server.server.access import Principal
from besmart_server.server.db import Database, now_ms
from besmart_server.server.sensors.tables import sensors
from besmart_server.server.signals import columns, service
from besmart_server.server.signals.store import SeriesStore
from besmart_server.server.users import service as users

WARM, TIMED = 20, 40


def main(argv: list[str]) -> None:
    with scratch_database(argv[0] if argv else None, "profile") as url:
        db = Database(url)
        try:
            _profile(db)
        finally:
            db.dispose()


def _profile(db: Database) -> None:
    migrate.upgrade(db)
    with db.transaction() as conn:
        cid = users.create_client(conn, name="profile")
        mids = [
            conn.execute(
                insert(sensors)
                .values(client_cid=cid, name=f"m{i}", created_at=now_ms())
                .returning(sensors.c.mid)
            ).scalar_one()
            for i in range(20)
        ]
    caller = Principal(None, None, roles={cid: Role.write})
    store = SeriesStore(db.dialect)

    def request(k: int) -> list[service.WriteItem]:
        times = (START_MS + (k * 100 + np.arange(100)) * MS_15MIN).tolist()
        body = {"time": times, "value": [float(x % 97) for x in range(100)]}
        return [
            service.WriteItem(cid, mid, moid, None, columns.decode(body), ("body", 0, "data"))
            for mid in mids
            for moid in METER_SIGNALS
        ]

    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0

        return wrapper

    # _stamp: the series' lock and clocks, and the stored blocks' read (stamp_and_read)
    for name in ("series_ids", "_stamp"):
        setattr(store, name, timed(name, getattr(store, name)))
    d = store._d  # the engine's bulk read and write of blocks
    store._d = dataclasses.replace(
        d, stamp_and_read=timed("stamp_and_read", d.stamp_and_read), put=timed("put", d.put)
    )
    bodies = [request(k) for k in range(WARM + 2 * TIMED)]
    seconds, commits = [], 0.0
    for k, items in enumerate(bodies[: WARM + TIMED]):
        if k == WARM:
            spent.clear()
        t0 = time.perf_counter()
        with db.transaction(write=True) as conn:
            service.write(conn, store, caller, items)
            t1 = time.perf_counter()
        done = time.perf_counter()
        if k >= WARM:
            seconds.append(done - t0)
            commits += done - t1
    med = statistics.median(seconds)
    rate = f"{1e4 / med:,.0f} pts/s"
    print(f"{db.dialect}: median {med * 1000:.1f} ms per 10,000-point request ({rate})")
    for name, total in sorted({**spent, "commit": commits}.items(), key=lambda kv: -kv[1]):
        print(f"  {name:14} {total / TIMED * 1000:6.2f} ms per request")
    profile = cProfile.Profile()  # a second series of requests: the profiler's cost not timed
    for items in bodies[WARM + TIMED :]:
        with db.transaction(write=True) as conn:
            profile.runcall(service.write, conn, store, caller, items)
    pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main(sys.argv[1:])
